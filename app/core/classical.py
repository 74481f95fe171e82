"""Classical mask refiners a user could reach for instead of ours: the baselines our refiner must beat.

Each is a function (image_rgb uint8 H×W×3, coarse H×W bool or uint8) -> H×W bool. Sizes (kernels, bands,
radii) are relative to the object, so one setting serves small and large objects. Work happens on the
crop around the mask plus a margin; pixels outside the crop keep the coarse value. Numpy + OpenCV only.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from app.core.metrics import to_binary

log = logging.getLogger(__name__)

Refiner = Callable[[np.ndarray, np.ndarray], np.ndarray]
GMM_COMPONENTS = 5


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


@dataclass
class GrabCutFit:
    """GrabCut's result on a crop and its two colour models (OpenCV's 5-component GMMs, 1×65 float64 each)."""

    mask: np.ndarray
    foreground_model: np.ndarray
    background_model: np.ndarray

    def foreground_posterior(self, pixels: np.ndarray) -> np.ndarray:
        """P(foreground | colour) for uint8 or float pixels (..., 3) in the channel order GrabCut saw.

        The two GMMs' likelihoods with equal priors: the colour model of the whole object that GrabCut
        fitted, evaluated anywhere (float32, same leading shape as ``pixels``). 0.5 everywhere when GrabCut
        left either model empty (nothing to compare).
        """
        if not (self.foreground_model[0, :GMM_COMPONENTS] > 0).any() or not (self.background_model[0, :GMM_COMPONENTS] > 0).any():
            return np.full(pixels.shape[:-1], 0.5, np.float32)
        flat = pixels.reshape(-1, 3).astype(np.float64)
        fg = _gmm_log_likelihood(self.foreground_model, flat)
        bg = _gmm_log_likelihood(self.background_model, flat)
        return (1.0 / (1.0 + np.exp(np.clip(bg - fg, -60.0, 60.0)))).astype(np.float32).reshape(pixels.shape[:-1])

    def posterior_table(self, levels: int = 32) -> ColourTable:
        """:meth:`foreground_posterior` tabulated on a ``levels``³ colour grid: a lookup per pixel afterwards."""
        step = 256 // levels
        centres = np.arange(levels, dtype=np.float64) * step + (step - 1) / 2
        grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1)
        return ColourTable(self.foreground_posterior(grid), step)


@dataclass
class ColourTable:
    """A colour -> probability table on a regular grid of uint8 colours (``step`` values per cell)."""

    table: np.ndarray
    step: int

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """The table's value for each uint8 pixel (..., 3) (float32, leading shape kept)."""
        q = pixels // self.step
        return self.table[q[..., 0], q[..., 1], q[..., 2]]


def _gmm_log_likelihood(model: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(x; mu_k, Sigma_k) for OpenCV's GrabCut GMM layout (weights, means, covariances)."""
    k = GMM_COMPONENTS
    weights = model[0, :k]
    means = model[0, k:4 * k].reshape(k, 3)
    covs = model[0, 4 * k:13 * k].reshape(k, 3, 3)
    logs = np.full((x.shape[0], k), -np.inf)
    for c in range(k):
        if weights[c] <= 0:
            continue
        cov = covs[c] + np.eye(3) * 1e-3
        d = x - means[c]
        maha = ((d @ np.linalg.inv(cov)) * d).sum(axis=1)
        logs[:, c] = math.log(weights[c]) - 0.5 * (maha + math.log(np.linalg.det(cov)) + 3 * math.log(2 * math.pi))
    top = logs.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(logs - top).sum(axis=1, keepdims=True)))[:, 0]


def grabcut_fit(image: np.ndarray, mask: np.ndarray, size: float, iterations: int = 3, band: float = 0.08,
                core_depth: float = 0.05, seed: int = 0) -> GrabCutFit | None:
    """GrabCut on ``image`` (a crop, uint8 H×W×3) initialised from ``mask`` (bool) of an object of ``size`` px.

    Within ``core_depth`` × size of the mask's edge the inside is probable foreground, deeper is definite
    foreground; a band of ``band`` × size outside is probable background, beyond it definite background. So
    GrabCut only moves the boundary, which it does well; left free to relabel the whole interior it drifts
    onto background of similar colour. OpenCV's RNG is seeded with ``seed`` so a call repeats. None when
    GrabCut cannot run (an empty mask, no background to model, an OpenCV error).
    """
    crop = mask.astype(np.uint8)
    if not crop.any():
        return None
    near = cv2.dilate(crop, _disk(max(2, round(band * size))), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    deep = cv2.erode(crop, _disk(max(1, round(core_depth * size))))
    gc = np.full(crop.shape, cv2.GC_BGD, np.uint8)
    gc[near > 0] = cv2.GC_PR_BGD
    gc[crop > 0] = cv2.GC_PR_FGD
    gc[deep > 0] = cv2.GC_FGD
    fgd, bgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    try:
        cv2.grabCut(np.ascontiguousarray(image), gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        log.warning("GrabCut failed, keeping the coarse mask: %s", exc)
        return None
    return GrabCutFit((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), fgd, bgd)


def grabcut_refine(image: np.ndarray, coarse: np.ndarray, iterations: int = 3, band: float = 0.08,
                   core_depth: float = 0.05, max_side: int = 400, seed: int = 0) -> np.ndarray:
    """OpenCV GrabCut initialised from the coarse mask (see :func:`grabcut_fit`).

    It runs on the crop around the band, downscaled when larger than ``max_side`` (the result is
    upsampled). Any failure (no background to model, an OpenCV error, an empty result) returns the coarse
    mask.
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
    fit = grabcut_fit(img, crop > 0, size * scale, iterations, band, core_depth, seed)
    if fit is None:
        return mask
    fg = fit.mask.astype(np.float32)
    if scale < 1.0:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    result = fg >= 0.5
    if not result.any():
        return mask
    out = mask.copy()
    out[ys, xs] = result
    return out


def snap_to_edges(image: np.ndarray, refined: np.ndarray, coarse: np.ndarray, reach: float = 0.015, near: int = 4,
                  min_move: float = 0.2, seed: int = 0) -> np.ndarray:
    """Where a refiner moved the coarse boundary, put it on the image's colour edge to the pixel.

    GrabCut initialised from ``refined`` may move its boundary only ``reach`` x the object's size (at least a
    pixel or two), and its answer is taken only within ``near`` px of the pixels where ``refined`` differs from
    ``coarse``: a boundary the refiner kept stays where it was, so a good mask stays good. When the refiner
    changed fewer than ``min_move`` pixels per pixel of the coarse boundary (it judged the boundary right and
    touched it here and there), nothing is snapped. The image is used at its own size (no downscaling). The
    defaults were chosen for band-v2 on held-out pixel-accurate cases (docs/decisions/0023).
    """
    refined = _check(image, refined)
    coarse = _check(image, coarse)
    moved = refined != coarse
    if not moved.any() or not refined.any() or refined.all():
        return refined
    contours, _ = cv2.findContours(coarse.view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    if np.count_nonzero(moved) < min_move * sum(len(c) for c in contours):
        return refined
    snapped = grabcut_refine(image, refined, band=reach, core_depth=reach, max_side=max(image.shape[:2]), seed=seed)
    around = cv2.dilate(moved.view(np.uint8), _disk(near)) > 0
    return np.where(around, snapped, refined)


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


def matting_refine(image: np.ndarray, coarse: np.ndarray, band: float = 0.08, core_depth: float = 0.05,
                   max_side: int = 400) -> np.ndarray:
    """Closed-form matting (Levin et al., via the optional ``pymatting`` package) from a coarse-mask trimap.

    The trimap is GrabCut's initialisation: definite foreground deeper than ``core_depth`` x object size inside
    the mask, definite background beyond ``band`` x size outside, unknown between; alpha >= 0.5 is the mask. Runs
    on the crop, downscaled to ``max_side``. Raises ImportError when pymatting is not installed.
    """
    from pymatting import estimate_alpha_cf

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
        crop = (cv2.resize(crop.astype(np.float32), small, interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8)
    near = cv2.dilate(crop, _disk(max(2, round(band * size * scale))), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    deep = cv2.erode(crop, _disk(max(1, round(core_depth * size * scale))))
    trimap = np.where(deep > 0, 1.0, np.where(near > 0, 0.5, 0.0))
    if not (trimap == 1.0).any() or not (trimap == 0.0).any():
        return mask
    alpha = estimate_alpha_cf(img.astype(np.float64) / 255.0, trimap)
    if scale < 1.0:
        alpha = cv2.resize(alpha.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    out = mask.copy()
    out[ys, xs] = alpha >= 0.5
    return out


def available_refiners() -> dict[str, Refiner]:
    """The classical refiners, plus closed-form matting when the optional ``pymatting`` is installed."""
    refiners = dict(CLASSICAL_REFINERS)
    try:
        import pymatting  # noqa: F401
    except ImportError:
        log.info("pymatting is not installed: closed-form matting is left out of the comparison")
    else:
        refiners["matting"] = matting_refine
    return refiners


CLASSICAL_REFINERS: dict[str, Refiner] = {
    "morphology": morph_smooth,
    "grabcut": grabcut_refine,
    "guided_filter": guided_filter_refine,
}
