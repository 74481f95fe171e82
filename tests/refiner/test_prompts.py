"""Box and click prompts: bad input, bounded work on huge photos, GrabCut and the prompt head, clicks kept local."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from app.core.metrics import iou
from app.refiner.options import RefineOptions
from app.refiner import box_prior, prompts
from app.refiner.prompt_head import PromptHead, PromptHeadConfig, PromptHeadError, load_head, save_head
from app.refiner.prompts import (
    Click,
    EncoderSource,
    GrabCutSource,
    Prompt,
    PromptError,
    PromptTool,
    Window,
    check_box,
    error_clicks,
    prompt_window,
)
from app.refiner.weights import PACKAGE_WEIGHTS_DIR
from tests.shared_data import DATA, require


def scene(h: int = 300, w: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noisy green-blue background with a red disc and a red square: (image, disc mask, square mask)."""
    rng = np.random.default_rng(0)
    image = np.empty((h, w, 3), np.uint8)
    image[..., 0] = rng.integers(0, 60, (h, w))
    image[..., 1] = rng.integers(100, 200, (h, w))
    image[..., 2] = rng.integers(120, 220, (h, w))
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (w // 4, h // 2), min(h, w) // 6, 1, -1)
    square = np.zeros((h, w), np.uint8)
    square[h // 3 : h // 3 + h // 4, 3 * w // 5 : 3 * w // 5 + h // 4] = 1
    for m in (disc, square):
        n = int(m.sum())
        image[m > 0] = np.stack([rng.integers(190, 250, n), rng.integers(0, 40, n), rng.integers(0, 40, n)], 1)
    return image, disc > 0, square > 0


def box_of(mask: np.ndarray, pad: int = 0) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return x - pad, y - pad, x + w + pad, y + h + pad


@pytest.mark.parametrize("box, words", [
    ((10, 10, 10, 50), "empty or degenerate"),
    ((10, 10, 12, 50), "empty or degenerate"),
    ((500, 10, 600, 50), "outside"),
    ((-80, -80, -10, -10), "outside"),
    ((0, 0, float("nan"), 5), "finite"),
    ((1, 2, 3), "four"),
    ("abcd", "four numbers"),
])
def test_bad_boxes_get_one_clear_message(box, words):
    with pytest.raises(PromptError, match=words):
        check_box(box, (300, 400))


def test_box_corners_in_any_order_are_clipped_to_the_image():
    assert check_box((450.4, 320, -20, 10.6), (300, 400)) == (0, 11, 400, 300)


def test_bad_input_to_the_tool_is_a_value_error_with_one_message():
    image, disc, _ = scene()
    tool = PromptTool(GrabCutSource())
    with pytest.raises(ValueError, match="outside the 400x300 image"):
        tool.box(image, (401, 0, 500, 100))
    with pytest.raises(PromptError, match="click at"):
        tool.click(image, disc, [Click(400, 10)])
    with pytest.raises(PromptError, match="no click"):
        tool.click(image, disc, [])
    with pytest.raises(PromptError, match="shape"):
        tool.click(image, disc[:10], [Click(5, 5)])
    with pytest.raises(PromptError, match="uint8 RGB"):
        tool.box(image.astype(np.float32), (0, 0, 50, 50))


def test_grabcut_box_finds_the_object():
    image, disc, square = scene()
    mask = PromptTool(GrabCutSource()).box(image, box_of(disc, 6)).mask
    assert iou(mask, disc) > 0.9
    assert not (mask & square).any()


def test_work_on_an_8000x6000_photo_is_bounded_and_pasted_at_full_resolution(monkeypatch):
    small, disc, _ = scene()
    image = cv2.resize(small, (8000, 6000), interpolation=cv2.INTER_NEAREST)
    truth = cv2.resize(disc.astype(np.uint8), (8000, 6000), interpolation=cv2.INTER_NEAREST) > 0
    seen = []
    original = prompts.run_grabcut

    def spy(work_rgb, labels, iterations, seed=0):
        seen.append(work_rgb.shape)
        return original(work_rgb, labels, iterations, seed)

    monkeypatch.setattr(prompts, "run_grabcut", spy)
    mask = GrabCutSource(max_side=320).segment(image, Prompt(box=box_of(truth, 100)))
    assert max(seen[0][:2]) <= 320
    assert mask.shape == (6000, 8000) and iou(mask, truth) > 0.9


def test_window_maps_points_and_pastes_back():
    window = Window.around((100, 50, 300, 150), (400, 600), margin=0.1, max_side=100)
    assert window.box == (80, 30, 320, 170) and max(window.size) == 100
    assert window.point(80, 30) == (0, 0) and window.point(10_000, 10_000) == (99, window.size[0] - 1)
    pasted = window.paste(np.ones(window.size, bool), (400, 600))
    assert pasted.sum() == (320 - 80) * (170 - 30) and not pasted[:30].any()


def test_clicks_on_an_instance_see_it_with_generous_context():
    previous = np.zeros((400, 600), bool)
    previous[100:150, 200:260] = True  # 60 x 50, a click in it
    prompt = Prompt(clicks=(Click(230, 120),), previous=previous)
    assert prompt_window(prompt, (400, 600)).box == (191, 91, 270, 160)  # the box's 15 % margin
    wide = prompt_window(prompt, (400, 600), click_context=(0.75, 0.3))
    assert wide.box == (140, 35, 321, 216)  # 60 + 2 x 0.75 x 60 = 150 < 30 % of 600: 180 px around the centre
    small = np.zeros((400, 600), bool)
    small[390:400, 590:600] = True
    corner = prompt_window(Prompt(clicks=(Click(595, 395),), previous=small), (400, 600), click_context=(0.75, 0.3))
    assert corner.box == (505, 305, 600, 400)  # clipped to the image
    with_box = Prompt(box=(200, 100, 260, 150), clicks=(Click(230, 120),))
    assert prompt_window(with_box, (400, 600), click_context=(0.75, 0.3)) == prompt_window(with_box, (400, 600))


def test_error_clicks_go_to_the_centre_of_the_largest_error_region():
    truth = np.zeros((100, 100), bool)
    truth[10:50, 10:50] = True
    prediction = truth.copy()
    prediction[10:50, 10:30] = False  # a missed 40x20 strip
    prediction[70:80, 70:80] = True  # a small extra square
    first, second = error_clicks(prediction, truth, 2)
    assert first.positive and 18 <= first.x <= 21 and 19 <= first.y <= 40  # on the strip's centre line
    assert not second.positive and 73 <= second.x <= 76 and 73 <= second.y <= 76
    assert error_clicks(truth, truth, 3) == []


def test_a_positive_click_adds_the_clicked_object_and_leaves_the_rest():
    image, disc, square = scene()
    tool = PromptTool(GrabCutSource())
    cy, cx = (int(v.mean()) for v in np.nonzero(square))
    result = tool.click(image, disc, [Click(cx, cy, True)])
    assert iou(result.mask & square, square) > 0.85
    assert np.array_equal(result.mask & ~result.region, disc & ~result.region)
    assert iou(result.mask & disc, disc) == 1.0


def test_a_negative_click_removes_only_the_part_it_is_on():
    image, disc, square = scene()
    spurious = np.zeros_like(disc)
    spurious[20:70, 250:330] = True  # background wrongly in the mask
    tool = PromptTool(GrabCutSource())
    result = tool.click(image, disc | square | spurious, [Click(290, 45, False)])
    assert (result.mask & spurious).sum() < 0.1 * spurious.sum()
    assert iou(result.mask & (disc | square), disc | square) > 0.97


def test_clicks_alone_start_a_new_instance():
    image, disc, _ = scene()
    cy, cx = (int(v.mean()) for v in np.nonzero(disc))
    result = PromptTool(GrabCutSource()).click(image, None, [Click(cx, cy)])
    assert result.mask[cy, cx] and iou(result.mask, disc) > 0.5


def test_the_refiner_runs_on_the_box_and_changes_nothing_outside_it(random_refiner):
    image, disc, _ = scene()
    box = box_of(disc, 6)
    coarse, steps = PromptTool(GrabCutSource(), random_refiner, RefineOptions(steps=2)).box_steps(image, box)
    collected = list(steps)
    assert collected and collected[-1].final
    final = collected[-1].mask(0, base=coarse)
    x0, y0, x1, y1 = box
    outside = np.ones(final.shape, bool)
    outside[max(0, y0 - 12):y1 + 12, max(0, x0 - 12):x1 + 12] = False
    assert not final[outside].any()


def test_a_click_refinement_is_held_to_the_click_region(random_refiner):
    image, disc, square = scene()
    cy, cx = (int(v.mean()) for v in np.nonzero(square))
    result = PromptTool(GrabCutSource(), random_refiner, RefineOptions(steps=1)).click(image, disc, [Click(cx, cy)])
    far = ~cv2.dilate(result.region.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    assert np.array_equal(result.mask[far], disc[far])
    assert result.mask[cy, cx]


def test_prompt_head_round_trips_and_refuses_other_files(tmp_path):
    torch.manual_seed(0)
    head = PromptHead(PromptHeadConfig(canvas=64, widths=(16, 16, 8)))
    save_head(head, tmp_path / "head.safetensors", {"training_data": "none"})
    loaded = load_head(tmp_path / "head.safetensors")
    assert loaded.config == head.config
    for k, v in head.state_dict().items():
        assert torch.allclose(loaded.state_dict()[k], v.half().float())
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(PromptHeadError, match="junk.safetensors"):
        load_head(tmp_path / "junk.safetensors")


def test_flip_averages_the_window_and_its_mirror_image():
    from app.refiner.encoder import LiteEncoder
    from app.refiner.prompt_head import predict, prompt_channels

    torch.manual_seed(0)
    head, encoder = PromptHead(PromptHeadConfig(canvas=64, widths=(16, 16, 8))).eval(), LiteEncoder().eval()
    rng = np.random.default_rng(0)
    canvas = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    channels = prompt_channels(64, None, [(10.0, 20.0)], [(50.0, 40.0)])[None]
    mirrored = (np.ascontiguousarray(canvas[:, :, ::-1]), np.ascontiguousarray(channels[..., ::-1]))
    plain, plain_mirrored = predict([head], encoder, canvas, channels), predict([head], encoder, *mirrored)
    assert not np.allclose(plain, plain_mirrored[..., ::-1], atol=1e-3)  # the network itself is not symmetric
    averaged = predict([head], encoder, canvas, channels, flip=True)
    np.testing.assert_allclose(averaged, (plain + plain_mirrored[..., ::-1]) / 2, atol=1e-5)
    np.testing.assert_allclose(predict([head], encoder, *mirrored, flip=True), averaged[..., ::-1], atol=1e-5)


def test_an_ensemble_is_the_mean_of_its_heads_probabilities():
    from app.refiner.encoder import LiteEncoder
    from app.refiner.prompt_head import predict, prompt_channels

    torch.manual_seed(0)
    heads = [PromptHead(PromptHeadConfig(canvas=64, widths=w)).eval() for w in ((16, 16, 8), (24, 16, 16))]
    encoder = LiteEncoder().eval()
    canvas = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    channels = np.stack([prompt_channels(64, None, [(10.0, 20.0)], []), prompt_channels(64, None, [], [(5.0, 5.0)])])
    alone = [predict([head], encoder, canvas, channels, flip=True) for head in heads]
    assert not np.allclose(alone[0], alone[1], atol=1e-3)
    np.testing.assert_allclose(predict(heads, encoder, canvas, channels, flip=True), (alone[0] + alone[1]) / 2,
                               atol=1e-5)


def test_heads_of_different_canvases_are_refused_by_name(tmp_path):
    from app.refiner.prompt_head import load_heads

    for name, canvas in (("a.safetensors", 64), ("b.safetensors", 96)):
        save_head(PromptHead(PromptHeadConfig(canvas=canvas, widths=(16, 16, 8))), tmp_path / name, {})
    assert len(load_heads([tmp_path / "a.safetensors", tmp_path / "a.safetensors"])) == 2
    with pytest.raises(PromptHeadError, match="b.safetensors: its canvas is 96 px"):
        load_heads([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    with pytest.raises(PromptHeadError, match="no prompt-head weights"):
        load_heads([])


def test_shipped_prompt_head_beats_grabcut_on_held_out_pedestrians():
    from app.core.images import read_image_rgb
    from app.refiner.data import split_of

    for name in prompts.DEFAULT_PROMPT_HEADS:
        if not (PACKAGE_WEIGHTS_DIR / name).exists():
            pytest.skip(f"{PACKAGE_WEIGHTS_DIR / name} is not there")
    scores: dict[str, list[float]] = {"head": [], "grabcut": []}
    for stem in ("FudanPed00057", "PennPed00073"):
        assert split_of(f"pennfudan/{stem}") == "val"  # held out from the head's training
        image = read_image_rgb(require(DATA / f"pennfudan/PNGImages/{stem}.png"))
        labels = cv2.imread(str(DATA / f"pennfudan/PedMasks/{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        for k in np.unique(labels)[1:]:
            truth = labels == k
            for name, source in (("head", EncoderSource()), ("grabcut", GrabCutSource())):
                scores[name].append(iou(source.segment(image, Prompt(box=box_of(truth))), truth))
    assert np.mean(scores["head"]) > np.mean(scores["grabcut"]) + 0.03
    assert np.median(scores["head"]) > 0.7


def test_a_mask_that_fills_its_box_is_kept_without_trying_grabcut():
    fg = np.zeros((100, 100), bool)
    fg[22:78, 20:80] = True  # a little inside the box: fits it well
    calls = []
    out = box_prior.tightest_fit((20, 20, 80, 80), fg, fg.astype(np.float32), lambda: calls.append(1))
    assert out is fg and not calls


def test_a_fragment_of_the_box_gives_way_to_the_candidate_that_fills_it():
    box = (20, 20, 80, 80)
    fragment = np.zeros((100, 100), bool)
    fragment[20:35, 20:35] = True  # another object's corner: its own box overlaps the prompt's by 6 %
    probability = np.zeros((100, 100), np.float32)
    probability[40:60, 40:60] = 0.9  # the head alone: a small blob in the middle
    whole = np.zeros((100, 100), bool)
    whole[21:79, 22:80] = True  # GrabCut from the box: the object
    assert box_prior.box_fit(fragment, box) < box_prior.TIGHT_FIT
    out = box_prior.tightest_fit(box, fragment, probability, lambda: whole)
    assert out is whole
    assert box_prior.box_fit(np.zeros((5, 5), bool), (0, 0, 5, 5)) == 0.0


class _Fixed:
    """A coarse source that proposes a given mask, whatever the prompt."""

    name = "fixed"

    def __init__(self, proposal: np.ndarray) -> None:
        self.proposal = proposal

    def segment(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        return self.proposal.copy()


@pytest.mark.parametrize("click", [Click(150.5, 150.5, True), Click(151.5, 149.5, True), Click(181.5, 122.5, False),
                                   Click(2.5, 297.5, True)])
@pytest.mark.parametrize("offset", [0, 1])
def test_a_click_works_on_its_extent_only_and_gets_what_the_whole_image_would_give(click, offset, random_refiner):
    """On a large photo a click's region, coarse mask and grown refine region are worked out on the rectangle the
    masks and the click span (plus margins), not the whole image: the result must equal the whole-image one, for
    clicks at half pixels (rounded as on the whole image, whether the rectangle starts at an odd or even pixel) and
    at the image's edge."""
    image, _, _ = scene()
    before = np.zeros(image.shape[:2], bool)
    before[100 + offset:200, 120 + offset:260] = True
    proposal = before.copy()
    proposal[130:170, 140:175] = False  # a hole and a bump near the clicks
    proposal[90:100, 150:190] = True
    tool = PromptTool(_Fixed(proposal), random_refiner, RefineOptions(steps=1))
    seen = {}
    tool._run = lambda _image, coarse, guidance: seen.update(coarse=coarse, guidance=guidance) or iter(())
    coarse, region, _ = tool.click_steps(image, before, [click])
    radius = PromptTool._seed_radius(before, proposal)
    want_region = prompts.click_region(before, proposal, click, radius)
    seeds = [prompts._discs(before.shape, [click], positive, radius) for positive in (True, False)]
    want = (np.where(want_region, proposal, before) | seeds[0]) & ~seeds[1]
    grown = cv2.dilate(want_region.astype(np.uint8), prompts._disk(2 * radius)) > 0
    assert np.array_equal(region, want_region) and region.any()
    assert np.array_equal(coarse, want) and np.array_equal(seen["coarse"], want)
    assert np.array_equal(seen["guidance"].region, grown)
