"""COCO polygons: rasterised exactly as pycocotools does, and vectorised from masks without losing pixels.

Rasterising is pycocotools' own (``frPyObjects`` then ``merge``, as ``COCO.annToMask`` does), so our pixels
are the pixels every COCO tool sees.

Vectorising (``mask_to_polygons``), the rule the README quotes:
- Outlines follow pixel *edges*, not pixel centres: in pycocotools' convention pixel (x, y) is the square
  [x, x+1] x [y, y+1], so a polygon through the corners of the mask's boundary pixels rasterises back to
  exactly those pixels. OpenCV traces centres, so we trace the mask upsampled 2x (nearest) with
  ``cv2.findContours(RETR_CCOMP, CHAIN_APPROX_SIMPLE)`` and map each upsampled centre u to corner
  ``(u + 1) // 2``. Vertices are integers; straight runs keep only their end points.
- Several parts: one polygon per outer boundary (COCO merges the polygons of an annotation as a union).
- Holes: each hole is joined to its outer boundary by a zero-width cut (a "keyhole": outer ... P, hole,
  back to P ... outer). pycocotools fills each polygon by even-odd crossings, so the hole stays empty, and
  the hole runs opposite to the outer boundary, so nonzero-winding renderers leave it empty too. Islands
  inside holes are parts of their own.
- With ``tolerance > 0`` each outline is simplified by ``cv2.approxPolyDP`` (Douglas-Peucker, in pixels);
  the result is then only approximately the mask, and export checks it (see ``pixel_difference``).
Exporters compare every vectorised polygon's rasterisation with the mask and never write a lossy polygon
silently: see ``app.core.formats.coco_export.write_coco``.
"""
from __future__ import annotations

from itertools import chain
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

Polygons = list[list[float]]

REACH = 4.0
"""How far outside its image a polygon's vertex may lie, in multiples of the image's longer side: pycocotools
allocates and walks the whole span of a polygon's coordinates, so a vertex at 1e12 hangs it or crashes it."""


def coordinate_limit(height: int, width: int) -> float:
    """The largest absolute coordinate a polygon of a ``width`` x ``height`` image may have (``REACH``)."""
    return REACH * max(height, width)


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict[str, Any]:
    """Compressed RLE (counts as str) of COCO polygons, rasterised as ``COCO.annToMask`` does.

    Each polygon needs at least 3 points (6 numbers): pycocotools would read a 4-number list as a box. Every
    coordinate must be a finite number within ``coordinate_limit`` (ValueError otherwise: imports check this
    per annotation, and a damaged project's polygons must not reach pycocotools either). No polygons at all
    gives an empty mask.
    """
    for k, polygon in enumerate(polygons):
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"polygon {k} has {len(polygon)} coordinates; needs an even number, at least 6")
    if not (isinstance(height, (int, np.integer)) and isinstance(width, (int, np.integer)) and height > 0
            and width > 0):
        raise ValueError(f"a {width}x{height} image has no pixels to rasterise polygons on")
    limit = coordinate_limit(height, width)
    try:
        coords = np.fromiter(chain.from_iterable(polygons), np.float64, sum(map(len, polygons)))
    except (TypeError, ValueError, OverflowError):
        raise ValueError("polygon coordinates are not all numbers") from None
    if coords.size and not (coords.min() >= -limit and coords.max() <= limit):  # NaN fails both
        raise ValueError(f"polygon coordinates are not all finite numbers within {limit:g} of the "
                         f"{width}x{height} image")
    if not polygons:
        rle = mask_utils.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
    else:
        rle = mask_utils.merge(mask_utils.frPyObjects(list(polygons), height, width))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0) -> Polygons:
    """COCO polygons of a (H, W) mask, exact when ``tolerance`` is 0 (see the module docstring)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    binary = (mask != 0).astype(np.uint8)
    x0, y0, w, h = cv2.boundingRect(binary)
    if w == 0 or h == 0:
        return []
    crop = binary[y0 : y0 + h, x0 : x0 + w]
    up = cv2.resize(crop, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    offset = np.array([x0, y0], np.int32)
    outlines = [_simplify((c.reshape(-1, 2) + 1) // 2 + offset, tolerance) for c in contours]
    polygons: Polygons = []
    for index, (_, _, first_hole, parent) in enumerate(hierarchy[0]):
        if parent != -1 or len(outlines[index]) < 3:
            continue
        outline = outlines[index]
        hole = first_hole
        while hole != -1:
            if len(outlines[hole]) >= 3:
                outline = _keyhole(outline, outlines[hole])
            hole = hierarchy[0][hole][0]
        polygons.append(outline.ravel().tolist())
    return polygons


def pixel_difference(polygons: Sequence[Sequence[float]], mask: np.ndarray) -> int:
    """How many pixels the polygons' pycocotools rasterisation gets wrong against ``mask``."""
    height, width = mask.shape
    drawn = mask_utils.decode(polygons_to_rle(polygons, height, width))
    return int(np.count_nonzero(drawn.astype(bool) != mask.astype(bool)))


def _simplify(outline: np.ndarray, tolerance: float) -> np.ndarray:
    if tolerance <= 0:
        return outline
    return cv2.approxPolyDP(outline.reshape(-1, 1, 2), tolerance, True).reshape(-1, 2)


def _keyhole(outline: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Splice a hole into an outline through a zero-width cut from the outline vertex nearest the hole."""
    nearest = int(np.argmin(((outline - hole[0]) ** 2).sum(axis=1)))
    return np.concatenate([outline[: nearest + 1], hole, hole[:1], outline[nearest:]])
