"""Mask quality metrics defined exactly as the papers compute them, so our figures compare with theirs.

- IoU: |P ∩ G| / |P ∪ G|; over a dataset the papers report Σ intersections / Σ unions (CascadePSP
  eval_post.py, SegRefiner scripts/eval_miou.py), not the mean of per-image IoUs.
- Boundary IoU (Cheng et al., CVPR 2021, bowenc0221/boundary-iou-api ``mask_to_boundary``): the boundary
  band of a mask is the mask minus its erosion by d = max(1, round(dilation_ratio · image diagonal))
  iterations of a 3×3 square kernel, computed on the mask padded by one background pixel so that a mask
  cut by the image border has a boundary there too. Boundary IoU is the IoU of the GT band and the
  prediction band.
- mBA, mean Boundary Accuracy (CascadePSP util/compute_boundary_acc.py, copied by SegRefiner): five radii
  r_i = max(1, 1 + int((r_max − 1) / 5 · i)), r_max = (h + w) / 300; for each, the band is the
  morphological gradient (dilation − erosion) of the GT with a (2r+1)² elliptical kernel, and the score is
  the fraction of band pixels where prediction equals GT; mBA is the mean over the five radii.

Inputs are binarised the way the reference scripts do it: uint8 at ≥ 128 (a uint8 mask holding only 0 and 1
is taken as a 0/1 mask), bool as is. An optional ``ignore`` mask (e.g. the Oxford Pets trimap's unknown
band) removes pixels from every count.

Edge cases the references leave undefined (they divide by zero) are defined here:
- IoU and boundary IoU with an empty union (both masks empty where not ignored) are 1.0.
- mBA when the GT has no boundary band at some radius (GT empty or full): the band of the prediction is
  used instead, so spurious foreground on an empty GT is penalised; if neither has a band, the radius
  scores 1.0 when prediction equals GT everywhere (outside ``ignore``) and 0.0 otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

MBA_STEPS = 5


def to_binary(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """Return a 2-D bool copy of ``mask``: bool as is, uint8 at ≥ 128 (or > 0 for a 0/1 mask)."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        shape = getattr(mask, "shape", None)
        raise ValueError(f"{name} must be a 2-D array, got shape {shape}")
    if mask.dtype == bool:
        return mask.copy()
    if mask.dtype == np.uint8:
        if mask.size and mask.max() <= 1:
            return mask > 0
        return mask >= 128
    raise ValueError(f"{name} must be bool or uint8, got dtype {mask.dtype}")


def _check_pair(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p = to_binary(pred, "prediction")
    g = to_binary(gt, "ground truth")
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth shape {g.shape}")
    ig = None
    if ignore is not None:
        ig = to_binary(ignore, "ignore mask")
        if ig.shape != g.shape:
            raise ValueError(f"ignore mask shape {ig.shape} differs from ground truth shape {g.shape}")
    return p, g, ig


def _inter_union(p: np.ndarray, g: np.ndarray, ignore: np.ndarray | None) -> tuple[int, int]:
    inter = p & g
    union = p | g
    if ignore is not None:
        inter &= ~ignore
        union &= ~ignore
    return int(np.count_nonzero(inter)), int(np.count_nonzero(union))


def intersection_union(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """Pixel counts of intersection and union outside ``ignore``, for dataset-level IoU."""
    return _inter_union(*_check_pair(pred, gt, ignore))


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union outside ``ignore``; 1.0 when both masks are empty."""
    inter, union = intersection_union(pred, gt, ignore)
    return 1.0 if union == 0 else inter / union


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Boundary band of a binary mask as in boundary-iou-api: mask minus its erosion by d iterations."""
    m = to_binary(mask).astype(np.uint8)
    h, w = m.shape
    dilation = max(1, int(round(dilation_ratio * np.sqrt(h ** 2 + w ** 2))))
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=dilation)[1:h + 1, 1:w + 1]
    return (m - eroded).astype(bool)


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02,
                 ignore: np.ndarray | None = None) -> float:
    """IoU of the GT and prediction boundary bands (Cheng et al. 2021); 1.0 when both bands are empty."""
    p, g, ig = _check_pair(pred, gt, ignore)
    inter, union = _inter_union(mask_to_boundary(p, dilation_ratio), mask_to_boundary(g, dilation_ratio), ig)
    return 1.0 if union == 0 else inter / union


def mba_radii(height: int, width: int) -> list[int]:
    """The five band radii CascadePSP's compute_boundary_acc uses for an image of this size."""
    max_radius = (width + height) / 300
    return [max(1, 1 + int((max_radius - 1) / MBA_STEPS * i)) for i in range(MBA_STEPS)]


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def boundary_accuracy(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """mBA of one image: mean over five radii of the accuracy inside the GT's morphological-gradient band."""
    p, g, ig = _check_pair(pred, gt, ignore)
    g8, p8 = g.astype(np.uint8), p.astype(np.uint8)
    correct = p == g
    keep = ~ig if ig is not None else np.ones_like(g)
    accs = []
    for radius in mba_radii(*g.shape):
        kernel = _disk(radius)
        band = (cv2.morphologyEx(g8, cv2.MORPH_GRADIENT, kernel) > 0) & keep
        if not band.any():
            band = (cv2.morphologyEx(p8, cv2.MORPH_GRADIENT, kernel) > 0) & keep
        if band.any():
            accs.append(np.count_nonzero(correct & band) / np.count_nonzero(band))
        else:
            accs.append(1.0 if bool(np.all(correct | ~keep)) else 0.0)
    return float(sum(accs) / MBA_STEPS)


@dataclass(frozen=True)
class ImageScores:
    """Per-image figures: IoU, boundary IoU, mBA, and the counts behind dataset-level IoU."""

    iou: float
    boundary_iou: float
    mba: float
    intersection: int
    union: int


def score(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None,
          dilation_ratio: float = 0.02) -> ImageScores:
    """All three metrics of one prediction against its GT."""
    p, g, ig = _check_pair(pred, gt, ignore)
    inter, union = _inter_union(p, g, ig)
    return ImageScores(
        iou=1.0 if union == 0 else inter / union,
        boundary_iou=boundary_iou(p, g, dilation_ratio, ig),
        mba=boundary_accuracy(p, g, ig),
        intersection=inter,
        union=union,
    )


@dataclass(frozen=True)
class Summary:
    """Dataset-level figures as the papers report them."""

    count: int
    iou: float
    mean_iou: float
    mean_boundary_iou: float
    mba: float


@dataclass
class MetricAccumulator:
    """Collects per-image scores; IoU is Σ intersection / Σ union, boundary IoU and mBA are image means."""

    dilation_ratio: float = 0.02
    scores: list[ImageScores] = field(default_factory=list)

    def add(self, pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> ImageScores:
        """Score one image and keep it; returns its scores."""
        s = score(pred, gt, ignore, self.dilation_ratio)
        self.scores.append(s)
        return s

    def summary(self) -> Summary:
        """Aggregate figures; every value is NaN when nothing was added."""
        n = len(self.scores)
        if n == 0:
            nan = float("nan")
            return Summary(0, nan, nan, nan, nan)
        inter = sum(s.intersection for s in self.scores)
        union = sum(s.union for s in self.scores)
        return Summary(
            count=n,
            iou=1.0 if union == 0 else inter / union,
            mean_iou=sum(s.iou for s in self.scores) / n,
            mean_boundary_iou=sum(s.boundary_iou for s in self.scores) / n,
            mba=sum(s.mba for s in self.scores) / n,
        )
