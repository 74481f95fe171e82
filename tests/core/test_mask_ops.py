"""Brush, eraser, flood fill, lasso and rectangle deltas on bool masks: exact pixels, holes, borders."""
from __future__ import annotations

import numpy as np
import pytest

from app.core import mask_ops
from app.core.mask_ops import PackedPatch


def ring(shape: tuple[int, int] = (40, 50)) -> np.ndarray:
    """A filled square with a square hole in it, and a separate small part."""
    m = np.zeros(shape, dtype=bool)
    m[5:25, 5:25] = True
    m[10:20, 10:20] = False
    m[30:35, 40:45] = True
    return m


def test_single_dab_is_an_exact_disc() -> None:
    m = np.zeros((21, 21), dtype=bool)
    rect = mask_ops.paint_stroke(m, [(10, 10)], size=7)
    assert rect == (7, 7, 14, 14)
    yy, xx = np.mgrid[:21, :21]
    inside = (xx - 10) ** 2 + (yy - 10) ** 2
    assert m[inside <= 4].all()  # well inside radius 3
    assert not m[inside >= 16].any()  # at or beyond radius 4
    assert m[10, 7] and m[10, 13] and m[7, 10] and m[13, 10]  # the radius-3 extremes


def test_size_one_brush_paints_one_pixel() -> None:
    m = np.zeros((5, 5), dtype=bool)
    assert mask_ops.paint_stroke(m, [(2, 3)], size=1) == (2, 3, 3, 4)
    assert m.sum() == 1 and m[3, 2]


def test_stroke_segment_leaves_no_gap_and_stays_in_its_rect() -> None:
    m = np.zeros((30, 100), dtype=bool)
    rect = mask_ops.paint_stroke(m, [(10, 15), (90, 15)], size=5)
    assert rect == (8, 13, 93, 18)
    assert m[13:18, 10:91].all()  # the full 5-pixel band along the line
    outside = m.copy()
    outside[13:18, 8:93] = False
    assert not outside.any()


def test_eraser_keeps_holes_and_other_parts() -> None:
    m = ring()
    original = m.copy()
    rect = mask_ops.paint_stroke(m, [(6, 6), (6, 22)], size=3, value=False)
    assert rect == (5, 5, 8, 24)
    assert not m[5:24, 5:8].any()
    untouched = np.ones_like(m)
    untouched[5:24, 5:8] = False
    assert (m[untouched] == original[untouched]).all()
    assert not m[10:20, 10:20].any()  # the hole is still a hole
    assert m[30:35, 40:45].all()  # the other part is still there


def test_brush_over_hole_edge_does_not_fill_the_rest_of_the_hole() -> None:
    m = ring()
    mask_ops.paint_stroke(m, [(10, 15)], size=3)
    assert m[15, 9:12].all() and m[14:17, 10].all()  # a radius-1 disc is a plus
    assert not m[14, 11] and not m[16, 11]
    assert not m[10:20, 12:20].any()


def test_stroke_is_clipped_at_the_image_borders() -> None:
    m = np.zeros((10, 12), dtype=bool)
    rect = mask_ops.paint_stroke(m, [(-3, -3), (0, 0)], size=5)
    assert rect == (0, 0, 3, 3)
    assert m[0:3, 0:3].any() and not m[3:, :].any() and not m[:, 3:].any()
    rect = mask_ops.paint_stroke(m, [(11, 9), (14, 12)], size=3)
    assert rect == (10, 8, 12, 10)
    assert m[9, 11] and m[8, 10]


def test_stroke_wholly_outside_changes_nothing() -> None:
    m = np.zeros((10, 10), dtype=bool)
    assert mask_ops.paint_stroke(m, [(-20, -20), (-15, -30)], size=5) is None
    assert mask_ops.paint_stroke(m, [], size=5) is None
    assert not m.any()


def test_paint_works_in_place_without_copying_the_mask() -> None:
    m = np.zeros((50, 60), dtype=bool)
    view = m
    mask_ops.paint_stroke(m, [(30, 25)], size=9)
    assert view is m and m.dtype == bool and set(np.unique(m.view(np.uint8))) == {0, 1}


def test_fill_fills_only_the_clicked_hole() -> None:
    m = ring()
    m[2:4, 2:4] = True  # a second, unrelated hole-free bit outside
    rect = mask_ops.fill_region(m, (15, 15), True)
    assert rect == (10, 10, 20, 20)
    assert m[5:25, 5:25].all()
    assert not m[0:2, :].any()  # the outside background stayed background


def test_fill_leaves_the_background_around_the_object_alone() -> None:
    m = ring()
    before = m.copy()
    assert mask_ops.fill_region(m, (0, 0), True) is None
    assert (m == before).all()
    assert mask_ops.is_open_background(m, (0, 0))
    assert not mask_ops.is_open_background(m, (15, 15))  # a hole
    assert not mask_ops.is_open_background(m, (6, 6))  # on the mask
    assert not mask_ops.is_open_background(m, (-1, 0))
    empty = np.zeros((9, 9), dtype=bool)
    assert mask_ops.fill_region(empty, (4, 4), True) is None and not empty.any()


def test_fill_is_four_connected() -> None:
    m = np.zeros((9, 9), dtype=bool)
    m[4, :] = True
    m[:, 4] = True  # a cross splits the background into four quadrants
    m[4, 4] = True
    m[3, 3] = True  # and a diagonal-only neighbour does not connect quadrants
    rect = mask_ops.fill_region(m, (0, 0), True)
    assert rect == (0, 0, 4, 4)
    assert m[:4, :4].all() and not m[5:, 5:].any() and not m[:4, 5:].any()


def test_fill_with_false_removes_only_that_part() -> None:
    m = ring()
    rect = mask_ops.fill_region(m, (42, 32), False)
    assert rect == (40, 30, 45, 35)
    assert not m[30:35, 40:45].any()
    assert m[5:25, 5:25].sum() == 20 * 20 - 10 * 10


def test_fill_on_same_value_or_outside_does_nothing() -> None:
    m = ring()
    before = m.copy()
    assert mask_ops.fill_region(m, (6, 6), True) is None
    assert mask_ops.fill_region(m, (-1, 6), True) is None
    assert mask_ops.fill_region(m, (50, 0), True) is None
    assert (m == before).all()


def test_lasso_add_and_subtract_keep_holes_elsewhere() -> None:
    m = ring()
    rect = mask_ops.paint_polygon(m, [(30, 5), (38, 5), (38, 12), (30, 12)], True)
    assert rect == (30, 5, 39, 13)
    assert m[5:13, 30:39].all()
    assert not m[10:20, 10:20].any()
    rect = mask_ops.paint_polygon(m, [(5, 5), (9, 5), (9, 9), (5, 9)], False)
    assert rect == (5, 5, 10, 10)
    assert not m[5:10, 5:10].any() and m[10:25, 5:10].all()


def test_lasso_clips_to_the_image_and_needs_three_points() -> None:
    m = np.zeros((10, 10), dtype=bool)
    rect = mask_ops.paint_polygon(m, [(-5, -5), (4, -5), (4, 4), (-5, 4)], True)
    assert rect == (0, 0, 5, 5)
    assert m[:5, :5].all() and m.sum() == 25
    assert mask_ops.paint_polygon(m, [(1, 1), (8, 8)], True) is None
    assert mask_ops.paint_polygon(m, [(20, 20), (30, 20), (30, 30)], True) is None


def test_patch_round_trip_and_packing() -> None:
    m = ring()
    rect = (3, 4, 29, 17)
    patch = mask_ops.take_patch(m, rect)
    assert patch.shape == (13, 26)
    packed = PackedPatch.pack(patch)
    assert packed.nbytes == (13 * 26 + 7) // 8
    assert (packed.unpack() == patch).all()
    m[4:17, 3:29] = ~m[4:17, 3:29]
    mask_ops.put_patch(m, rect, patch)
    assert (m == ring()).all()
    with pytest.raises(ValueError, match="does not fit"):
        mask_ops.put_patch(m, rect, patch[1:])


def test_changed_rect_and_bbox() -> None:
    a = ring()
    b = a.copy()
    b[12, 33] = True
    b[2, 7] = True
    assert mask_ops.changed_rect(a, b) == (7, 2, 34, 13)
    assert mask_ops.changed_rect(a, a.copy()) is None
    assert mask_ops.mask_bbox(a) == (5, 5, 45, 35)
    assert mask_ops.mask_bbox(np.zeros((4, 4), dtype=bool)) is None
    with pytest.raises(ValueError, match="shapes differ"):
        mask_ops.changed_rect(a, a[1:])


def test_rect_helpers() -> None:
    assert mask_ops.clip_rect((-5, 3, 8, 30), (20, 6)) == (0, 3, 6, 20)
    assert mask_ops.clip_rect((7, 0, 9, 5), (20, 6)) is None
    assert mask_ops.union_rect(None, (1, 2, 3, 4)) == (1, 2, 3, 4)
    assert mask_ops.union_rect((0, 5, 2, 6), (1, 2, 3, 4)) == (0, 2, 3, 6)
    assert mask_ops.grow_rect((2, 2, 4, 4), 3, (10, 10)) == (0, 0, 7, 7)
