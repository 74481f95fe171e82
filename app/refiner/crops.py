"""Training crops: the same geometry the pipelines use at inference, so one network serves both modes.

An *instance crop* is the coarse mask's box plus random context, resized to 256 ignoring aspect (LR
pipeline). A *patch crop* is a native-resolution window on the object's boundary (HR local step).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.refiner.data import Example
from app.refiner.degrade import synthesize


@dataclass
class Crop:
    """One training sample at the network's size: uint8 image (s,s,3), float32 masks (s,s) in {0,1}."""

    image: np.ndarray
    gt: np.ndarray
    coarse: np.ndarray
    ignore: np.ndarray
    kind: str


def _resize_image(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h > size and w > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Bilinear then >= 0.5, as the pipeline resizes masks."""
    return (cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def instance_crop(example: Example, coarse: np.ndarray, rng: np.random.Generator, size: int = 256, max_pad: int = 48) -> tuple[int, int, int, int]:
    """Box of the coarse mask (sometimes united with the GT's) plus random context on each side."""
    h, w = coarse.shape
    x0, y0, x1, y1 = _box_of(coarse)
    if rng.random() < 0.5:
        gx0, gy0, gx1, gy1 = _box_of(example.mask)
        x0, y0, x1, y1 = min(x0, gx0), min(y0, gy0), max(x1, gx1), max(y1, gy1)
    pads = rng.integers(4, max_pad + 1, size=4)
    return max(0, x0 - pads[0]), max(0, y0 - pads[1]), min(w, x1 + pads[2]), min(h, y1 + pads[3])


def patch_crop(example: Example, rng: np.random.Generator, size: int = 256) -> tuple[int, int, int, int]:
    """A native-resolution square window centred near a random GT boundary pixel."""
    h, w = example.mask.shape
    side = min(size, h, w)
    m = example.mask.astype(np.uint8)
    edge = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(edge)
    k = int(rng.integers(len(ys)))
    jitter = rng.integers(-side // 4, side // 4 + 1, size=2)
    x0 = int(np.clip(xs[k] + jitter[0] - side // 2, 0, w - side))
    y0 = int(np.clip(ys[k] + jitter[1] - side // 2, 0, h - side))
    return x0, y0, x0 + side, y0 + side


def make_crop(example: Example, rng: np.random.Generator, size: int = 256, patch_prob: float = 0.25, kind: str | None = None) -> Crop:
    """Synthesize a coarse mask for ``example`` and cut one training crop (instance or patch)."""
    if not example.mask.any():
        raise ValueError(f"{example.key}: empty ground-truth mask")
    coarse, made = synthesize(example.mask, rng, kind=kind)
    use_patch = rng.random() < patch_prob and min(example.mask.shape) >= size // 2
    box = patch_crop(example, rng, size) if use_patch else instance_crop(example, coarse, rng, size)
    x0, y0, x1, y1 = box
    ignore = example.ignore if example.ignore is not None else np.zeros_like(example.mask)
    image = _resize_image(example.image[y0:y1, x0:x1], size)
    gt, cm, ig = (_resize_mask(a[y0:y1, x0:x1], size) for a in (example.mask, coarse, ignore))
    if rng.random() < 0.5:
        image, gt, cm, ig = (np.ascontiguousarray(a[:, ::-1]) for a in (image, gt, cm, ig))
    return Crop(image, gt, cm, ig, made)


def boundary_window(crop: Crop, side: int, rng: np.random.Generator) -> Crop:
    """A ``side`` x ``side`` window of a crop, centred near where the coarse mask and the GT disagree.

    Training on windows of the 256 crop keeps the scale the network sees at inference while costing a
    quarter of the compute at side 128; most of what a refiner learns happens on the boundary.
    """
    size = crop.gt.shape[0]
    if side >= size:
        return crop
    wrong = np.nonzero((crop.gt != crop.coarse) & (crop.ignore == 0))
    if wrong[0].size:
        k = int(rng.integers(wrong[0].size))
        cy, cx = int(wrong[0][k]), int(wrong[1][k])
    else:
        cy, cx = (int(v) for v in rng.integers(0, size, 2))
    jitter = rng.integers(-side // 4, side // 4 + 1, size=2)
    y0 = int(np.clip(cy + jitter[0] - side // 2, 0, size - side))
    x0 = int(np.clip(cx + jitter[1] - side // 2, 0, size - side))
    window = (slice(y0, y0 + side), slice(x0, x0 + side))
    return Crop(crop.image[window], crop.gt[window], crop.coarse[window], crop.ignore[window], crop.kind)
