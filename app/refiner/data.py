"""Training and evaluation data: (image, ground-truth mask) examples from every kind of real dataset.

Sources: folders of image/mask pairs (ECSSD), trimaps with an ignore band (Oxford-IIIT Pets), instance-index
PNGs (Penn-Fudan), and COCO / LVIS JSON files. Each source is split into train and validation by a hash of
the image file name, so the validation split is fixed, and training never sees it, whatever the run.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import cv2
import numpy as np

from app.core.formats.coco import load_coco
from app.core.images import find_image_file, read_image_rgb
from app.core.records import decode_mask, rle_union

log = logging.getLogger(__name__)

VAL_FRACTION = 0.1


@dataclass
class Example:
    """One object: an RGB image, its ground-truth mask, and pixels to ignore in losses and metrics.

    ``others`` is the union of the image's other annotated objects, where the source knows them (instance sets):
    training teaches the refiner not to grow a good mask into a touching neighbour that looks alike.
    """

    image: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None
    key: str
    others: np.ndarray | None = None


def split_of(key: str, val_fraction: float = VAL_FRACTION) -> str:
    """'val' or 'train' for an image key, stable across runs and machines."""
    digest = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16)
    return "val" if digest % 1000 < val_fraction * 1000 else "train"


def _read_gray(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError(f"{path}: cannot read the mask image")
    return mask if mask.ndim == 2 else mask[..., 0]


class Source(Protocol):
    name: str

    def __len__(self) -> int: ...

    def load(self, index: int) -> Example: ...


class _Indexed:
    """A source over a list of (key, payload) items, filtered to one split."""

    name = "source"

    def __init__(self, items: list[tuple[str, object]], split: str | None) -> None:
        self.items = [it for it in items if split is None or split_of(it[0]) == split]

    def __len__(self) -> int:
        return len(self.items)


class PairFolder(_Indexed):
    """``images/NAME.jpg`` with ``masks/NAME.png`` (0/255 masks), as ECSSD."""

    def __init__(self, images: Path, masks: Path, split: str | None = None, name: str = "pairs") -> None:
        self.name = name
        by_stem = {p.stem: p for p in sorted(Path(images).iterdir()) if p.suffix.lower() in {".jpg", ".jpeg", ".png"}}
        items = [(f"{name}/{m.stem}", (by_stem[m.stem], m)) for m in sorted(Path(masks).glob("*.png")) if m.stem in by_stem]
        super().__init__(items, split)

    def load(self, index: int) -> Example:
        key, (image_path, mask_path) = self.items[index]
        return Example(read_image_rgb(image_path), _read_gray(mask_path) >= 128, None, key)


class TrimapFolder(_Indexed):
    """Oxford-IIIT Pets: trimap 1 = object, 2 = background, 3 = unknown band (ignored)."""

    def __init__(self, images: Path, trimaps: Path, split: str | None = None, name: str = "pets") -> None:
        self.name = name
        by_stem = {p.stem: p for p in sorted(Path(images).glob("*.jpg"))}
        items = [(f"{name}/{t.stem}", (by_stem[t.stem], t)) for t in sorted(Path(trimaps).glob("*.png")) if t.stem in by_stem]
        super().__init__(items, split)

    def load(self, index: int) -> Example:
        key, (image_path, trimap_path) = self.items[index]
        trimap = _read_gray(trimap_path)
        return Example(read_image_rgb(image_path), trimap == 1, trimap == 3, key)


class InstanceIndexFolder(_Indexed):
    """Penn-Fudan style: ``masks/STEM_mask.png`` holds 0 = background, k = instance k."""

    def __init__(self, images: Path, masks: Path, suffix: str = "_mask", split: str | None = None, name: str = "instances") -> None:
        self.name = name
        by_stem = {p.stem: p for p in sorted(Path(images).glob("*.png")) + sorted(Path(images).glob("*.jpg"))}
        items = []
        for mask_path in sorted(Path(masks).glob(f"*{suffix}.png")):
            stem = mask_path.stem[: -len(suffix)] if suffix else mask_path.stem
            if stem not in by_stem:
                continue
            labels = np.unique(_read_gray(mask_path))
            items += [(f"{name}/{stem}", (by_stem[stem], mask_path, int(k))) for k in labels if k != 0]
        super().__init__(items, split)

    def load(self, index: int) -> Example:
        key, (image_path, mask_path, label) = self.items[index]
        labels = _read_gray(mask_path)
        return Example(read_image_rgb(image_path), labels == label, None, f"{key}#{label}",
                       (labels != 0) & (labels != label))


class CocoFile(_Indexed):
    """Non-crowd instances of a COCO or LVIS JSON (read with our codec) with at least ``min_area`` pixels."""

    def __init__(self, annotations: Path, images: Path, split: str | None = None, min_area: int = 1024, name: str = "coco") -> None:
        self.name = name
        dataset, _report = load_coco(annotations)
        by_image: dict[int, list] = {}
        for inst in dataset.instances:
            by_image.setdefault(inst.image_id, []).append(inst)
        items = []
        for inst in dataset.instances:
            record = dataset.images[inst.image_id]
            path = find_image_file(images, record)
            if path is None or inst.iscrowd or inst.area < min_area:
                continue
            others = [o for o in by_image[inst.image_id] if o.id != inst.id]
            items.append((f"{name}/{path.stem}", (path, inst, others)))
        super().__init__(items, split)

    def load(self, index: int) -> Example:
        key, (path, inst, others) = self.items[index]
        mask = inst.mask()
        union = decode_mask(rle_union([other.rle for other in others])) if others else np.zeros_like(mask)
        return Example(read_image_rgb(path), mask, None, f"{key}#{inst.id}", union & ~mask)


def shared_sources(root: Path, split: str | None) -> list[Source]:
    """Every dataset of ``../shared/data`` that is present under ``root``, for one split."""
    sources: list[Source] = []
    if (root / "ecssd").is_dir():
        sources.append(PairFolder(root / "ecssd/images", root / "ecssd/masks", split, "ecssd"))
    if (root / "oxford_pets").is_dir():
        sources.append(TrimapFolder(root / "oxford_pets/images", root / "oxford_pets/annotations/trimaps", split, "pets"))
    if (root / "pennfudan").is_dir():
        sources.append(InstanceIndexFolder(root / "pennfudan/PNGImages", root / "pennfudan/PedMasks", "_mask", split, "pennfudan"))
    coco = root / "coco_tiny"
    for part in ("train2017", "val2017"):
        ann = coco / f"annotations/instances_{part}.json"
        if ann.exists():
            sources.append(CocoFile(ann, coco / part, split, name=f"coco_{part}"))
    lvis = root / "lvis_val_100"
    if (lvis / "lvis_val_100_present7.json").exists():
        sources.append(CocoFile(lvis / "lvis_val_100_present7.json", lvis / "images", split, name="lvis"))
    return [s for s in sources if len(s)]


def source_probabilities(sources: Sequence[Source], weights: Mapping[str, float]) -> np.ndarray:
    """How often training draws from each source: ``weights`` by source name (1 for the others), normalised.

    A name that is none of the sources' (a typo would otherwise be ignored without a word), a negative weight or
    all weights 0 is a ValueError."""
    names = [source.name for source in sources]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"source weights name {', '.join(unknown)}, which are not training sources here; "
                         f"known: {', '.join(names)}")
    values = np.array([float(weights.get(name, 1.0)) for name in names], dtype=np.float64)
    if (values < 0).any() or not values.sum() > 0:
        raise ValueError(f"source weights must be 0 or more with at least one above 0, got {dict(weights)}")
    return values / values.sum()
