"""Classical mask refiners a user could reach for instead of ours: the baselines our refiner must beat.

Each is a function (image_rgb uint8 H×W×3, coarse H×W bool or uint8) -> H×W bool. Sizes (kernels, bands,
radii) are relative to the object, so one setting serves small and large objects. Work happens on the
crop around the mask plus a margin; pixels outside the crop keep the coarse value. Numpy + OpenCV only.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable

import cv2
import numpy as np

from app.core.metrics import to_binary

log = logging.getLogger(__name__)

Refiner = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check(image: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be an H×W×3 uint8 array, got {desc}")
    mask = to_binary(coarse, "coarse mask")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"coarse mask shape {mask.shape} differs from image size {image.shape[:2]}")
    return mask


def _object_size(mask: np.ndarray) -> float:
    return math.sqrt(float(np.count_nonzero(mask)))


def _crop_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin)),
            slice(max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin)))


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def morph_smooth(image: np.ndarray, coarse: np.ndarray, scale: float = 0.03) -> np.ndarray:
    """Opening then closing with a disk of radius ``scale`` × object size: drops specks, fills pinholes.

    The image is not used; it is taken for a uniform signature. Object size = √area.
    """
    mask = _check(image, coarse)
    if not mask.any():
        return mask
    radius = max(1, round(scale * _object_size(mask)))
    ys, xs = _crop_box(mask, 2 * radius + 2)
    kernel = _disk(radius)
    crop = mask[ys, xs].astype(np.uint8)
    crop = cv2.morphologyEx(crop, cv2.MORPH_OPEN, kernel)
    crop = cv2.morphologyEx(crop, cv2.MORPH_CLOSE, kernel)
    out = mask.copy()
    out[ys, xs] = crop > 0
    return out


def grabcut_refine(image: np.ndarray, coarse: np.ndarray, iterations: int = 3, band: float = 0.08,
                   core_depth: float = 0.05, max_side: int = 400, seed: int = 0) -> np.ndarray:
    """OpenCV GrabCut initialised from the coarse mask.

    Within ``core_depth`` × object size of the mask's edge the inside is probable foreground, deeper is
    definite foreground; a band of ``band`` × object size outside is probable background, beyond it
    definite background. So GrabCut only moves the boundary, which it does well; left free to relabel the
    whole interior it drifts onto background of similar colour and does worse than the coarse input.
    It runs on the crop around the band, downscaled when larger than ``max_side`` (the result is
    upsampled). OpenCV's RNG is seeded with ``seed`` so a call repeats. Any failure (no background to
    model, an OpenCV error, an empty result) returns the coarse mask.
    """
    mask = _check(image, coarse)
    if not mask.any() or mask.all():
        return mask
    size = _object_size(mask)
    ys, xs = _crop_box(mask, max(3, round(band * size)) + 2)
    crop = mask[ys, xs].astype(np.uint8)
    img = np.ascontiguousarray(image[ys, xs])
    h, w = crop.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        small = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, small, interpolation=cv2.INTER_AREA)
        shrunk = cv2.resize(crop.astype(np.float32), small, interpolation=cv2.INTER_AREA)
        crop = (shrunk >= 0.5).astype(np.uint8)
    near = cv2.dilate(crop, _disk(max(2, round(band * size * scale))),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    deep = cv2.erode(crop, _disk(max(1, round(core_depth * size * scale))))
    gc = np.full(crop.shape, cv2.GC_BGD, np.uint8)
    gc[near > 0] = cv2.GC_PR_BGD
    gc[crop > 0] = cv2.GC_PR_FGD
    gc[deep > 0] = cv2.GC_FGD
    if not crop.any():
        return mask
    cv2.setRNGSeed(seed)
    try:
        cv2.grabCut(img, gc, None, np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64),
                    iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        log.warning("GrabCut failed, keeping the coarse mask: %s", exc)
        return mask
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.float32)
    if scale < 1.0:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    result = fg >= 0.5
    if not result.any():
        return mask
    out = mask.copy()
    out[ys, xs] = result
    return out


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s O(N) guided filter (ECCV 2010) with a colour guide, from box filters.

    ``guide`` is H×W×3 float in [0, 1], ``src`` H×W float; returns the filtered H×W float32. Per window, the
    output is a linear function of the guide's colour fitted by ridge regression (``eps``). The 3×3
    per-pixel systems are symmetric and solved by cofactors, as in the authors' code: about 5× faster
    than a batched numpy.linalg.solve. Computed in float64: with a grey guide (equal channels) the systems
    are near-singular and float32 loses the answer.
    """
    ksize = (2 * radius + 1, 2 * radius + 1)
    guide = guide.astype(np.float64)
    src = src.astype(np.float64)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    mean_p = box(src)
    cov = box(guide * src[..., None]) - mean_i * mean_p[..., None]

    def var(i: int, j: int) -> np.ndarray:
        return box(guide[..., i] * guide[..., j]) - mean_i[..., i] * mean_i[..., j] + (eps if i == j else 0.0)

    s00, s01, s02, s11, s12, s22 = var(0, 0), var(0, 1), var(0, 2), var(1, 1), var(1, 2), var(2, 2)
    c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
    c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    y0, y1, y2 = cov[..., 0], cov[..., 1], cov[..., 2]
    a = np.stack([c00 * y0 + c01 * y1 + c02 * y2,
                  c01 * y0 + c11 * y1 + c12 * y2,
                  c02 * y0 + c12 * y1 + c22 * y2], axis=-1) / det[..., None]
    b = mean_p - (a * mean_i).sum(axis=-1)
    return ((box(a) * guide).sum(axis=-1) + box(b)).astype(np.float32)


def guided_filter_refine(image: np.ndarray, coarse: np.ndarray, radius: float = 0.02, eps: float = 1e-4,
                         threshold: float = 0.5) -> np.ndarray:
    """The coarse mask filtered by the image (guided filter) and thresholded: edges snap to colour edges.

    The window radius is ``radius`` × object size (at least 2 px); ``eps`` is the regulariser on colours
    scaled to [0, 1] (smaller follows image edges more closely).
    """
    mask = _check(image, coarse)
    if not mask.any() or mask.all():
        return mask
    r = max(2, round(radius * _object_size(mask)))
    ys, xs = _crop_box(mask, 3 * r)
    guide = image[ys, xs].astype(np.float32) / 255.0
    soft = guided_filter(guide, mask[ys, xs].astype(np.float32), r, eps)
    out = mask.copy()
    out[ys, xs] = soft >= threshold
    return out


CLASSICAL_REFINERS: dict[str, Refiner] = {
    "morphology": morph_smooth,
    "grabcut": grabcut_refine,
    "guided_filter": guided_filter_refine,
}
