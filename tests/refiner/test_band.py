"""The band network and its pipeline: identity at start, exact tiling, geometry, guidance, weights, the API."""
import numpy as np
import pytest
import torch

from app.refiner.api import Refiner, RefineOptions
from app.refiner.band_frame import (
    band_cells,
    canvas_grid,
    frame_for,
    frame_of_box,
    gather_tiles,
    instance_cues,
    near_boundary,
    signed_distance,
)
from app.refiner.band_net import HALO, BandConfig, BandNet
from app.refiner.band_pipeline import BandRunner, BandSettings, refine_band, refine_band_images
from app.refiner.encoder import EncoderError, LiteEncoder, build_encoder, pretrained_encoder
from app.refiner.pipeline import Guidance
from app.refiner.unet import build_unet
from app.refiner.weights import WeightsError, load_weights, save_weights


@pytest.fixture(scope="module")
def encoder() -> LiteEncoder:
    """The packaged encoder, or one of the same architecture with random weights when the package is absent."""
    try:
        return pretrained_encoder()
    except EncoderError:
        torch.manual_seed(0)
        return build_encoder({k: torch.randn_like(v) if v.is_floating_point() else v
                              for k, v in LiteEncoder().state_dict().items()}, "random")


def _disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _image_of(mask):
    return np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)


def _oracle(config: BandConfig = BandConfig(), gain: float = 10.0) -> BandNet:
    """A band network wired by hand to answer "foreground where the image is bright" (white object on black).

    Centre taps only: head1 splits normalised red into its positive and negative parts and copies the mask,
    head2 passes them on, head3 returns gain x red - (identity logit), so the final logit is gain x red.
    """
    net = BandNet(config).eval()
    with torch.no_grad():
        for conv in (net.head1, net.head2, net.head3):
            conv.weight.zero_()
            conv.bias.zero_()
        net.head1.weight[0, 0, 1, 1], net.head1.weight[1, 0, 1, 1], net.head1.weight[2, 3, 1, 1] = 1.0, -1.0, 1.0
        for i in range(3):
            net.head2.weight[i, i, 1, 1] = 1.0
        net.head3.weight[0, 0, 1, 1], net.head3.weight[0, 1, 1, 1] = gain, -gain
        net.head3.weight[0, 2, 1, 1] = -2 * config.logit_scale
        net.head3.bias[0] = config.logit_scale
    return net


def _final(steps):
    steps = list(steps)
    assert steps[-1].final and all(not s.final for s in steps[:-1])
    return steps


def test_config_round_trips_and_refuses_nonsense():
    config = BandConfig(widths=(32, 24, 16, 8), cues=("sdf",))
    assert BandConfig.from_dict(config.to_dict()) == config
    for bad in ({"widths": (8, 8)}, {"cues": ("depth",)}, {"context": 100}, {"encoder": "resnet"}):
        with pytest.raises(ValueError):
            BandConfig(**bad)
    with pytest.raises(ValueError, match="unknown band-network config keys: colour"):
        BandConfig.from_dict({"colour": 1})


@pytest.mark.parametrize("max_work", [512, 96, None])
def test_an_untrained_network_gives_back_its_input(encoder, max_work):
    """The head's last layer starts at zero: every pixel keeps its label, in every mode and scale."""
    torch.manual_seed(0)
    runner = BandRunner(BandNet(), encoder, torch.device("cpu"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    coarse = _disk((180, 240), (90, 110), 50) | _disk((180, 240), (40, 200), 20)
    steps = _final(refine_band(runner, image, [coarse], BandSettings(max_work=max_work, deterministic=False)))
    assert len(steps) == 6 and [s.step for s in steps] == list(range(1, 7))
    assert np.array_equal(steps[-1].mask(0), coarse) and steps[-1].changed == [0]
    assert steps[-1].results[0].reverse_steps == 6


def test_the_oracle_network_finds_the_object_through_the_whole_pipeline(encoder):
    shape = (200, 260)
    truth = _disk(shape, (100, 130), 60)
    coarse = np.roll(truth, (6, -8), axis=(0, 1))
    runner = BandRunner(_oracle(), encoder, torch.device("cpu"))
    perimeter = 2 * np.pi * 60
    for max_work in (512, 80, None):
        final = _final(refine_band(runner, _image_of(truth), [coarse], BandSettings(max_work=max_work)))[-1].mask(0)
        # Native resolution: exact. A work grid at 1/2.7 scale: within half a pixel along the boundary.
        assert (final != truth).sum() <= (0 if max_work != 80 else 0.5 * perimeter)
    assert (coarse != truth).sum() > 1000


def test_tiles_compute_exactly_what_the_head_computes_on_the_whole_grid(encoder):
    """Each tile's halo makes the valid convolutions exact: tiles agree with one pass over the work grid."""
    torch.manual_seed(1)
    net = BandNet(BandConfig(tile=16)).eval()
    torch.nn.init.normal_(net.head3.weight, std=0.1)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    coarse = _disk((70, 90), (35, 45), 22)
    frame = frame_for(coarse, 256, max_work=None)
    cues = instance_cues(image, coarse, frame)
    x0, y0, x1, y1 = frame.box
    mask = coarse[y0:y1, x0:x1]
    sdf = signed_distance(mask)
    h, w = mask.shape
    whole = gather_tiles(cues, mask, sdf, 3, BandConfig(tile=max(h, w)), [(0, 0)])
    origins = band_cells(mask, sdf, near_boundary(mask, 4.0), mask, 4.0, 16)
    tiles = gather_tiles(cues, mask, sdf, 3, net.config, origins)
    features = torch.randn(1, net.config.head_features, 8, 8)
    from app.refiner.band_net import sample_context

    with torch.no_grad():
        full = net.head(whole.inputs, sample_context(features, [1], whole.grids))[0, 0]
        parts = net.head(tiles.inputs, sample_context(features, [len(origins)], tiles.grids))
    assert len(origins) >= 4
    for (ty, tx), part in zip(origins, parts):
        torch.testing.assert_close(part[0, : h - ty, : w - tx], full[ty : ty + 16, tx : tx + 16], atol=1e-5, rtol=1e-5)


def test_band_cells_cover_the_boundary_and_leave_the_far_inside_alone():
    mask = _disk((300, 300), (150, 150), 120)
    sdf = signed_distance(mask)
    cells = band_cells(mask, sdf, near_boundary(mask, 8.0), mask, 8.0, 32)
    covered = np.zeros_like(mask)
    for y, x in cells:
        covered[y : y + 32, x : x + 32] = True
    edge = np.abs(sdf) <= 8
    assert covered[edge].all() and not covered[150, 150] and not covered[0, 0]
    assert all(0 <= y <= 300 - 32 and 0 <= x <= 300 - 32 for y, x in cells)


def test_frames_keep_aspect_and_grids_map_pixel_centres_into_the_canvas_content():
    frame = frame_of_box((10, 20, 60, 120), 256, max_work=None)
    assert frame.content == (256, 128) and frame.work == frame.crop_size == (100, 50)
    grid = canvas_grid(frame, np.arange(100), np.arange(50))
    # The content fills the left half of the canvas; the last pixel centre lies half a pixel inside its edge.
    assert grid[0, 0, 0] == pytest.approx(2 * 0.5 * 2.56 / 256 - 1, abs=1e-5)
    assert grid[..., 0].max() == pytest.approx(-0.01, abs=1e-5) and grid[..., 1].max() == pytest.approx(0.99, abs=1e-5)
    assert frame_of_box((0, 0, 1000, 500), 256, max_work=512).work == (256, 512)
    padded = frame_for(np.pad(np.ones((100, 50), bool), 30), 256, max_work=None)
    assert padded.box == (12, 12, 98, 148)  # 0.25 x sqrt(area) = 18 px of context on each side


def test_region_and_constraints_bind_the_oracle(encoder):
    shape = (160, 200)
    truth = _disk(shape, (80, 100), 50)
    coarse = np.roll(truth, 10, axis=1)
    runner = BandRunner(_oracle(), encoder, torch.device("cpu"))
    region = np.zeros(shape, bool)
    region[:, :100] = True
    background = np.zeros(shape, bool)
    background[75:85, 40:70] = True
    final = _final(refine_band(runner, _image_of(truth), [coarse], BandSettings(),
                               Guidance(region=region, background=background)))[-1].mask(0)
    assert np.array_equal(final[:, 100:], coarse[:, 100:])
    assert not final[background].any()
    left = region & ~background
    assert (final[left] == truth[left]).mean() > 0.999


def test_small_masks_pass_through_and_are_reported(encoder):
    runner = BandRunner(BandNet(), encoder, torch.device("cpu"))
    tiny = np.zeros((64, 64), bool)
    tiny[10:14, 10:14] = True
    big = _disk((64, 64), (32, 32), 20)
    steps = _final(refine_band(runner, np.zeros((64, 64, 3), np.uint8), [tiny, big], BandSettings(steps=3, min_area=100)))
    assert len(steps) == 3 and steps[0].indices == [1, 0] and steps[0].results[1].skipped
    only = _final(refine_band(runner, np.zeros((64, 64, 3), np.uint8), [tiny], BandSettings(min_area=100)))
    assert len(only) == 1 and only[0].results[0].skipped


def test_batches_across_images_give_what_each_image_gives_alone(encoder):
    """Dataset refinement fills a batch with several images' instances; each mask comes out as refining its
    image alone gives it (a tiny one passed through), even with a network that changes masks a lot."""
    torch.manual_seed(3)
    net = BandNet()
    torch.nn.init.normal_(net.head3.weight, std=0.3)
    runner = BandRunner(net, encoder, torch.device("cpu"))
    rng = np.random.default_rng(3)
    jobs = []
    for shape, n in (((120, 160), 2), ((90, 70), 1), ((140, 200), 3)):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        masks = [_disk(shape, (shape[0] // 2 + 5 * k, shape[1] // 2 - 7 * k), 20 + 6 * k) for k in range(n)]
        masks.append(_disk(shape, (10, 10), 2))
        jobs.append((image, masks))
    settings = BandSettings(steps=3, batch_size=3, min_area=100)
    batched = refine_band_images(runner, jobs, settings)
    changed = 0
    for (image, masks), patches in zip(jobs, batched):
        alone = {i: p for step in refine_band(runner, image, masks, settings) for i, p in zip(step.indices, step.results)}
        assert sorted(patches) == sorted(alone) == list(range(len(masks)))
        for i in alone:
            assert np.array_equal(patches[i].mask, alone[i].mask) and patches[i].box == alone[i].box
            assert patches[i].skipped == alone[i].skipped == (i == len(masks) - 1)
            changed += patches[i].changed
    assert changed > 500


def test_the_last_step_snaps_the_moved_boundary_on_the_work_grid(encoder, monkeypatch):
    """Snap runs once per instance, on the last step, on the instance's work grid (its RGB and the mask there), and
    what it returns is what comes out; off, or on an HR crop larger than SNAP_MAX_SIDE, it does not run."""
    import app.refiner.band_pipeline as band_pipeline

    calls = []

    def fake_snap(image, refined, coarse, seed=0):
        calls.append((image.shape, refined.shape, coarse.shape))
        out = refined.copy()
        out[:2] = True  # a mark no network would make
        return out

    monkeypatch.setattr(band_pipeline, "snap_to_edges", fake_snap)
    shape = (200, 260)
    truth = _disk(shape, (100, 130), 60)
    coarse = np.roll(truth, (6, -8), axis=(0, 1))
    runner = BandRunner(_oracle(), encoder, torch.device("cpu"))
    steps = _final(refine_band(runner, _image_of(truth), [coarse], BandSettings(steps=3)))
    patch = steps[-1].results[0]
    assert len(calls) == 1 and calls[0][0][:2] == calls[0][1] == calls[0][2]
    assert patch.mask[:2].all() and not coarse[patch.box[1]].any()  # the mark came through, the coarse row was empty
    calls.clear()
    _final(refine_band(runner, _image_of(truth), [coarse], BandSettings(steps=3, snap=False)))
    monkeypatch.setattr(band_pipeline, "SNAP_MAX_SIDE", 64)
    _final(refine_band(runner, _image_of(truth), [coarse], BandSettings(steps=3, max_work=None)))
    assert calls == []


def test_band_weights_round_trip_and_refuse_another_architecture(tmp_path):
    torch.manual_seed(2)
    net = BandNet(BandConfig(widths=(16, 16, 16, 8)))
    torch.nn.init.normal_(net.head3.weight)
    path = save_weights(net, tmp_path / "band.safetensors", {"notes": "test"})
    loaded, info = load_weights(path)
    assert isinstance(loaded, BandNet) and info.preset == "band" and info.config == net.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    state = {k: v for k, v in net.state_dict().items()}
    state["head3.weight"] = torch.zeros(2, 16, 3, 3)
    from safetensors.torch import save_file
    import json

    bad = tmp_path / "bad.safetensors"
    save_file(state, bad, metadata={"format": "segrefiner-studio/band-weights-v1", "config": json.dumps(net.config.to_dict())})
    with pytest.raises(WeightsError, match=r"bad.safetensors: does not match the band band network .*mismatched e.g. head3.weight"):
        load_weights(bad)


def test_refiner_runs_band_weights_in_both_modes(tmp_path, encoder):
    path = save_weights(_oracle(), tmp_path / "oracle.safetensors")
    refiner = Refiner(path, device="cpu")
    shape = (150, 170)
    truth = _disk(shape, (75, 85), 45)
    coarse = np.roll(truth, 5, axis=0)
    for mode in ("instance", "hr"):
        refined = refiner.refine(_image_of(truth), coarse, mode=mode, min_area=0)
        assert np.array_equal(refined, truth)
    steps = list(refiner.run(_image_of(truth), [coarse], RefineOptions(steps=2)))
    assert len(steps) == 2 and steps[-1].final


def test_unet_and_band_trainers_refuse_each_others_weights(tmp_path):
    from app.main import main

    band = save_weights(BandNet(), tmp_path / "band.safetensors")
    unet = save_weights(build_unet("compact"), tmp_path / "unet.safetensors")
    assert main(["train-unet", "--init", str(band), "--data", str(tmp_path), "--run", str(tmp_path / "r")]) == 2
    assert main(["train", "--init", str(unet), "--data", str(tmp_path), "--run", str(tmp_path / "r")]) == 2


def test_halo_matches_the_three_valid_convolutions():
    net = BandNet()
    x = torch.zeros(1, net.config.tile_channels, 64 + 2 * HALO, 64 + 2 * HALO)
    f = torch.zeros(1, net.config.head_features, 64 + 2 * HALO, 64 + 2 * HALO)
    assert net.head(x, f).shape[-2:] == (64, 64)


def test_a_failed_compile_falls_back_to_the_plain_network_and_says_so(encoder):
    runner = BandRunner(_oracle(), encoder, torch.device("cpu"))
    plain = _final(refine_band(runner, _image_of(_disk((90, 90), (45, 45), 25)), [_disk((90, 90), (47, 45), 25)]))

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    runner._context = broken  # what torch.compile's first call raises where it cannot compile
    again = _final(refine_band(runner, _image_of(_disk((90, 90), (45, 45), 25)), [_disk((90, 90), (47, 45), 25)]))
    assert np.array_equal(again[-1].mask(0), plain[-1].mask(0))
    assert len(runner.fallbacks) == 1 and "no C++ compiler" in runner.fallbacks[0]
