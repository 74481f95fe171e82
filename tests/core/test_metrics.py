"""Metrics against hand-computed cases and a plain transcription of CascadePSP's compute_boundary_acc."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from app.core.metrics import (
    MetricAccumulator,
    boundary_accuracy,
    boundary_iou,
    intersection_union,
    iou,
    mask_to_boundary,
    mba_radii,
    score,
    to_binary,
)


def rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def reference_mba(gt: np.ndarray, seg: np.ndarray) -> float:
    """CascadePSP util/compute_boundary_acc.py, binary version, transcribed as the oracle."""
    gt = gt.astype(np.uint8)
    seg = seg.astype(np.uint8)
    h, w = gt.shape
    max_radius = (w + h) / 300
    accs = []
    for i in range(5):
        r = 1 + int((max_radius - 1) / 5 * i)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r * 2 + 1, r * 2 + 1))
        band = cv2.morphologyEx(gt, cv2.MORPH_GRADIENT, kernel) > 0
        g, s = gt[band], seg[band]
        accs.append((g * s + (1 - g) * (1 - s)).sum() / band.sum())
    return sum(accs) / 5


def test_iou_of_two_rectangles() -> None:
    a = rect((20, 20), 0, 10, 0, 10)
    b = rect((20, 20), 5, 15, 5, 15)
    assert intersection_union(a, b) == (25, 175)
    assert iou(a, b) == pytest.approx(25 / 175)
    assert iou(a, a) == 1.0


def test_uint8_binarised_at_128_and_bool_accepted() -> None:
    m = np.zeros((4, 4), np.uint8)
    m[0, 0], m[0, 1], m[0, 2] = 255, 128, 127
    assert to_binary(m).tolist()[0] == [True, True, False, False]
    zero_one = np.array([[0, 1], [1, 0]], np.uint8)
    assert to_binary(zero_one).tolist() == [[False, True], [True, False]]
    b = rect((10, 10), 2, 6, 2, 6)
    assert iou(b.astype(np.uint8) * 255, b) == 1.0


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 1), bool), [[0, 1]]])
def test_bad_mask_types_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="prediction"):
        iou(bad, np.zeros((4, 4), bool))  # type: ignore[arg-type]


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differs"):
        iou(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="ignore"):
        iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool), ignore=np.zeros((3, 4), bool))


def test_boundary_band_is_inner_ring() -> None:
    sq = rect((50, 50), 10, 30, 10, 30)  # diagonal 70.7 → d = round(1.41) = 1
    band = mask_to_boundary(sq)
    assert band.sum() == 20 * 20 - 18 * 18
    assert not band[11:29, 11:29].any()


def test_boundary_band_counts_the_image_border() -> None:
    m = rect((50, 50), 0, 50, 0, 25)
    band = mask_to_boundary(m)
    assert band[0, :25].all() and band[:, 0].all() and band[:, 24].all()


def test_boundary_iou_of_shifted_square_by_hand() -> None:
    gt = rect((50, 50), 10, 30, 10, 30)
    pred = rect((50, 50), 10, 30, 11, 31)
    # rings of 76 px each; they share rows 10 and 29 over columns 11..29 (2 × 19 = 38 px)
    assert boundary_iou(pred, gt) == pytest.approx(38 / (76 + 76 - 38))
    assert iou(pred, gt) == pytest.approx(380 / 420)


def test_boundary_iou_width_grows_with_ratio() -> None:
    gt = rect((200, 200), 50, 150, 50, 150)
    pred = rect((200, 200), 50, 150, 54, 154)
    assert boundary_iou(pred, gt, dilation_ratio=0.05) > boundary_iou(pred, gt, dilation_ratio=0.01)


@pytest.mark.parametrize(
    ("hw", "radii"),
    [((1600, 2048), [1, 3, 5, 7, 9]), ((3600, 5000), [1, 6, 12, 17, 23]),
     ((3000, 4000), [1, 5, 9, 14, 18]), ((480, 640), [1, 1, 2, 2, 3]), ((20, 20), [1, 1, 1, 1, 1])],
)
def test_mba_radii_match_spec_table(hw: tuple[int, int], radii: list[int]) -> None:
    assert mba_radii(*hw) == radii


def test_mba_identical_is_one_and_shift_by_hand() -> None:
    gt = rect((30, 30), 10, 20, 10, 20)  # radii all 1: 3×3 cross kernel
    assert boundary_accuracy(gt, gt) == 1.0
    pred = rect((30, 30), 10, 20, 11, 21)
    # band = cross-dilation (140 px) − cross-erosion (64 px) = 76 px; columns 10 and 20 (10 px each) wrong
    assert boundary_accuracy(pred, gt) == pytest.approx(56 / 76)


def test_mba_matches_reference_on_random_shapes() -> None:
    rng = np.random.default_rng(0)
    for h, w in [(480, 640), (300, 500), (97, 131)]:
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.uint8)
        for _ in range(4):
            c = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.circle(gt, c, int(rng.integers(5, min(h, w) // 3)), 1, -1)
            cv2.circle(pred, (c[0] + int(rng.integers(-6, 7)), c[1] + int(rng.integers(-6, 7))),
                       int(rng.integers(5, min(h, w) // 3)), 1, -1)
        ours = boundary_accuracy(pred.astype(bool), gt.astype(bool))
        assert ours == pytest.approx(reference_mba(gt, pred), abs=1e-12)
        assert 0.0 < ours < 1.0


def test_mba_lower_for_larger_shift() -> None:
    gt = rect((480, 640), 100, 300, 200, 400)
    scores = [boundary_accuracy(rect((480, 640), 100, 300, 200 + s, 400 + s), gt) for s in (0, 1, 3, 6)]
    assert scores[0] == 1.0
    assert scores == sorted(scores, reverse=True) and scores[-1] < scores[1] < 1.0


def test_ignore_mask_removes_disagreement() -> None:
    gt = rect((30, 30), 10, 20, 10, 20)
    pred = rect((30, 30), 10, 20, 11, 21)
    ignore = np.zeros((30, 30), bool)
    ignore[:, 10] = ignore[:, 20] = True
    assert iou(pred, gt) < 1.0
    assert iou(pred, gt, ignore) == 1.0
    assert boundary_accuracy(pred, gt, ignore) == 1.0
    assert iou(pred, gt, ignore=ignore.astype(np.uint8) * 255) == 1.0


def test_ignore_changes_counts() -> None:
    a = rect((20, 20), 0, 10, 0, 10)
    b = rect((20, 20), 5, 15, 5, 15)
    ignore = rect((20, 20), 0, 5, 0, 20)  # drops 50 px of a's exclusive part
    assert intersection_union(a, b, ignore) == (25, 125)


def test_empty_masks() -> None:
    empty = np.zeros((40, 40), bool)
    obj = rect((40, 40), 10, 20, 10, 20)
    assert iou(empty, empty) == 1.0
    assert boundary_iou(empty, empty) == 1.0
    assert boundary_accuracy(empty, empty) == 1.0
    assert iou(obj, empty) == 0.0 and iou(empty, obj) == 0.0
    assert boundary_iou(obj, empty) == 0.0
    assert boundary_accuracy(obj, empty) < 1.0  # spurious object on empty GT is penalised
    assert boundary_accuracy(empty, obj) < 1.0


def test_full_masks() -> None:
    full = np.ones((40, 40), bool)
    empty = np.zeros((40, 40), bool)
    assert iou(full, full) == 1.0
    assert boundary_accuracy(full, full) == 1.0
    assert boundary_accuracy(empty, full) == 0.0
    assert boundary_accuracy(full, empty) == 0.0


def test_all_ignored_counts_as_perfect() -> None:
    a = rect((10, 10), 0, 5, 0, 5)
    ignore = np.ones((10, 10), bool)
    s = score(a, ~a, ignore)
    assert (s.iou, s.boundary_iou, s.mba) == (1.0, 1.0, 1.0)


def test_accumulator_dataset_level_iou_and_means() -> None:
    acc = MetricAccumulator()
    assert math.isnan(acc.summary().iou) and acc.summary().count == 0
    big_gt = rect((100, 100), 0, 100, 0, 50)
    big_pred = rect((100, 100), 0, 100, 0, 40)  # 4000 / 5000
    small_gt = rect((100, 100), 0, 10, 0, 10)
    small_pred = rect((100, 100), 0, 10, 0, 5)  # 50 / 100
    s1 = acc.add(big_pred, big_gt)
    s2 = acc.add(small_pred, small_gt)
    summary = acc.summary()
    assert summary.count == 2
    assert summary.iou == pytest.approx(4050 / 5100)
    assert summary.mean_iou == pytest.approx((0.8 + 0.5) / 2)
    assert summary.mba == pytest.approx((s1.mba + s2.mba) / 2)
    assert summary.mean_boundary_iou == pytest.approx((s1.boundary_iou + s2.boundary_iou) / 2)
    assert s1.boundary_iou == pytest.approx(boundary_iou(big_pred, big_gt))
