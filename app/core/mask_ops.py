"""Raster edits on bool instance masks: brush and eraser strokes, flood fill, lasso, rectangular deltas.

Every operation draws with OpenCV straight into the mask (a ``uint8`` view of the bool array, so no copy)
and touches only the bounding rectangle of the change, which it returns; that rectangle is what the undo
stack stores and what the canvas repaints. Nothing here fills holes or drops parts the edit did not touch.

Rectangles are ``(x0, y0, x1, y1)`` in image pixels, end-exclusive, always clipped to the mask; an edit that
falls wholly outside the image returns ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

Rect = tuple[int, int, int, int]
Point = tuple[float, float]


def clip_rect(rect: Rect, shape: tuple[int, ...]) -> Rect | None:
    """``rect`` clipped to an (H, W) image, or None when nothing of it is inside."""
    h, w = shape[:2]
    x0, y0, x1, y1 = max(rect[0], 0), max(rect[1], 0), min(rect[2], w), min(rect[3], h)
    if x0 >= x1 or y0 >= y1:
        return None
    return (x0, y0, x1, y1)


def union_rect(a: Rect | None, b: Rect | None) -> Rect | None:
    """Smallest rectangle holding both (either may be None)."""
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def intersect_rect(a: Rect | None, b: Rect | None) -> Rect | None:
    """Overlap of two rectangles, or None when they do not overlap (or either is None)."""
    if a is None or b is None:
        return None
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def grow_rect(rect: Rect, margin: int, shape: tuple[int, ...]) -> Rect | None:
    """``rect`` widened by ``margin`` pixels on every side, clipped to the image."""
    return clip_rect((rect[0] - margin, rect[1] - margin, rect[2] + margin, rect[3] + margin), shape)


def mask_bbox(mask: np.ndarray) -> Rect | None:
    """Bounding rectangle of the set pixels, or None for an empty mask."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w == 0 or h == 0:
        return None
    return (x, y, x + w, y + h)


def changed_rect(before: np.ndarray, after: np.ndarray) -> Rect | None:
    """Bounding rectangle of the pixels where two equally shaped masks differ."""
    if before.shape != after.shape:
        raise ValueError(f"mask shapes differ: {before.shape} vs {after.shape}")
    return mask_bbox(before != after)


def brush_radius(size: int) -> int:
    """Circle radius for a brush ``size`` pixels across (a size-1 brush paints one pixel)."""
    return max(int(size), 1) // 2


def _roi(mask: np.ndarray, rect: Rect) -> np.ndarray:
    """Writable ``uint8`` view of a rectangle of a bool mask, for OpenCV to draw into in place."""
    x0, y0, x1, y1 = rect
    return mask[y0:y1, x0:x1].view(np.uint8)


def stroke_rect(points: Sequence[Point], size: int, shape: tuple[int, ...]) -> Rect | None:
    """Rectangle a round brush of ``size`` covers along ``points``, clipped to the image."""
    pts = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    if len(pts) == 0:
        return None
    r = brush_radius(size)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return clip_rect((int(x0) - r, int(y0) - r, int(x1) + r + 1, int(y1) + r + 1), shape)


def paint_stroke(mask: np.ndarray, points: Sequence[Point], size: int, value: bool = True) -> Rect | None:
    """Paint (``value`` True) or erase (False) a round brush of diameter ``size`` along ``points``.

    A disc at every point and a line of the same width between consecutive points, so fast mouse moves
    leave no gaps. Returns the rectangle drawn into (clipped to the image), or None if wholly outside.
    """
    rect = stroke_rect(points, size, mask.shape)
    if rect is None:
        return None
    roi = _roi(mask, rect)
    pts = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64) - (rect[0], rect[1])
    r = brush_radius(size)
    colour = int(bool(value))
    for x, y in pts:
        cv2.circle(roi, (int(x), int(y)), r, colour, thickness=-1)
    for (xa, ya), (xb, yb) in zip(pts[:-1], pts[1:]):
        cv2.line(roi, (int(xa), int(ya)), (int(xb), int(yb)), colour, thickness=2 * r + 1)
    return rect


def fill_region(mask: np.ndarray, point: Point, value: bool = True) -> Rect | None:
    """Flood fill (4-connected) the region of equal pixels around ``point`` with ``value``.

    With ``value`` True, clicking in a hole fills that hole only; with False, clicking on a part removes
    that part only. A region reaching beyond the mask's bounding box is not a hole but the background around
    the object, and is left alone (filling it would turn the rest of the image into the instance). Returns the
    filled rectangle, or None when ``point`` is outside the image, the region already holds ``value``, or it is
    open background.
    """
    found = _region_at(mask, point, value)
    if found is None:
        return None
    region, rect = found
    if value and _is_open(mask, rect):
        return None
    rx, ry, rx1, ry1 = rect
    mask[ry:ry1, rx:rx1][region[ry + 1:ry1 + 1, rx + 1:rx1 + 1] > 0] = bool(value)
    return rect


def is_open_background(mask: np.ndarray, point: Point) -> bool:
    """Whether ``point`` lies in background that :func:`fill_region` leaves alone: not a hole of the mask."""
    found = _region_at(mask, point, True)
    return found is not None and _is_open(mask, found[1])


def _region_at(mask: np.ndarray, point: Point, value: bool) -> tuple[np.ndarray, Rect] | None:
    """The 4-connected region of equal pixels around ``point`` (a (H+2, W+2) flood mask and its rectangle), the
    mask itself untouched; None when ``point`` is outside the image or already holds ``value``."""
    h, w = mask.shape
    x, y = int(round(point[0])), int(round(point[1]))
    if not (0 <= x < w and 0 <= y < h) or bool(mask[y, x]) == bool(value):
        return None
    region = np.zeros((h + 2, w + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    _, _, _, (rx, ry, rw, rh) = cv2.floodFill(mask.view(np.uint8), region, (x, y), 0, flags=flags)
    return region, (rx, ry, rx + rw, ry + rh)


def _is_open(mask: np.ndarray, rect: Rect) -> bool:
    """Whether a background region's rectangle reaches beyond the mask's bounding box (it is not a hole)."""
    bounds = mask_bbox(mask)
    return bounds is None or intersect_rect(rect, bounds) != rect


def paint_polygon(mask: np.ndarray, polygon: Sequence[Point], value: bool = True) -> Rect | None:
    """Fill a closed lasso ``polygon`` (image pixels) with ``value``; holes elsewhere are untouched.

    Returns the polygon's rectangle clipped to the image, or None for fewer than 3 points or a polygon
    wholly outside.
    """
    pts = np.rint(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    if len(pts) < 3:
        return None
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    rect = clip_rect((int(x0), int(y0), int(x1) + 1, int(y1) + 1), mask.shape)
    if rect is None:
        return None
    shifted = (pts - (rect[0], rect[1])).astype(np.int32)
    cv2.fillPoly(_roi(mask, rect), [shifted], int(bool(value)))
    return rect


def take_patch(mask: np.ndarray, rect: Rect) -> np.ndarray:
    """Copy of the pixels of ``rect``."""
    x0, y0, x1, y1 = rect
    return mask[y0:y1, x0:x1].copy()


def put_patch(mask: np.ndarray, rect: Rect, patch: np.ndarray) -> None:
    """Write ``patch`` back into ``rect`` of ``mask``."""
    x0, y0, x1, y1 = rect
    if patch.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"patch of shape {patch.shape} does not fit rect {rect}")
    mask[y0:y1, x0:x1] = patch


@dataclass(frozen=True)
class PackedPatch:
    """A bool rectangle packed eight pixels a byte (``np.packbits``): what an undo step keeps."""

    shape: tuple[int, int]
    bits: bytes

    @classmethod
    def pack(cls, patch: np.ndarray) -> PackedPatch:
        return cls((int(patch.shape[0]), int(patch.shape[1])), np.packbits(patch, axis=None).tobytes())

    def unpack(self) -> np.ndarray:
        h, w = self.shape
        flat = np.unpackbits(np.frombuffer(self.bits, dtype=np.uint8), count=h * w)
        return flat.reshape(h, w).astype(bool)

    @property
    def nbytes(self) -> int:
        return len(self.bits)
