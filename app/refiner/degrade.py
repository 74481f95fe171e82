"""Coarse-mask synthesis from ground truth, for training and evaluating the refiner.

Two families of degradation:

- SegRefiner's own (MengyuWang826/SegRefiner mmdet/datasets/pipelines/loading.py, from CascadePSP
  util/boundary_modification.py): ``modify_boundary`` turns every contour into a coarse polygon with a
  narrow-based part cut away, then ``perturb_seg`` applies random local dilations/erosions until the IoU
  with that polygon drops below 0.8. The "expand" variant fills the GT's holes first, which teaches the
  model to open holes.
- The errors real models make: low-resolution output upsampled, a coarser polygon, a shifted boundary,
  missing thin parts, spurious blobs and holes.

Everything runs on the object's bounding box plus a margin, so cost follows the object, not the image.
Pure numpy + OpenCV (no torch): a seeded ``numpy.random.Generator`` drives all randomness.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import cv2
import numpy as np

from app.core.metrics import to_binary

COARSE_KINDS: tuple[str, ...] = (
    "segrefiner", "segrefiner_expand", "lowres", "polygon", "shift", "missing_thin", "blobs",
)
# Kinds that need the image too (``synthesize(..., image=...)``).
IMAGE_KINDS: tuple[str, ...] = ("leak",)
ALL_KINDS: tuple[str, ...] = COARSE_KINDS + IMAGE_KINDS
DEFAULT_PROBS: Mapping[str, float] = {
    "segrefiner": 0.30, "segrefiner_expand": 0.10, "lowres": 0.15, "polygon": 0.10,
    "shift": 0.15, "missing_thin": 0.10, "blobs": 0.10,
}
NO_DEGRADATION = "none"
FALLBACK_KIND = "shift"

MIN_IOU = 0.3
MAX_IOU = 0.995
MAX_AREA_RATIO = 3.0
ATTEMPTS = 4

Box = tuple[int, int, int, int]


def _box(mask: np.ndarray, margin: int) -> Box:
    """(y0, y1, x0, x1) of the mask's bounding box grown by ``margin``, clipped to the image."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin),
            max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin))


def _paste(shape: tuple[int, int], box: Box, crop: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[box[0]:box[1], box[2]:box[3]] = crop
    return out


def _object_size(mask: np.ndarray) -> float:
    """Side of the square with the mask's area: the length scale every degradation is relative to."""
    return math.sqrt(float(np.count_nonzero(mask)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


# --- SegRefiner's synthesis -----------------------------------------------------------------------


def _random_structure(size: int, rng: np.random.Generator) -> np.ndarray:
    """CascadePSP's "fixed" structuring-element choice: square, disk, or a flat/tall ellipse."""
    choice = int(rng.integers(1, 5))
    if choice == 1:
        return cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    if choice == 2:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    if choice == 3:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size // 2))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size // 2, size))


def perturb_seg(seg: np.ndarray, rng: np.random.Generator, iou_target: float = 0.8,
                max_rounds: int = 250) -> np.ndarray:
    """Random local dilate/erode rounds until IoU with the input drops below ``iou_target``.

    Each round makes 4 operations on a random rectangle (its centre pixel first set to a random value with
    p = 0.25, which seeds islands and holes), then the IoU is checked. Returns a bool mask.
    """
    ref = to_binary(seg, "seg")
    h, w = ref.shape
    out = ref.astype(np.uint8) * 255
    if h <= 2 or w <= 2:
        return ref
    ref_count = np.count_nonzero(ref)
    for _ in range(max_rounds):
        for _ in range(4):
            lx, ly = int(rng.integers(w)), int(rng.integers(h))
            rx, ry = int(rng.integers(lx + 1, w + 1)), int(rng.integers(ly + 1, h + 1))
            if rng.random() < 0.25:
                out[(ly + ry) // 2, (lx + rx) // 2] = int(rng.integers(2)) * 255
            op = cv2.dilate if rng.random() < 0.5 else cv2.erode
            kernel = _random_structure(int(rng.integers(3, 10)), rng)
            out[ly:ry, lx:rx] = op(out[ly:ry, lx:rx], kernel)
        cur = out > 0
        inter = np.count_nonzero(cur & ref)
        union = ref_count + np.count_nonzero(cur) - inter
        if (inter + 1e-6) / (union + 1e-6) < iou_target:
            break
    return out > 0


def boundary_polygons(mask: np.ndarray, rng: np.random.Generator, regional_sample_rate: float = 0.1,
                      sample_rate: float = 0.1) -> np.ndarray:
    """SegRefiner's polygonisation: every contour (holes too) cut at a narrow base and subsampled.

    Contours under 10 points are dropped. For each, n = int(rate·N) consecutive points are removed,
    starting uniformly among the ceil(10 %) shortest chords (point i to i+n); then a random int(rate·N')
    of the remaining points are kept in order. All polygons are drawn filled in one call, as the official
    code does; OpenCV fills their union with the even-odd rule, so a hole whose polygon survives stays a
    hole. If no polygon survives the input is returned. Returns a bool mask.
    """
    m = to_binary(mask, "mask").astype(np.uint8) * 255
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for contour in contours:
        n = contour.shape[0]
        if n < 10:
            continue
        n_rm = int(n * regional_sample_rate)
        pts = contour[:, 0, :].astype(np.int64)
        chords = ((pts[:n - n_rm] - pts[n_rm:]) ** 2).sum(axis=1)
        order = np.argsort(chords, kind="stable")
        start = int(order[rng.integers(math.ceil(0.1 * len(order)))])
        kept = np.concatenate([contour[:start], contour[start + n_rm:]], axis=0)
        n_keep = int(kept.shape[0] * sample_rate)
        if n_keep == 0:
            continue
        idx = np.sort(rng.choice(kept.shape[0], size=n_keep, replace=False))
        polygons.append(kept[idx])
    if not polygons:
        return m > 0
    canvas = np.zeros_like(m)
    cv2.drawContours(canvas, polygons, -1, 255, -1)
    return canvas > 0


def modify_boundary(mask: np.ndarray, rng: np.random.Generator, regional_sample_rate: float = 0.1,
                    sample_rate: float = 0.1, iou_target: float = 0.8) -> np.ndarray:
    """SegRefiner's coarse mask: ``boundary_polygons`` then ``perturb_seg`` (bool, same shape).

    Works on the bounding box plus a margin (10 % of the box, at least 16 px) instead of the whole image:
    the random rectangles of ``perturb_seg`` are therefore drawn relative to the object, and nothing far
    from it changes. The official vertex-moving step is omitted: its rate is 0 (a no-op).
    """
    gt = to_binary(mask, "mask")
    if not gt.any():
        return gt
    box = _box(gt, 0)
    margin = max(16, int(0.1 * max(box[1] - box[0], box[3] - box[2])))
    box = _box(gt, margin)
    crop = gt[box[0]:box[1], box[2]:box[3]]
    poly = boundary_polygons(crop, rng, regional_sample_rate, sample_rate)
    return _paste(gt.shape, box, perturb_seg(poly, rng, iou_target))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every hole filled (external contours drawn filled), as SegRefiner's "expand" input."""
    m = to_binary(mask, "mask").astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(m)
    cv2.drawContours(out, contours, -1, 1, -1)
    return out > 0


def _segrefiner(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return modify_boundary(gt, rng)


def _segrefiner_expand(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return modify_boundary(fill_holes(gt), rng)


# --- Errors real models make ------------------------------------------------------------------------


def _lowres(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A model output at 1/f resolution (f in 4..16): area-downsampled, bilinear-upsampled, thresholded.

    f is capped so the object keeps about 6 low-resolution pixels across; the threshold varies around 0.5
    so the error leans to either side, as an over- or under-confident model's does.
    """
    y0, y1, x0, x1 = _box(gt, 0)
    side = min(y1 - y0, x1 - x0)
    f = min(float(rng.uniform(4, 16)), max(2.0, side / 6))
    margin = int(2 * f) + 2
    y0, y1, x0, x1 = _box(gt, margin)
    crop = gt[y0:y1, x0:x1].astype(np.float32)
    h, w = crop.shape
    small = cv2.resize(crop, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return _paste(gt.shape, (y0, y1, x0, x1), up >= rng.uniform(0.35, 0.65))


def _polygon(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A hand-drawn-polygon-like mask: contours simplified with approxPolyDP, vertices jittered a little.

    epsilon is a log-uniform 0.2–0.8 % of each contour's perimeter, at most 4 % of the object's size; parts
    and holes under 0.5 % of the object's area are skipped, as an annotator would; holes stay holes.
    """
    m = gt.astype(np.uint8)
    size = _object_size(gt)
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    frac = math.exp(rng.uniform(math.log(0.002), math.log(0.008)))
    jitter = float(rng.uniform(0.0, 1.0))
    polygons = []
    for contour in contours:
        if cv2.contourArea(contour) < 0.005 * size * size:
            continue
        epsilon = float(np.clip(frac * cv2.arcLength(contour, True), 1.0, max(1.0, 0.04 * size)))
        approx = cv2.approxPolyDP(contour, epsilon, True)
        if len(approx) < 3:
            continue
        moved = approx.astype(np.float64) + rng.normal(0.0, jitter, approx.shape)
        polygons.append(np.round(moved).astype(np.int32))
    out = np.zeros_like(m)
    if polygons:
        cv2.drawContours(out, polygons, -1, 1, -1)
    return out > 0


def _shift(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole boundary off by a few pixels: a global dilation, erosion or translation by 1..k px.

    k grows with the object (4 % of its size, between 2 and 8 px).
    """
    k_max = int(np.clip(round(0.04 * _object_size(gt)), 2, 8))
    k = int(rng.integers(1, k_max + 1))
    box = _box(gt, k + 1)
    crop = gt[box[0]:box[1], box[2]:box[3]].astype(np.uint8)
    mode = int(rng.integers(3))
    if mode == 0:
        out = cv2.dilate(crop, _disk(k))
    elif mode == 1:
        out = cv2.erode(crop, _disk(k))
    else:
        angle = rng.uniform(0, 2 * math.pi)
        dx, dy = round(k * math.cos(angle)), round(k * math.sin(angle))
        if dx == 0 and dy == 0:
            dx = k
        matrix = np.float32([[1, 0, dx], [0, 1, dy]])
        out = cv2.warpAffine(crop, matrix, (crop.shape[1], crop.shape[0]), flags=cv2.INTER_NEAREST)
    return _paste(gt.shape, box, out > 0)


def _organic(shape: tuple[int, int], cy: int, cx: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular blob: a randomly oriented ellipse whose edge wobbles with smooth noise."""
    out = np.zeros(shape, bool)
    r = int(math.ceil(1.5 * radius)) + 1
    y0, y1, x0, x1 = max(0, cy - r), min(shape[0], cy + r + 1), max(0, cx - r), min(shape[1], cx + r + 1)
    if y0 >= y1 or x0 >= x1:
        return out
    a, b = radius, radius * rng.uniform(0.5, 1.0)
    theta = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - cx, yy - cy
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    noise = cv2.resize(rng.normal(0.0, 1.0, (4, 4)).astype(np.float32), (2 * r + 1, 2 * r + 1),
                       interpolation=cv2.INTER_CUBIC)
    noise = noise[y0 - (cy - r):y1 - (cy - r), x0 - (cx - r):x1 - (cx - r)]
    out[y0:y1, x0:x1] = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 0.25 * noise < 1.0
    return out


def _edge_pixels(mask: np.ndarray) -> np.ndarray:
    """(y, x) of the mask's boundary pixels; those along the image border only when there are no others."""
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    edge = np.argwhere(m - cv2.erode(m, kernel))
    if len(edge):
        return edge
    return np.argwhere(m - cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0))


def _missing_thin(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thin structures lost: an opening finds parts narrower than its kernel (10–24 % of the object).

    Either all of them go, or one (a random protrusion of at least 2 % of the area, weighted by area), as a
    model that misses a leg or a handle. An object with no such part loses a bite at its boundary instead.
    """
    size = _object_size(gt)
    radius = max(1, round(size * rng.uniform(0.05, 0.12)))
    box = _box(gt, radius + 1)
    crop = gt[box[0]:box[1], box[2]:box[3]]
    area = np.count_nonzero(crop)
    opened = cv2.morphologyEx(crop.astype(np.uint8), cv2.MORPH_OPEN, _disk(radius)) > 0
    thin = crop & ~opened
    n, labels, stats, _ = cv2.connectedComponentsWithStats(thin.astype(np.uint8), connectivity=8)
    areas = stats[1:n, cv2.CC_STAT_AREA].astype(np.float64)
    parts = np.flatnonzero(areas >= 0.02 * area)
    if len(parts) == 0:
        edge = _edge_pixels(crop)
        cy, cx = edge[rng.integers(len(edge))]
        return _paste(gt.shape, box, crop & ~_organic(crop.shape, int(cy), int(cx),
                                                      size * rng.uniform(0.12, 0.3), rng))
    if rng.random() < 0.4 and np.count_nonzero(thin) <= 0.3 * area:
        return _paste(gt.shape, box, opened)
    part = 1 + int(parts[rng.choice(len(parts), p=areas[parts] / areas[parts].sum())])
    return _paste(gt.shape, box, crop & (labels != part))


def _blobs(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spurious regions: 1–3 irregular blobs bleeding out of the object or near it, or holes punched in.

    Blobs are 6–20 % of the object's size, centred just outside a random boundary point; holes are
    4–12 % and go where the object is thick enough to hold them.
    """
    size = _object_size(gt)
    box = _box(gt, max(4, round(0.5 * size)))
    crop = gt[box[0]:box[1], box[2]:box[3]]
    out = crop.copy()
    edge = _edge_pixels(crop)
    centroid = edge.mean(axis=0)
    inside = cv2.distanceTransform(np.pad(crop.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.35:
            radius = size * rng.uniform(0.04, 0.12)
            room = np.argwhere(inside >= max(2.0, 0.8 * radius))
            if len(room):
                cy, cx = room[rng.integers(len(room))]
                out &= ~_organic(crop.shape, int(cy), int(cx), radius, rng)
                continue
        radius = size * rng.uniform(0.06, 0.2)
        py, px = edge[rng.integers(len(edge))]
        outward = math.atan2(py - centroid[0], px - centroid[1]) + rng.uniform(-1.0, 1.0)
        dist = radius * rng.uniform(0.2, 1.5)
        cy, cx = round(py + dist * math.sin(outward)), round(px + dist * math.cos(outward))
        out |= _organic(crop.shape, cy, cx, radius, rng)
    return _paste(gt.shape, box, out)


def _leak(gt: np.ndarray, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A leak into look-alike background: nearby background whose colour matches the object's there joins it.

    Within 6–25 % of the object's size outside it, each pixel is compared (CIELAB distance) with the object's
    local colour (the object's pixels averaged with a wide Gaussian); the most similar 15–50 % of that ring,
    where connected to the object, are added, then smoothed a little, as a model fooled by colour would.
    """
    size = _object_size(gt)
    reach = max(2, round(size * rng.uniform(0.06, 0.25)))
    box = _box(gt, reach + 2)
    crop = gt[box[0]:box[1], box[2]:box[3]]
    lab = cv2.cvtColor(np.ascontiguousarray(image[box[0]:box[1], box[2]:box[3]]), cv2.COLOR_RGB2LAB).astype(np.float32)
    weight = crop.astype(np.float32)
    sigma = max(1.0, reach / 2)
    norm = cv2.GaussianBlur(weight, (0, 0), sigma) + 1e-6
    local = np.stack([cv2.GaussianBlur(lab[..., c] * weight, (0, 0), sigma) for c in range(3)], axis=-1) / norm[..., None]
    ring = (cv2.dilate(crop.astype(np.uint8), _disk(reach)) > 0) & ~crop & (norm > 1e-3)
    if not ring.any():
        return _paste(gt.shape, box, crop)
    distance = np.linalg.norm(lab - local, axis=-1)
    cut = np.quantile(distance[ring], rng.uniform(0.15, 0.5))
    grown = (crop | (ring & (distance <= cut))).astype(np.uint8)
    n, labels = cv2.connectedComponents(grown, connectivity=8)
    touching = np.unique(labels[crop])
    out = np.isin(labels, touching[touching > 0])
    radius = max(1, round(0.02 * size))
    out = cv2.morphologyEx(out.astype(np.uint8), cv2.MORPH_CLOSE, _disk(radius)) > 0
    return _paste(gt.shape, box, out)


_KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "segrefiner": _segrefiner,
    "segrefiner_expand": _segrefiner_expand,
    "lowres": _lowres,
    "polygon": _polygon,
    "shift": _shift,
    "missing_thin": _missing_thin,
    "blobs": _blobs,
}


def _sensible(coarse: np.ndarray, gt: np.ndarray) -> bool:
    """Not empty, not over 3× the GT's area, and IoU with the GT in [0.3, 0.995] (a visible change)."""
    area = np.count_nonzero(coarse)
    if area == 0 or area > MAX_AREA_RATIO * np.count_nonzero(gt):
        return False
    return MIN_IOU <= _iou(coarse, gt) <= MAX_IOU


def synthesize(gt: np.ndarray, rng: np.random.Generator, kind: str | None = None,
               probs: Mapping[str, float] = DEFAULT_PROBS, image: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """A coarse mask for ``gt`` and the name of the degradation that made it.

    ``kind`` forces one degradation; otherwise one is drawn with ``probs`` (weights over ALL_KINDS,
    normalised; kinds that need the image are left out when ``image`` (uint8 RGB) is not given). A result that is empty, over 3× the GT's area, or with an IoU to the GT outside
    [0.3, 0.995] is redrawn (same kind, up to 4 tries); then a 1-px shift is used and reported as "shift".
    An empty GT comes back empty as "none". Returns a bool mask of the GT's shape.
    """
    if kind is None:
        unknown = set(probs) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"unknown coarse-mask kinds in probs: {', '.join(sorted(unknown))}")
        names = [n for n in probs if image is not None or n not in IMAGE_KINDS]
        weights = np.array([probs[n] for n in names], dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("probs must be non-negative with a positive sum")
        kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    elif kind not in ALL_KINDS:
        raise ValueError(f"unknown coarse-mask kind {kind!r}; expected one of {', '.join(ALL_KINDS)}")
    elif kind in IMAGE_KINDS and image is None:
        raise ValueError(f"coarse-mask kind {kind!r} needs the image")
    g = to_binary(gt, "ground truth")
    if not g.any():
        return g, NO_DEGRADATION
    if image is not None and image.shape[:2] != g.shape:
        raise ValueError(f"image is {image.shape[:2]}, the ground truth {g.shape}")
    for _ in range(ATTEMPTS):
        coarse = _leak(g, rng, image) if kind in IMAGE_KINDS else _KINDS[kind](g, rng)
        if _sensible(coarse, g):
            return coarse, kind
    return _fallback(g), FALLBACK_KIND


def _fallback(gt: np.ndarray) -> np.ndarray:
    """A 1-px boundary shift: dilation, or erosion when dilation cannot change the mask (full image)."""
    m = gt.astype(np.uint8)
    grown = cv2.dilate(m, _disk(1)) > 0
    if not np.array_equal(grown, gt):
        return grown
    return cv2.erode(m, _disk(1), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def near_perfect(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tiny boundary error: a 1-px dilation or erosion, or a 2x low-resolution round trip."""
    m = gt.astype(np.uint8)
    choice = int(rng.integers(3))
    if choice == 0:
        return cv2.dilate(m, np.ones((3, 3), np.uint8)) > 0
    if choice == 1:
        return cv2.erode(m, np.ones((3, 3), np.uint8)) > 0
    h, w = gt.shape
    small = cv2.resize(m.astype(np.float32), (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
