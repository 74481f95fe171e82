"""Find similar: one-shot segmentation (SG-One, Zhang et al. 2018) on the frozen EfficientNet-Lite0 features.

Masked average pooling of an image's features over one or several example instances gives a prototype vector;
moved towards the searched image's own surest cells (self-support), its cosine similarity with every feature
vector of that image gives a similarity map; the map above a
threshold splits into connected regions (split again where a region holds several similarity peaks), which
become proposed instances (minus what existing instances already cover) with a score (the mean similarity inside),
optionally outlined by a box prompt on each region's bounding box, then refined by the refiner.

An image's features are computed once and cached on disk in a folder the caller chooses (the project folder),
keyed by a hash of the image's content, so the threshold can move live and a whole project can be searched in
well under a second per image. :meth:`FeatureCache.precompute` fills the cache with progress and cancel
callables (no Qt here).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import cv2
import numpy as np

from app.refiner.prompts import MIN_BOX_SIDE, CoarseSource, Prompt
from app.refiner.steps import RefineStep

if TYPE_CHECKING:
    from app.refiner.api import Refiner
    from app.refiner.options import RefineOptions

log = logging.getLogger(__name__)

# Features: stride 16 of the encoder, on the image resized so its long side is FEATURE_SIDE, centred on the
# image's mean feature (what is common to the whole image says nothing about an object: without centring every
# cosine is high), compared on the stride-8 grid (bilinear) so neighbouring objects separate.
FEATURE_SIDE = 512
FEATURES_VERSION = "lite0-s16c-512-v1"
# Chosen on the training split of Penn-Fudan and coco_tiny (benchmarks/bench_similar.py --split train).
DEFAULT_THRESHOLD = 0.2
# A proposal smaller than this fraction of the examples' mean area (relative to their images) is dropped; one
# larger than MAX_RELATIVE_AREA times it is split where the similarity has several peaks.
MIN_RELATIVE_AREA = 0.25
MAX_RELATIVE_AREA = 2.5
# Self-support: the image's top 3 % cells give half the prototype. On the training split of Penn-Fudan (40 images,
# threshold 0.2) recall rose from 72.7 % to 77.3 % at the same precision (76 %); quantiles 0.95..0.99 and weights
# 0.3..0.5 gave the same within a pedestrian or two, a second round nothing more, a background prototype less.
SELF_SUPPORT_QUANTILE = 0.97
SELF_SUPPORT_WEIGHT = 0.5

Progress = Callable[[int, int], None]
CancelFlag = Callable[[], bool]


class SimilarError(ValueError):
    """An example or an image that find-similar cannot use; the message says why."""


class PrecomputeCancelled(Exception):
    """The caller's cancel flag was set; what was computed so far stays cached."""


def content_key(image: np.ndarray) -> str:
    """A hash of an image's pixels and shape: the cache key when only the pixels are at hand."""
    digest = hashlib.sha1(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def file_key(path: str | os.PathLike[str]) -> str:
    """A hash of an image file's bytes: the cache key for a project's images (no decoding needed to look up)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compute_features(image: np.ndarray) -> np.ndarray:
    """Centred stride-16 features (C, h, w) float32 of an RGB uint8 image (112 channels): what the cache stores."""
    import torch

    from app.refiner.encoder import pretrained_encoder

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SimilarError(f"image must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    scale = FEATURE_SIDE / max(h, w)
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    with torch.inference_mode():
        features = pretrained_encoder()(torch.from_numpy(small).permute(2, 0, 1)[None].float())[16][0].numpy()
    return features - features.mean(axis=(1, 2), keepdims=True)


def comparable(features: np.ndarray) -> np.ndarray:
    """Stored features on the stride-8 grid (bilinear), each vector L2-normalised: what cosines are taken of."""
    c, h, w = features.shape
    up = cv2.resize(np.ascontiguousarray(features.transpose(1, 2, 0)), (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    up = up.reshape(2 * h, 2 * w, c).transpose(2, 0, 1)
    return up / np.maximum(np.linalg.norm(up, axis=0, keepdims=True), 1e-6)


class FeatureCache:
    """Per-image features on disk in ``folder`` (``<key>-<version>.npy``, fp16), written atomically."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        """The file of ``key`` in the folder: a hex digest as it is (``file_key``, ``content_key``), any other key
        (a file path, say) hashed first, so no key can name a file outside the folder."""
        name = key if re.fullmatch(r"[0-9a-f]{1,128}", key) else hashlib.sha1(key.encode()).hexdigest()
        return self.folder / f"{name}-{FEATURES_VERSION}.npy"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, image: np.ndarray, key: str | None = None) -> np.ndarray:
        """The :func:`comparable` features of ``image`` (cached, or computed and stored), float32 (C, h, w)."""
        key = key or content_key(image)
        path = self.path(key)
        if path.is_file():
            try:
                return comparable(np.load(path).astype(np.float32))
            except (OSError, ValueError) as exc:
                log.warning("%s: unreadable cached features, recomputing (%s)", path, exc)
        features = compute_features(image)
        self._store(path, features)
        return comparable(features)

    def _store(self, path: Path, features: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                np.save(out, features.astype(np.float16))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def precompute(self, images: Sequence[tuple[str, Callable[[], np.ndarray]]], progress: Progress | None = None,
                   cancel: CancelFlag | None = None) -> int:
        """Compute the features of every (key, load image) not cached yet; returns how many were computed.

        ``progress(done, total)`` is called after each image; when ``cancel()`` turns true the loop stops
        between images and raises :class:`PrecomputeCancelled` (what was done stays cached).
        """
        computed = 0
        for done, (key, load) in enumerate(images, start=1):
            if cancel is not None and cancel():
                raise PrecomputeCancelled(f"cancelled after {done - 1} of {len(images)} images")
            if not self.has(key):
                self._store(self.path(key), compute_features(load()))
                computed += 1
            if progress is not None:
                progress(done, len(images))
        return computed


@dataclass(frozen=True)
class Prototype:
    """What find-similar looks for: the examples' mean feature direction and their mean share of their images."""

    vector: np.ndarray
    area_fraction: float


def prototype(examples: Sequence[tuple[np.ndarray, np.ndarray]]) -> Prototype:
    """Masked average pooling over example instances: (comparable features (C, h, w), full-size bool mask) pairs.

    Each instance's pooled vector is normalised and the vectors are averaged, so several examples of a category
    weigh equally whatever their sizes. Raises :class:`SimilarError` when every example is empty.
    """
    vectors, fractions = [], []
    for features, mask in examples:
        grid = features.shape[1:]
        weights = cv2.resize(mask.astype(np.float32), grid[::-1], interpolation=cv2.INTER_AREA)
        if weights.sum() < 0.5:  # an instance smaller than a feature cell: take the cells it touches
            weights = cv2.resize(mask.astype(np.float32), grid[::-1], interpolation=cv2.INTER_LINEAR)
        if weights.sum() <= 0:
            continue
        pooled = (features * weights).sum(axis=(1, 2)) / weights.sum()
        vectors.append(pooled / max(float(np.linalg.norm(pooled)), 1e-6))
        fractions.append(float(np.count_nonzero(mask)) / mask.size)
    if not vectors:
        raise SimilarError("the example instances are empty: select an instance with a mask to find similar ones")
    mean = np.mean(vectors, axis=0)
    return Prototype((mean / max(float(np.linalg.norm(mean)), 1e-6)).astype(np.float32), float(np.mean(fractions)))


def similarity_map(features: np.ndarray, proto: Prototype, self_support: bool = True) -> np.ndarray:
    """Cosine similarity (h, w) float32 of every (normalised) feature vector with the prototype, adapted to the
    image first (:func:`self_supported`) unless ``self_support`` is False."""
    vector = self_supported(features, proto.vector) if self_support else proto.vector
    return np.tensordot(vector, features, axes=(0, 0)).astype(np.float32)


def self_supported(features: np.ndarray, vector: np.ndarray, quantile: float = SELF_SUPPORT_QUANTILE,
                   weight: float = SELF_SUPPORT_WEIGHT) -> np.ndarray:
    """The prototype moved towards the image's own appearance of the object (self-support, Fan et al. 2022):
    the mean direction of the image's cells most like the prototype (above its ``quantile`` of similarity),
    averaged with the prototype (``weight`` of it). The examples and the image rarely show an object the same way
    (pose, light, clothing); the image's surest cells bridge that. Unit vector, float32."""
    similarity = np.tensordot(vector, features, axes=(0, 0))
    surest = similarity >= np.quantile(similarity, quantile)
    own = features[:, surest].mean(axis=1)
    mixed = weight * vector + (1 - weight) * own / max(float(np.linalg.norm(own)), 1e-6)
    return (mixed / max(float(np.linalg.norm(mixed)), 1e-6)).astype(np.float32)


@dataclass
class Proposal:
    """A proposed instance: its coarse mask, the refined mask (None before refinement) and a score in [-1, 1]."""

    coarse: np.ndarray
    score: float
    mask: np.ndarray | None = None

    @property
    def box(self) -> tuple[int, int, int, int]:
        x, y, w, h = cv2.boundingRect((self.mask if self.mask is not None else self.coarse).view(np.uint8))
        return x, y, x + w, y + h


def split_regions(similarity: np.ndarray, threshold: float, min_cells: int, max_cells: float | None = None,
                  step: float = 0.025) -> list[np.ndarray]:
    """Connected regions of the map above ``threshold`` (bool grids), a region over ``max_cells`` split in two or more.

    Touching objects (a group of pedestrians) merge into one region at the threshold; raising the threshold
    inside it until its peaks separate, then giving every cell of the region to the nearest peak, splits it
    (a watershed on the similarity). Parts under ``min_cells`` are dropped.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats((similarity >= threshold).astype(np.uint8), connectivity=8)
    todo = [(labels == k, threshold) for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= min_cells]
    regions = []
    while todo:
        region, level = todo.pop()
        parts: list[np.ndarray] = []
        if max_cells is not None and region.sum() > max_cells:
            for higher in np.arange(level + step, float(similarity[region].max()), step):
                n, cores, stats, _ = cv2.connectedComponentsWithStats((region & (similarity >= higher)).astype(np.uint8), connectivity=8)
                big = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_cells]
                if len(big) >= 2:
                    seeds = np.isin(cores, big)
                    _, nearest = cv2.distanceTransformWithLabels((~seeds).astype(np.uint8), cv2.DIST_L2, 5,
                                                                 labelType=cv2.DIST_LABEL_CCOMP)
                    parts = [(nearest == label) & region for label in np.unique(nearest[seeds])]
                    todo += [(part, higher) for part in parts if part.sum() >= min_cells]
                    break
                if not big:
                    break
        if not parts:
            regions.append(region)
    return regions


def propose(similarity: np.ndarray, shape: tuple[int, int], threshold: float = DEFAULT_THRESHOLD,
            existing: Sequence[np.ndarray] = (), min_area: float = 0.002, max_area: float | None = None,
            max_overlap: float = 0.5) -> list[Proposal]:
    """Regions of the similarity map above ``threshold`` (:func:`split_regions`) as coarse instances of an (H, W) image.

    The map is thresholded on its own grid and the regions upsampled (cost bounded by the grid, not the image).
    ``min_area`` and ``max_area`` are fractions of the image: smaller regions are dropped, larger ones split where
    the map has several peaks. A region more than ``max_overlap`` covered by ``existing`` instances is dropped;
    otherwise it loses the covered pixels. Sorted by score (mean similarity inside), best first.
    """
    h, w = shape
    cells = similarity.size
    covered = np.zeros(shape, bool)
    for mask in existing:
        covered |= mask
    low = min(threshold - 1e-3, float(similarity.min()))
    proposals = []
    for region in split_regions(similarity, threshold, max(2, round(min_area * cells)),
                                None if max_area is None else max_area * cells):
        score = float(similarity[region].mean())
        soft = cv2.resize(np.where(region, similarity, low).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        coarse = soft >= threshold
        area = cv2.countNonZero(coarse.view(np.uint8))
        if area == 0 or cv2.countNonZero((coarse & covered).view(np.uint8)) / area > max_overlap:
            continue
        proposals.append(Proposal(coarse & ~covered, score))
    proposals.sort(key=lambda p: -p.score)
    return proposals


@dataclass
class SimilarFinder:
    """Find-similar for both front ends: features from ``cache``, proposals refined by ``refiner`` (or not).

    ``source`` (a prompt tool's coarse source, e.g. :class:`app.refiner.prompts.EncoderSource`) re-segments each
    region from its bounding box: the similarity map only says where an object is, at stride 8, and the box
    prompt draws its outline (on held-out Penn-Fudan, recall at IoU 0.5 rises from 31 % to 50 %). ``refiner`` is
    an :class:`app.refiner.api.Refiner` (None: proposals keep their coarse masks); ``options`` its
    :class:`app.refiner.api.RefineOptions`. ``self_support`` False compares with the examples' prototype as it is
    (the benchmark's baseline).
    """

    cache: FeatureCache
    refiner: Refiner | None = None
    options: RefineOptions | None = None
    source: CoarseSource | None = None
    self_support: bool = True

    def prototype(self, examples: Sequence[tuple[np.ndarray, np.ndarray]], keys: Sequence[str | None] | None = None) -> Prototype:
        """The prototype of example instances given as (image, full-size mask) pairs (several: averaged)."""
        keys = keys or [None] * len(examples)
        pairs = []
        for (image, mask), key in zip(examples, keys):
            if mask.shape != image.shape[:2]:
                raise SimilarError(f"an example mask has shape {mask.shape}, its image is {image.shape[:2]}")
            pairs.append((self.cache.get(image, key), np.asarray(mask, bool)))
        return prototype(pairs)

    def similarity(self, image: np.ndarray, proto: Prototype, key: str | None = None) -> np.ndarray:
        """The similarity map of ``image`` on its feature grid: what the threshold slider previews."""
        return similarity_map(self.cache.get(image, key), proto, self.self_support)

    def find(self, image: np.ndarray, proto: Prototype, threshold: float = DEFAULT_THRESHOLD,
             existing: Sequence[np.ndarray] = (), key: str | None = None) -> list[Proposal]:
        """Proposals in ``image`` (refined when the finder has a refiner), best score first.

        Regions under :data:`MIN_RELATIVE_AREA` of the examples' size (relative to the image) are dropped.
        """
        min_area = max(0.002, MIN_RELATIVE_AREA * proto.area_fraction)
        proposals = propose(self.similarity(image, proto, key), image.shape[:2], threshold, existing, min_area,
                            MAX_RELATIVE_AREA * proto.area_fraction)
        if self.source is not None:
            proposals = self.outline(image, proposals, existing)
        if self.refiner is not None:
            self.refine(image, proposals)
        return proposals

    def outline(self, image: np.ndarray, proposals: list[Proposal], existing: Sequence[np.ndarray] = (),
                max_overlap: float = 0.5) -> list[Proposal]:
        """Each proposal re-segmented by ``source`` from its bounding box, minus what ``existing`` covers; a
        proposal whose outline is more than ``max_overlap`` covered by existing instances is dropped (so a second
        search does not propose again what a first one outlined)."""
        assert self.source is not None
        covered = np.zeros(image.shape[:2], bool)
        for mask in existing:
            covered |= mask
        kept = []
        for proposal in proposals:
            x, y, w, h = cv2.boundingRect(proposal.coarse.view(np.uint8))
            if min(w, h) >= MIN_BOX_SIDE:
                outline = self.source.segment(image, Prompt(box=(x, y, x + w, y + h)))
                area = cv2.countNonZero(outline.view(np.uint8))
                if area and cv2.countNonZero((outline & covered).view(np.uint8)) > max_overlap * area:
                    continue
                if area:
                    proposal.coarse = outline & ~covered
            kept.append(proposal)
        return kept

    def refine(self, image: np.ndarray, proposals: Sequence[Proposal]) -> None:
        """Set every proposal's ``mask`` to its refined coarse mask (the refiner's last step)."""
        if not proposals:
            return
        refiner, options = self._refiner()
        patches = refiner.final_patches(image, [p.coarse for p in proposals], options)
        for i, proposal in enumerate(proposals):
            proposal.mask = patches[i].full_mask(image.shape[:2])

    def refine_steps(self, image: np.ndarray, proposals: Sequence[Proposal]) -> Iterator[RefineStep]:
        """The refiner's steps on the proposals' coarse masks together (for the window to animate)."""
        refiner, options = self._refiner()
        return refiner.run(image, [p.coarse for p in proposals], options)

    def _refiner(self) -> tuple[Refiner, RefineOptions]:
        from app.refiner.options import RefineOptions

        if self.refiner is None:
            raise SimilarError("this finder has no refiner")
        return self.refiner, self.options or RefineOptions()
