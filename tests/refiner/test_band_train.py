"""Training the band network: samples as the pipeline sees them, the loss, a resumable run, the CLI."""
import json
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest
import torch

from app.main import main
from app.refiner.band_net import BandConfig
from app.refiner.band_samples import NEAR_PERFECT, NEIGHBOUR, SampleSettings, contact_zone, make_sample, noisy_mask
from app.refiner.band_train import BandTrainConfig, BandTrainer, SampleStream, band_loss, run_band_training
from app.refiner.data import CocoFile, Example, InstanceIndexFolder
from app.refiner.degrade import near_perfect, synthesize
from app.core.metrics import iou
from app.core.signals import terminate_on_signals
from tests.shared_data import DATA, sources_or_skip


@pytest.fixture(scope="module")
def train_sources():
    return sources_or_skip("train")


def test_samples_from_every_source_have_the_shapes_the_network_takes(train_sources):
    config = BandConfig()
    rng = np.random.default_rng(0)
    side = config.tile + 6
    for source in train_sources:
        sample = make_sample(source.load(0), rng, config, SampleSettings(tiles=3))
        assert sample["canvas"].shape == (256, 256, 3) and sample["canvas"].dtype == np.uint8
        assert sample["context"].shape == (config.context_channels, 256, 256)
        assert sample["tiles"].shape == (3, config.tile_channels, side, side)
        assert sample["grids"].shape == (3, side, side, 2) and np.abs(sample["grids"]).max() <= 2
        for key in ("gt", "current", "weight"):
            assert sample[key].shape == (3, 1, config.tile, config.tile)
        assert set(np.unique(sample["gt"])) <= {0.0, 1.0} and sample["weight"].min() >= 0
        assert all(np.isfinite(v).all() for v in sample.values())


def test_noisy_mask_mixes_truth_and_coarse_in_the_right_share():
    rng = np.random.default_rng(0)
    gt = np.zeros((200, 200), bool)
    gt[:, :100] = True
    coarse = ~gt
    for smooth in (False, True):
        m = noisy_mask(gt, coarse, 0.3, rng, smooth)
        assert abs((m == gt).mean() - 0.3) < 0.03
    assert np.array_equal(noisy_mask(gt, coarse, 0.0, rng, True), coarse)


def test_leak_grows_into_look_alike_background_only():
    rng = np.random.default_rng(0)
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, 80:] = (200, 30, 30)  # the object's colour continues to the right of it
    image[30:90, 40:80] = (200, 30, 30)
    gt = np.zeros((120, 160), bool)
    gt[30:90, 40:80] = True
    coarse, kind = synthesize(gt, rng, kind="leak", image=image)
    assert kind == "leak" and (coarse & ~gt).any() and (coarse & gt).sum() == gt.sum()
    assert not (coarse & ~gt)[:, :40].any()  # the dark side looks nothing like the object
    with pytest.raises(ValueError, match="needs the image"):
        synthesize(gt, rng, kind="leak")
    assert {synthesize(gt, rng, probs={"leak": 1.0, "shift": 0.5})[1] for _ in range(5)} == {"shift"}


def test_near_perfect_masks_are_near_perfect():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:100, :100]
    gt = (yy - 50) ** 2 + (xx - 47) ** 2 <= 33**2
    scores = [iou(near_perfect(gt, rng), gt) for _ in range(12)]
    assert all(0.9 < s <= 1.0 for s in scores) and min(scores) < 1.0


def _two_objects(gap: int) -> Example:
    """A grey object with a look-alike neighbour ``gap`` pixels to its right, on a dark background."""
    image = np.full((120, 160, 3), 20, np.uint8)
    mask, others = np.zeros((120, 160), bool), np.zeros((120, 160), bool)
    mask[30:90, 30:80] = True
    others[30:90, 80 + gap : 130] = True
    image[mask | others] = 150
    return Example(image, mask, None, "pair", others)


def test_contact_zone_is_the_touching_part_of_the_neighbours():
    zone = contact_zone(_two_objects(0))
    assert zone is not None and zone[30:90, 80:83].all() and not zone[:, 86:].any() and not zone[:, :80].any()
    assert contact_zone(_two_objects(20)) is None
    assert contact_zone(Example(np.zeros((120, 160, 3), np.uint8), _two_objects(0).mask, None, "alone")) is None


def test_neighbour_samples_look_at_and_weigh_the_contact():
    config = BandConfig()
    heavy = 100.0
    for kind, touching in ((NEIGHBOUR, True), (NEAR_PERFECT, True), (NEIGHBOUR, False)):
        rng = np.random.default_rng(1)
        settings = SampleSettings(tiles=4, contact_weight=heavy, probs={kind: 1.0})
        example = _two_objects(0 if touching else 20)
        weights = [make_sample(example, rng, config, settings)["weight"].max() for _ in range(6)]
        assert (min(weights) > heavy) == (kind == NEIGHBOUR and touching), (kind, touching, weights)


def test_instance_sources_name_the_other_objects(tmp_path):
    labels = np.zeros((40, 60), np.uint8)
    labels[5:20, 5:25], labels[5:20, 25:45], labels[25:35, 10:50] = 1, 2, 3
    (tmp_path / "img").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "img/a.png"), np.zeros((40, 60, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "masks/a_mask.png"), labels)
    examples = {e.key: e for e in (InstanceIndexFolder(tmp_path / "img", tmp_path / "masks").load(i) for i in range(3))}
    assert np.array_equal(examples["instances/a#1"].others, (labels == 2) | (labels == 3))
    polygons = [[5, 5, 25, 5, 25, 20, 5, 20], [25, 5, 45, 5, 45, 20, 25, 20], [10, 25, 50, 25, 50, 35, 10, 35]]
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": [poly], "area": 300.0,
                             "bbox": [poly[0], 5, 20, 15], "iscrowd": 0} for k, poly in enumerate(polygons)]}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    source = CocoFile(tmp_path / "a.json", tmp_path / "img", min_area=10)
    first, second, third = source.load(0), source.load(1), source.load(2)
    assert first.others.any() and np.array_equal(first.others, (second.mask | third.mask) & ~first.mask)
    assert not (first.others & first.mask).any()


def test_training_config_adds_the_neighbour_kind_only_when_asked():
    assert NEIGHBOUR not in BandTrainConfig().sample_settings().probs
    assert BandTrainConfig(neighbour_prob=0.15).sample_settings().probs[NEIGHBOUR] == 0.15


def test_loss_ignores_zero_weight_pixels_and_rewards_the_truth():
    gt = torch.zeros(2, 1, 8, 8)
    gt[..., 4:] = 1
    weight = torch.ones_like(gt)
    good, _ = band_loss((gt * 2 - 1) * 8, gt, weight, 0.5)
    bad, _ = band_loss((0.5 - gt) * 8, gt, weight, 0.5)
    masked, _ = band_loss((0.5 - gt) * 8, gt, torch.zeros_like(gt), 0.0)
    assert good.item() < 0.01 < bad.item() and masked.item() == 0.0


def test_a_short_run_learns_saves_and_resumes(train_sources, tmp_path):
    config = BandTrainConfig(iterations=3, batch_size=2, tiles=2, warmup=1, workers=0, device="cpu", log_every=1)
    trainer = run_band_training(config, tmp_path, train_sources, None, network=BandConfig(widths=(16, 16, 16, 8)))
    assert trainer.step == 3 and (tmp_path / "last.pt").exists()
    assert trainer.net.head3.weight.abs().sum() > 0  # the zero-initialised head has moved
    resumed = BandTrainer(BandTrainConfig(iterations=4, device="cpu"), tmp_path, BandConfig(widths=(16, 16, 16, 8)))
    assert resumed.resume() and resumed.step == 3
    with pytest.raises(ValueError, match="another band-network configuration"):
        BandTrainer(BandTrainConfig(device="cpu"), tmp_path).resume()


def test_a_stream_worker_yields_tensors(train_sources):
    stream = SampleStream(train_sources, {}, BandConfig(), SampleSettings(tiles=1), seed=0)
    sample = next(iter(stream))
    assert sample["tiles"].dtype == torch.float32 and sample["canvas"].dtype == torch.uint8


def test_cli_trains_validates_and_exports_within_a_time_budget(train_sources, tmp_path):
    run, out = tmp_path / "run", tmp_path / "best.safetensors"
    code = main(["train", "--data", str(DATA), "--run", str(run), "--iterations", "100000", "--batch-size", "2",
                 "--tiles", "2", "--workers", "0", "--val-per-kind", "1", "--device", "cpu", "--max-minutes", "0.01",
                 "--export", str(out)])
    state = torch.load(run / "last.pt", weights_only=True)
    assert code == 0 and 0 < state["step"] < 100000 and out.exists()
    from app.refiner.weights import load_weights

    _, info = load_weights(out)
    assert info.preset == "band" and info.metadata["validation"]["iou"] > 0.5


def test_sigterm_stops_a_run_that_saves_and_exports_on_its_way_out(train_sources, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "best.safetensors"

    def terminate_once_training() -> None:  # SIGTERM while the run is in its loop (the first checkpoint is there)
        deadline = time.monotonic() + 300
        while not (run / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    with terminate_on_signals():
        killer = threading.Thread(target=terminate_once_training)
        killer.start()
        code = main(["train", "--data", str(DATA), "--run", str(run), "--iterations", "400", "--batch-size", "2",
                     "--tiles", "2", "--workers", "0", "--val-per-kind", "1", "--device", "cpu", "--save-every", "1",
                     "--export", str(out)])
        killer.join()
    state = torch.load(run / "last.pt", weights_only=True)
    assert code == 2 and 1 <= state["step"] < 400 and out.exists()
    assert "stopped by SIGTERM" in capsys.readouterr().err


def test_sigterm_stops_an_evaluation_between_cases(tmp_path, capsys):
    sources_or_skip("val")
    with terminate_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        code = main(["eval", "--data", str(DATA), "--no-refiner", "--per-kind", "1", "--json", str(tmp_path / "e.json")])
    assert code == 2 and not (tmp_path / "e.json").exists()
    assert "stopped by SIGTERM" in capsys.readouterr().err


def test_eval_on_named_sources_only(tmp_path):
    sources_or_skip("val")
    code = main(["eval", "--data", str(DATA), "--no-refiner", "--per-kind", "2", "--sources", "ecssd",
                 "--kinds", "shift,lowres", "--json", str(tmp_path / "e.json")])
    cases = json.loads((tmp_path / "e.json").read_text())["cases"]
    assert code == 0 and len(cases) == 4 and {c["source"] for c in cases} == {"ecssd"}


def test_eval_names_an_unknown_source(capsys):
    sources_or_skip("val")
    code = main(["eval", "--data", str(DATA), "--no-refiner", "--per-kind", "1", "--sources", "ecsd"])
    err = capsys.readouterr().err
    assert code != 0 and "unknown source(s) ecsd" in err and "ecssd" in err


def test_source_weights_must_name_training_sources() -> None:
    from app.refiner.data import source_probabilities

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    sources = [Named("ecssd"), Named("pets")]
    assert source_probabilities(sources, {"ecssd": 3}).tolist() == [0.75, 0.25]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus, which are not training sources here; known: ecssd, pets"):
        source_probabilities(sources, {"bogus": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one above 0"):
        source_probabilities(sources, {"ecssd": 0, "pets": 0})  # type: ignore[arg-type]
