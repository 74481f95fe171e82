"""Training pieces: losses, data sources and splits, crops, a resumable run on real data."""

import numpy as np
import pytest
import torch

from app.main import main
from app.refiner.crops import make_crop
from app.refiner.data import shared_sources, split_of
from app.refiner.train import CropStream, TrainConfig, Trainer, ValidationSet, refiner_loss, run_training, texture_l1_loss
from tests.shared_data import DATA, sources_or_skip


@pytest.fixture(scope="module")
def train_sources():
    return sources_or_skip("train")


def test_texture_loss_is_zero_for_a_perfect_prediction_and_grows_with_error():
    gt = torch.zeros(1, 1, 32, 32)
    gt[..., 8:24, 8:24] = 1
    perfect = (gt * 2 - 1) * 60
    assert texture_l1_loss(perfect, gt).item() == pytest.approx(0.0, abs=1e-4)
    shifted = torch.roll(perfect, 3, dims=-1)
    assert texture_l1_loss(shifted, gt).item() > 0.01


def test_loss_ignores_the_unknown_band():
    gt = torch.zeros(1, 1, 16, 16)
    gt[..., :, 8:] = 1
    logits = (gt * 2 - 1) * 30
    wrong = logits.clone()
    wrong[..., :, 7:9] *= -1  # wrong only on the band next to the boundary
    ignore = torch.zeros_like(gt)
    ignore[..., :, 6:10] = 1
    loss_ignored, _ = refiner_loss(wrong, gt, ignore, texture_weight=0.0)
    loss_counted, stats = refiner_loss(wrong, gt, torch.zeros_like(gt), texture_weight=0.0)
    assert loss_ignored.item() < 1e-6 < loss_counted.item()
    assert 0.7 < stats["iou"] < 1.0


def test_error_weight_scales_only_the_pixels_the_input_got_wrong():
    gt = torch.zeros(1, 1, 16, 16)
    gt[..., :, 8:] = 1
    logits = torch.zeros_like(gt)  # p = 0.5 everywhere: every pixel has the same BCE
    wrong = torch.zeros_like(gt, dtype=torch.bool)
    wrong[..., :4, :] = True
    plain, _ = refiner_loss(logits, gt, torch.zeros_like(gt), 0.0)
    weighted, _ = refiner_loss(logits, gt, torch.zeros_like(gt), 0.0, wrong, error_weight=4.0)
    assert weighted.item() == pytest.approx(plain.item())  # a weighted mean of equal terms
    logits[..., :4, :] = (0.5 - gt[..., :4, :]) * 8  # now confidently wrong exactly where the input was wrong
    plain, _ = refiner_loss(logits, gt, torch.zeros_like(gt), 0.0)
    weighted, _ = refiner_loss(logits, gt, torch.zeros_like(gt), 0.0, wrong, error_weight=4.0)
    assert weighted.item() > 1.5 * plain.item()


def test_coarse_t_prob_draws_the_last_step(tmp_path):
    last = Trainer(TrainConfig(coarse_t_prob=1.0, device="cpu"), tmp_path).sample_t(64)
    assert (last == 5).all()
    mixed = Trainer(TrainConfig(device="cpu"), tmp_path).sample_t(600)
    assert set(mixed.tolist()) == set(range(6))


def test_split_is_stable_and_disjoint(train_sources):
    assert split_of("ecssd/0001") == split_of("ecssd/0001")
    val = shared_sources(DATA, "val")
    train_keys = {k for s in train_sources for k, _ in s.items}
    val_keys = {k for s in val for k, _ in s.items}
    assert train_keys and val_keys and not train_keys & val_keys
    fraction = len(val_keys) / (len(val_keys) + len(train_keys))
    assert 0.05 < fraction < 0.15
    assert {s.name for s in train_sources} >= {"ecssd", "pets", "pennfudan", "lvis"}


def test_every_source_gives_a_real_example_and_crops_fit(train_sources):
    rng = np.random.default_rng(0)
    for source in train_sources:
        example = source.load(0)
        assert example.image.dtype == np.uint8 and example.image.shape[:2] == example.mask.shape
        assert example.mask.any()
        crop = make_crop(example, rng, size=64, patch_prob=0.5)
        assert crop.image.shape == (64, 64, 3) and crop.gt.shape == crop.coarse.shape == crop.ignore.shape == (64, 64)
        assert set(np.unique(crop.gt)) <= {0.0, 1.0} and set(np.unique(crop.coarse)) <= {0.0, 1.0}
    pets = next(s for s in train_sources if s.name == "pets")
    assert pets.load(0).ignore.any()


@pytest.mark.slow
def test_run_checkpoints_resumes_and_validates(train_sources, tmp_path, caplog):
    config = TrainConfig(iterations=2, batch_size=2, size=64, warmup=1, log_every=1, save_every=1, val_every=2, workers=0, device="cpu")
    validation = ValidationSet.build(shared_sources(DATA, "val"), 2)
    best = []
    trainer = run_training(config, tmp_path, train_sources, validation, on_best=lambda t, s: best.append(s))
    assert trainer.step == 2 and (tmp_path / "last.pt").exists()
    assert best and 0.0 <= best[0]["iou"] <= 1.0 and "coarse_mba" in best[0]
    resumed = Trainer(TrainConfig(iterations=4, batch_size=2, size=64, device="cpu"), tmp_path)
    assert resumed.resume() and resumed.step == 2
    for a, b in zip(resumed.model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    caplog.set_level("INFO", logger="app.refiner.train")
    more = run_training(TrainConfig(iterations=3, batch_size=2, size=64, warmup=1, workers=0, val_every=2, device="cpu"),
                        tmp_path, train_sources, validation)
    assert more.step == 3
    assert "validation at step 3" in caplog.text  # not a multiple of val_every, yet the finished network is validated


@pytest.mark.slow
def test_a_run_stopped_early_validates_and_offers_its_last_network(train_sources, tmp_path, caplog):
    caplog.set_level("INFO", logger="app.refiner.train")
    answers = iter([False, False, True])
    best = []
    config = TrainConfig(iterations=100, batch_size=2, size=64, warmup=1, val_every=50, workers=0, device="cpu")
    trainer = run_training(config, tmp_path, train_sources, ValidationSet.build(shared_sources(DATA, "val"), 2),
                           on_best=lambda t, s: best.append(t.step), should_stop=lambda: next(answers))
    assert trainer.step == 2 and best == [2]
    assert "stopping at step 2 of 100" in caplog.text and "validation at step 2" in caplog.text
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 2


def test_cli_time_budget_stops_the_run_and_keeps_its_checkpoint(train_sources, tmp_path):
    run = tmp_path / "run"
    code = main(["train-unet", "--data", str(DATA), "--run", str(run), "--iterations", "100000", "--batch-size", "2",
                 "--size", "64", "--workers", "0", "--val-instances", "0", "--device", "cpu", "--max-minutes", "0.01"])
    state = torch.load(run / "last.pt", weights_only=True)
    assert code == 0 and state["step"] < 100000 and state["config"]["iterations"] == 100000


def test_resume_refuses_another_network(train_sources, tmp_path):
    Trainer(TrainConfig(iterations=1, device="cpu"), tmp_path).save()
    other = Trainer(TrainConfig(preset="official", device="cpu"), tmp_path)
    with pytest.raises(ValueError, match="another network"):
        other.resume()


def test_learning_rate_warms_up_then_decays():
    trainer = Trainer.__new__(Trainer)
    trainer.config = TrainConfig(lr=1e-3, warmup=10, iterations=110, min_lr_ratio=0.1)
    lrs = [trainer.lr_at(s) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_boundary_window_keeps_scale_and_centres_on_errors():
    from app.refiner.crops import Crop, boundary_window

    gt = np.zeros((256, 256), np.float32)
    gt[100:200, 100:200] = 1
    coarse = gt.copy()
    coarse[100:200, 190:200] = 0  # the only error: a strip on the right edge
    crop = Crop(np.zeros((256, 256, 3), np.uint8), gt, coarse, np.zeros_like(gt), "shift")
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = boundary_window(crop, 128, rng)
        assert w.image.shape == (128, 128, 3) and w.gt.shape == (128, 128)
        assert (w.gt != w.coarse).any()
    assert boundary_window(crop, 256, rng) is crop


@pytest.mark.slow
def test_fp16_training_scales_the_loss_and_keeps_the_scaler_in_checkpoints(train_sources, tmp_path):
    """The fp16 path (CUDA cards without bf16) exercised on CPU: loss scaling steps, saves and resumes."""
    config = TrainConfig(iterations=2, batch_size=2, size=64, warmup=1, workers=0, device="cpu")
    trainer = Trainer(config, tmp_path)
    trainer.autocast = torch.float16
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    batch = next(iter(torch.utils.data.DataLoader(CropStream(train_sources, {}, 64, 0.0, 0), batch_size=2)))
    stats = trainer.train_step(batch)
    assert np.isfinite(stats["loss"]) and trainer.step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    trainer.save()
    resumed = Trainer(config, tmp_path)
    resumed.scaler = torch.amp.GradScaler("cpu")
    assert resumed.resume() and resumed.scaler.get_scale() == trainer.scaler.get_scale()
