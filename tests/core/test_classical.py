"""Classical refiners: right output, real improvement on an easy image, no crash on degenerate masks."""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from app.core.classical import (
    CLASSICAL_REFINERS,
    grabcut_refine,
    guided_filter,
    guided_filter_refine,
    morph_smooth,
    snap_to_edges,
)
from app.core.metrics import iou
from tests.shared_data import DATA

REFINERS = sorted(CLASSICAL_REFINERS.items())


def bright_disk(h: int = 120, w: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """A bright noisy disk on a dark noisy background, and its true mask."""
    disk = np.zeros((h, w), np.uint8)
    cv2.circle(disk, (w // 2, h // 2), 40, 1, -1)
    noise = np.random.default_rng(0).normal(0, 8, (h, w, 3))
    image = np.clip(np.where(disk[..., None] > 0, 200.0, 40.0) + noise, 0, 255).astype(np.uint8)
    return image, disk > 0


def squarish(h: int = 120, w: int = 120) -> np.ndarray:
    """A square coarse mask over the disk: corners stick out, the sides fall short."""
    m = np.zeros((h, w), bool)
    m[24:98, 22:96] = True
    return m


@pytest.mark.parametrize(("name", "refine"), REFINERS)
def test_output_shape_and_dtype(name: str, refine) -> None:
    image, _ = bright_disk()
    for coarse in (squarish(), squarish().astype(np.uint8) * 255):
        out = refine(image, coarse)
        assert out.shape == (120, 120) and out.dtype == bool, name


@pytest.mark.parametrize("refine", [grabcut_refine, guided_filter_refine])
def test_improves_square_mask_on_bright_disk(refine) -> None:
    image, truth = bright_disk()
    coarse = squarish()
    before = iou(coarse, truth)
    after = iou(refine(image, coarse), truth)
    assert after > before + 0.003


def test_grabcut_recovers_disk_closely_and_repeats() -> None:
    image, truth = bright_disk()
    first = grabcut_refine(image, squarish())
    assert iou(first, truth) > 0.93
    assert np.array_equal(first, grabcut_refine(image, squarish()))


def test_morph_smooth_drops_specks_and_fills_pinholes() -> None:
    image, truth = bright_disk()
    coarse = truth.copy()
    coarse[5:7, 5:7] = True  # speck far away
    coarse[60, 60] = False  # pinhole
    out = morph_smooth(image, coarse)
    assert not out[5:7, 5:7].any() and out[60, 60]
    assert iou(out, truth) > 0.97


@pytest.mark.parametrize(("name", "refine"), REFINERS)
def test_degenerate_masks(name: str, refine) -> None:
    image, _ = bright_disk()
    empty = np.zeros((120, 120), bool)
    full = np.ones((120, 120), bool)
    tiny = empty.copy()
    tiny[50, 50] = True
    small = empty.copy()
    small[50:53, 50:53] = True
    assert not refine(image, empty).any(), name
    assert refine(image, full).all(), name
    for coarse in (tiny, small):
        out = refine(image, coarse)
        assert out.shape == coarse.shape and out.dtype == bool, name


@pytest.mark.parametrize(("name", "refine"), REFINERS)
def test_mask_touching_border(name: str, refine) -> None:
    image, _ = bright_disk()
    coarse = np.zeros((120, 120), bool)
    coarse[:, :70] = True
    out = refine(image, coarse)
    assert out.shape == coarse.shape and out[:, :30].all(), name


def test_grabcut_failure_keeps_coarse(caplog: pytest.LogCaptureFixture) -> None:
    image = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    coarse = np.ones((900, 900), bool)
    coarse[:, 450] = False  # the only background, a 1-px line, vanishes when the crop is downscaled
    assert np.array_equal(grabcut_refine(image, coarse), coarse)
    assert "GrabCut failed" in caplog.text


@pytest.mark.parametrize(("name", "refine"), REFINERS)
def test_bad_input_raises(name: str, refine) -> None:
    image, truth = bright_disk()
    with pytest.raises(ValueError, match="image must be an H×W×3 uint8"):
        refine(image.astype(np.float32), truth)
    with pytest.raises(ValueError, match="image must be an H×W×3 uint8"):
        refine(image[..., 0], truth)
    with pytest.raises(ValueError, match="differs from image size"):
        refine(image, truth[:100])
    with pytest.raises(ValueError, match="coarse mask"):
        refine(image, truth.astype(np.float32))


def test_guided_filter_preserves_edges_and_constants() -> None:
    step = np.zeros((40, 40), np.float32)
    step[:, 20:] = 1.0
    guide = np.repeat(step[..., None], 3, axis=2)
    out = guided_filter(guide, step, radius=4, eps=1e-6)
    assert np.abs(out - step).max() < 0.02
    flat = guided_filter(guide, np.full((40, 40), 0.3, np.float32), radius=4, eps=1e-3)
    assert np.allclose(flat, 0.3, atol=1e-4)
    smooth = guided_filter(guide, step, radius=4, eps=1e3)  # huge eps: a plain (double) box blur
    assert 0.2 < smooth[20, 19] < 0.8


def test_real_image_runs() -> None:
    images, masks = DATA / "ecssd" / "images", DATA / "ecssd" / "masks"
    if not masks.is_dir():
        pytest.skip(f"ECSSD not found at {masks}")
    image = cv2.cvtColor(cv2.imread(str(images / "0001.jpg")), cv2.COLOR_BGR2RGB)
    gt = cv2.imread(str(masks / "0001.png"), cv2.IMREAD_GRAYSCALE) >= 128
    coarse = cv2.dilate(gt.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    for name, refine in REFINERS:
        out = refine(image, coarse)
        assert out.shape == gt.shape and out.dtype == bool
        assert iou(out, gt) > 0.6, name
    assert iou(grabcut_refine(image, coarse), gt) > iou(coarse, gt)


def test_closed_form_matting_snaps_a_shifted_mask_to_the_object():
    pytest.importorskip("pymatting", reason="closed-form matting is the optional 'eval' extra")
    from app.core.classical import available_refiners, matting_refine
    from app.core.metrics import iou

    yy, xx = np.mgrid[:120, :160]
    truth = (yy - 60) ** 2 + (xx - 80) ** 2 <= 35**2
    image = np.where(truth[..., None], np.uint8(220), np.uint8(30)).repeat(3, axis=2)
    coarse = np.roll(truth, 4, axis=1)
    refined = matting_refine(image, coarse)
    assert iou(refined, truth) > iou(coarse, truth) + 0.05  # within the trimap's unknown band it follows the edge
    assert "matting" in available_refiners()


def test_snap_puts_a_moved_boundary_on_the_edge_and_leaves_a_kept_one_alone() -> None:
    """The refiner moved the right side of a shifted disk most of the way (2 px short) and kept the left side,
    which is 2 px off too: the moved side lands on the edge, the kept side stays exactly where it was."""
    image, truth = bright_disk()
    yy, xx = np.mgrid[:120, :120]
    coarse = (yy - 60) ** 2 + (xx - 56) ** 2 <= 40**2          # 4 px left of the truth
    refined = coarse | (((yy - 60) ** 2 + (xx - 58) ** 2 <= 40**2) & (xx > 60))   # right half moved 2 px
    snapped = snap_to_edges(image, refined, coarse)
    right, left = xx > 75, xx < 45
    assert (snapped != truth)[right].sum() < 0.25 * (refined != truth)[right].sum()
    assert np.array_equal(snapped[left], refined[left])
    assert np.array_equal(snap_to_edges(image, coarse, coarse), coarse)


def test_snap_refuses_a_mask_of_another_size() -> None:
    image, truth = bright_disk()
    with pytest.raises(ValueError, match="differs from image size"):
        snap_to_edges(image, truth[:100], truth)


def test_snap_leaves_a_boundary_the_refiner_only_touched_here_and_there() -> None:
    """A few flipped pixels (under a fifth of a pixel per boundary pixel) are not a moved boundary."""
    image, _truth = bright_disk()
    yy, xx = np.mgrid[:120, :120]
    coarse = (yy - 60) ** 2 + (xx - 56) ** 2 <= 40**2
    refined = coarse.copy()
    refined[60, 97:99] = True  # 2 pixels pushed out on a 250-pixel boundary
    assert np.array_equal(snap_to_edges(image, refined, coarse), refined)
    assert not np.array_equal(snap_to_edges(image, refined, coarse, min_move=0.0), refined)
