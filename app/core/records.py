"""Records of the dataset domain: images, categories, instances.

Masks are raster first: an instance holds its mask as a compressed COCO RLE (pycocotools) and decodes it
on demand, so a whole dataset never sits decoded in memory. Polygons read from a file are rasterised on
first use rather than at import: for an LVIS-sized file pycocotools' rasterisation alone takes as long as
parsing the whole file, and most instances of a dataset are never looked at in a session (see
docs/decisions/0011). Fields we do not model are kept in ``extra`` and written back untouched on export.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from app.core.formats.polygons import polygons_to_rle
from app.core.formats.rle_check import rle_pixel_totals


class ReviewStatus(str, Enum):
    """Where an instance stands in the annotator's review."""

    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NEEDS_WORK = "needs_work"


class SegmentationFormat(str, Enum):
    """How an instance's segmentation was written in the file it came from (export reports it)."""

    POLYGON = "polygon"
    RLE = "rle"
    UNCOMPRESSED_RLE = "uncompressed_rle"
    MASK = "mask"  # a raster mask: a PNG import, or drawn in the app


class ChangeKind(str, Enum):
    """What last changed an instance's mask.

    PROMPTED: made from a box or clicks (a coarse source, then the refiner). PROPOSED: found by find-similar and
    not changed since; such an instance is a *proposal* until the annotator accepts it (status) or changes its
    mask (which makes it theirs), and export leaves proposals out unless asked (docs/decisions/0021).
    """

    IMPORTED = "imported"
    MANUAL = "manual"
    REFINED = "refined"
    PROMPTED = "prompted"
    PROPOSED = "proposed"


class MaskError(ValueError):
    """An instance's mask cannot be made from what it holds (RLE runs that do not cover its image, polygons
    that are not numbers): a damaged project, or a record built wrongly."""

    def __init__(self, instance_id: int, problem: str) -> None:
        self.instance_id = instance_id
        self.problem = problem
        super().__init__(f"instance {instance_id}: {problem}")


@dataclass(frozen=True)
class Provenance:
    """The last change to an instance: who or what made it, and with which refiner settings. Frozen, so
    the instances of one import can share one.

    The one shape provenance takes from the refiner to the store, in the window (undo steps carry it) and
    headless. ``mean_confidence`` is the model's mean confidence over its crop, for a refinement only. For a
    prompted or proposed instance ``mode`` names the coarse source (``encoder``, ``grabcut``, ``sam``) and
    ``weights`` / ``steps`` the refiner run on it (None / 0 when the coarse mask was kept).
    """

    kind: ChangeKind = ChangeKind.IMPORTED
    weights: str | None = None
    mode: str | None = None
    steps: int | None = None
    timestamp: float = field(default_factory=time.time)
    mean_confidence: float | None = None

    @classmethod
    def manual(cls) -> Provenance:
        """A hand edit, now."""
        return cls(ChangeKind.MANUAL)

    @classmethod
    def refined(cls, weights: str, mode: str, steps: int, mean_confidence: float | None) -> Provenance:
        """A refinement, now: the weights' name, the pipeline mode and the reverse steps behind the mask."""
        return cls(ChangeKind.REFINED, weights, mode, steps, mean_confidence=mean_confidence)

    @classmethod
    def prompted(cls, source: str, weights: str | None, steps: int) -> Provenance:
        """A mask made from a box or clicks, now: the coarse source's name and the refiner run on it."""
        return cls(ChangeKind.PROMPTED, weights, source, steps)

    @classmethod
    def proposed(cls, source: str, weights: str | None, steps: int) -> Provenance:
        """A find-similar proposal, now: how its outline was drawn and the refiner run on it."""
        return cls(ChangeKind.PROPOSED, weights, source, steps)

    @property
    def is_refined(self) -> bool:
        return ChangeKind(self.kind) is ChangeKind.REFINED


@dataclass
class ImageRecord:
    """One image of the dataset. ``extra`` keeps every JSON key we do not model."""

    id: int
    file_name: str
    width: int
    height: int
    neg_category_ids: list[int] | None = None
    not_exhaustive_category_ids: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Category:
    """A COCO category with LVIS' extra fields when present."""

    id: int
    name: str
    supercategory: str | None = None
    frequency: str | None = None
    synset: str | None = None
    synonyms: list[str] | None = None
    definition: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def category_labels(categories: Sequence[Category]) -> dict[int, str]:
    """What the window calls each category: its name, with its id where two share a name (COCO allows it)."""
    counts = Counter(c.name for c in categories)
    return {c.id: c.name if counts[c.name] == 1 else f"{c.name} (id {c.id})" for c in categories}


@dataclass(frozen=True)
class SourcePolygons:
    """A polygon list exactly as the JSON text it had in the imported file.

    Export writes the text back as it was, so an unedited annotation keeps its bytes, and no float is
    formatted again (for an LVIS-sized file, re-formatting the coordinates costs more than parsing the whole
    file). The numbers are parsed only when a mask or a coordinate is needed.
    """

    text: str

    def parse(self) -> list[list[float]]:
        return json.loads(self.text)


def rasterise_original(original: dict[str, Any] | None, height: int, width: int) -> dict[str, Any]:
    """The RLE of an ``Instance.original_segmentation``'s polygons (pycocotools, as ``COCO.annToRLE``);
    ValueError when it holds none (an imported uncompressed RLE is kept there too, as the file's dict)."""
    polygons = None if original is None else original.get("segmentation")
    if isinstance(polygons, SourcePolygons):
        polygons = polygons.parse()
    if not isinstance(polygons, list):
        raise ValueError("no polygons to rasterise it from")
    return polygons_to_rle(polygons, height, width)


@dataclass
class Instance:
    """One annotated object: a raster mask kept as compressed RLE (``counts`` as str).

    An instance imported as polygons may be built with ``rle={"size": [height, width]}`` (no counts): its
    mask is then ``original_segmentation``'s polygons, rasterised the first time ``rle`` is read.
    """

    id: int
    image_id: int
    category_id: int
    rle: dict[str, Any]
    score: float | None = None
    iscrowd: int = 0
    status: ReviewStatus = ReviewStatus.UNREVIEWED
    provenance: Provenance = field(default_factory=Provenance)
    extra: dict[str, Any] = field(default_factory=dict)
    source_format: SegmentationFormat | None = None
    original_segmentation: dict[str, Any] | None = None
    """The annotation's own geometry while the mask is unedited: ``{"segmentation": polygons}`` when the
    source had polygons (or its uncompressed RLE dict), plus its ``area`` and ``bbox`` when it had them.
    Export writes these back verbatim so an unedited dataset round-trips exactly; ``set_mask`` drops it
    (they no longer describe the mask)."""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image the mask covers."""
        h, w = self._rle["size"]
        return int(h), int(w)

    @property
    def rasterised(self) -> bool:
        """Whether the RLE exists yet (False: polygons still to be rasterised on first use)."""
        return "counts" in self._rle

    def mask(self) -> np.ndarray:
        """Decode the mask to a (H, W) bool array."""
        rle = self.rle
        try:
            return decode_mask(rle)
        except ValueError as e:
            raise MaskError(self.id, str(e)) from None

    @property
    def area(self) -> int:
        rle = self.rle  # polygons that cannot be rasterised raise their own MaskError
        try:
            return rle_areas([rle])[0]
        except RLEError as e:
            raise MaskError(self.id, str(e)) from None

    @property
    def bbox(self) -> list[float]:
        """COCO [x, y, w, h] of the mask."""
        rle = self.rle
        try:
            return [float(v) for v in rle_boxes([rle])[0]]
        except RLEError as e:
            raise MaskError(self.id, str(e)) from None

    def set_mask(self, mask: np.ndarray) -> None:
        """Replace the mask; the RLE is re-encoded and the imported geometry no longer applies."""
        self.rle = encode_mask(mask)
        self.original_segmentation = None


def _get_rle(self: Instance) -> dict[str, Any]:
    rle = self._rle
    if "counts" not in rle:
        try:
            rle = self._rle = rasterise_original(self.original_segmentation, *rle["size"])
        except (ValueError, TypeError) as e:  # TypeError: polygons of a damaged project that are not numbers
            raise MaskError(self.id, f"has no RLE yet: {e}") from e
    return rle


def _set_rle(self: Instance, rle: dict[str, Any]) -> None:
    self._rle = rle


# A property set after @dataclass, so the generated __init__, replace(), eq and repr all go through it:
# an instance still holding polygons rasterises them the first time anything reads its RLE.
Instance.rle = property(_get_rle, _set_rle, doc="The mask as compressed COCO RLE (``counts`` as str).")  # type: ignore[assignment]


def rle_areas(rles: Sequence[dict[str, Any]]) -> list[int]:
    """Pixel areas of many RLEs in few pycocotools calls, the RLEs checked first (``check_rles``)."""
    check_rles(rles)
    return _areas(rles)


def rle_boxes(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """COCO [x, y, w, h] boxes (n, 4) of many RLEs in one pycocotools call, the RLEs checked first."""
    check_rles(rles)
    return _boxes(rles)


def rle_geometry(rles: Sequence[dict[str, Any]]) -> tuple[list[int], np.ndarray]:
    """``rle_areas`` and ``rle_boxes`` of the same RLEs, checked once."""
    check_rles(rles)
    return _areas(rles), _boxes(rles)


def _areas(rles: Sequence[dict[str, Any]]) -> list[int]:
    """pycocotools' ``area`` raises OverflowError for a list of 256 or more under NumPy 2 (it builds a
    throwaway ``np.array((n,), dtype=np.uint8)``), so it is called 255 RLEs at a time. Checked RLEs only."""
    areas: list[int] = []
    for start in range(0, len(rles), 255):
        areas += mask_utils.area(list(rles[start : start + 255])).tolist()
    return areas


def _boxes(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """pycocotools' ``toBbox`` of checked RLEs."""
    return mask_utils.toBbox(list(rles)) if rles else np.zeros((0, 4))


def rle_union(rles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The union of RLEs of one image size as one RLE, merged run by run without decoding any (checked first)."""
    check_rles(rles)
    return mask_utils.merge(list(rles), intersect=False)


def rle_xor_area(a: dict[str, Any], b: dict[str, Any]) -> int:
    """|a xor b| of two RLEs without decoding them: |a| + |b| - 2 |a and b| (both checked first)."""
    check_rles([a, b])
    both = mask_utils.merge([a, b], intersect=True)
    return int(mask_utils.area(a) + mask_utils.area(b) - 2 * mask_utils.area(both))


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Encode a (H, W) bool/uint8 mask (non-zero = inside) as compressed COCO RLE with ``counts`` as str.

    COCO RLE runs column-major. OpenCV's blocked transpose makes the column-major copy several times faster
    than ``np.asfortranarray`` and releases the GIL meanwhile, so encoding a large photo's mask on a worker
    thread holds the GIL only for pycocotools' own few milliseconds and never stalls the GUI thread.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    binary = mask.view(np.uint8) if mask.dtype == bool else (mask != 0).view(np.uint8)
    rle = mask_utils.encode(cv2.transpose(np.ascontiguousarray(binary)).T)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """A COCO RLE as a C-ordered (H, W) bool mask (pycocotools decodes column-major; see ``encode_mask``).

    The runs are checked to cover the image first: pycocotools writes them into the mask unchecked, so
    counts from a damaged project would write past its end (ValueError instead)."""
    check_rle(rle)
    column_major = mask_utils.decode(rle)
    return cv2.transpose(column_major.T).view(bool)


MAX_SIDE = 2**31 - 1
"""The largest height or width pycocotools takes on every platform (its sizes are C longs, 32-bit on Windows)."""


class RLEError(ValueError):
    """An RLE that pycocotools must not be given; ``index`` is its place in the list checked."""

    def __init__(self, index: int, problem: str) -> None:
        self.index = index
        super().__init__(problem)


def check_rle(rle: dict[str, Any]) -> None:
    """ValueError unless a compressed RLE's runs cover exactly its size (see ``check_rles``)."""
    check_rles([rle])


def check_rles(rles: Sequence[dict[str, Any]]) -> None:
    """RLEError for the first RLE that is not a compressed RLE string whose runs cover exactly its size.

    pycocotools trusts its input: a string whose last character says "more follows" is read past its end,
    runs beyond the image are written past the mask, a negative size overflows. Its area, box and decode are
    only ever given RLEs checked here (all of a list in one vectorised pass, ``rle_pixel_totals``), so a
    damaged project is named in an error instead of corrupting memory.
    """
    texts: list[str] = []
    for rle in rles:
        counts = rle["counts"]
        text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
        texts.append(text if isinstance(text, str) else "")
    totals = rle_pixel_totals(texts)
    for k, (rle, total) in enumerate(zip(rles, totals.tolist())):
        height, width = rle["size"]
        if not all(isinstance(v, (int, np.integer)) and 0 <= v <= MAX_SIDE for v in (height, width)):
            raise RLEError(k, f"its mask's size {width}x{height} is not an image size")
        if total < 0:
            raise RLEError(k, "its mask's RLE counts are not a compressed RLE string")
        if total != height * width:
            raise RLEError(k, f"its mask's RLE covers {total} pixels, not the {width}x{height} image's "
                              f"{height * width}")


@dataclass
class Dataset:
    """A whole annotation file in memory: what a codec reads and writes and the store imports.

    ``extra`` keeps top-level keys other than images/annotations/categories (``info``, ``licenses``, ...).
    ``kind`` is the format it came from ("coco", "lvis", "png") so export can default to the same.
    """

    images: dict[int, ImageRecord] = field(default_factory=dict)
    categories: dict[int, Category] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "coco"
