"""Folders of PNG masks: one label map per image, or one binary PNG per instance.

File names map to images by stem (images are every ``.jpg/.jpeg/.png/.bmp/.tif/.tiff/.webp`` directly in
``images_dir``; ``file_name`` is their name there):
- Label maps (``load_label_masks``): ``<masks_dir>/<image stem><suffix>.png``, suffix ``"_mask"`` by default
  (Penn-Fudan: ``PedMasks/FudanPed00001_mask.png`` <-> ``PNGImages/FudanPed00001.png``); a mask without the
  suffix maps to the image of the same stem. A single-channel 8- or 16-bit PNG: 0 is background (or
  ``background``), every other value k is one instance, in increasing k.
- Binary masks (``load_binary_masks``): either flat, ``<masks_dir>/<image stem>_<k>.png``, or one subfolder
  per image, ``<masks_dir>/<image stem>/<any name>.png``; instances follow k (or the name) in natural order.
  Any non-zero pixel (in any channel) is foreground.
All instances get one category (``category``, default ``Category(1, "object")``); ids are 1, 2, ... in image
order then mask order.

Export mirrors import, one atomically written file at a time (an interrupted export leaves whole files):
- ``write_label_masks``: ``<image stem><suffix>.png`` for every image, uint8 when it has at most 255
  instances, else uint16. Overlaps are resolved by an explicit order: ``order="area"`` (default) draws
  the largest first so smaller instances stay on top; ``order="given"`` draws in the order instances come
  (pass them in z-order; later on top). Instances losing pixels to those above are reported. Label maps
  carry no categories.
- ``write_binary_masks``: ``<image stem>_<instance id>.png``, 0 / 255.
"""
from __future__ import annotations

import os
import re
from itertools import groupby
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Literal

import cv2
import numpy as np

from app.core.atomic import write_bytes_atomic
from app.core.errors import DatasetError
from app.core.images import IMAGE_EXTENSIONS, check_image_file, link_problem, max_image_pixels, read_image_unchanged
from app.core.records import (
    Category,
    ChangeKind,
    Dataset,
    ImageRecord,
    Instance,
    Provenance,
    ReviewStatus,
    SegmentationFormat,
    encode_mask,
    rle_areas,
)
from app.core.report import ExportReport, ImportReport
from app.core.signals import check_stop

LabelOrder = Literal["area", "given"]
_FLAT_BINARY = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)$")


# --------------------------------------------------------------------------------------------- import
def load_label_masks(
    images_dir: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str],
    *,
    suffix: str = "_mask",
    category: Category | None = None,
    background: int = 0,
) -> tuple[Dataset, ImportReport]:
    """Read one label-index PNG per image (see the module docstring for names and values)."""
    masks_dir = _mask_folder(masks_dir)
    builder = _Builder(images_dir, masks_dir, category)
    mask_paths = _pngs(masks_dir, builder.report)
    if not mask_paths and not builder.report.problems:
        raise DatasetError(masks_dir, no_masks_problem(masks_dir))
    for mask_path in mask_paths:
        stem = mask_path.stem
        image = builder.image_for(stem[: -len(suffix)] if suffix and stem.endswith(suffix) else stem, mask_path)
        labels = builder.read(mask_path, image, binary=False)
        if labels is None:
            continue
        values = np.unique(labels)
        for value in values[values != background].tolist():
            builder.add(image, labels == value)
    return builder.finish()


def load_binary_masks(
    images_dir: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str],
    *,
    category: Category | None = None,
) -> tuple[Dataset, ImportReport]:
    """Read one binary PNG per instance, flat ``<stem>_<k>.png`` or in a subfolder per image."""
    masks_dir = _mask_folder(masks_dir)
    builder = _Builder(images_dir, masks_dir, category)
    groups = list(_binary_mask_files(masks_dir, builder))
    if not groups and not builder.report.problems:
        raise DatasetError(masks_dir, no_masks_problem(masks_dir))
    for stem, files in groups:
        image = builder.image_for(stem, files[0])
        for mask_path in files:
            mask = builder.read(mask_path, image, binary=True)
            if mask is not None:
                builder.add(image, mask)
    return builder.finish()


def no_masks_problem(folder: Path) -> str:
    """The error for a mask folder without PNG masks (a folder named like a JSON file gets a hint)."""
    hint = " (a COCO or LVIS annotation file is a file, not a folder)" if folder.suffix.lower() == ".json" else ""
    return f"is a folder with no PNG masks in it: nothing to import{hint}"


def _mask_folder(masks_dir: str | os.PathLike[str]) -> Path:
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise DatasetError(masks_dir, "mask folder not found")
    return masks_dir


def _pngs(folder: Path, report: ImportReport) -> list[Path]:
    """The PNG files directly in ``folder`` in natural order; links that lead nowhere are reported."""
    return list(_listed(folder, (".png",), report))


def _listed(folder: Path, extensions: tuple[str, ...], report: ImportReport) -> Iterator[Path]:
    """Files in ``folder`` with one of ``extensions``, in natural order; a symbolic link that loops or leads
    to nothing is reported (as skipped) instead of vanishing from the listing."""
    for path in sorted(folder.iterdir(), key=_natural):
        if path.suffix.lower() not in extensions:
            continue
        problem = link_problem(path)
        if problem is not None:
            report.add(problem, record=path.name, file=str(path))
        elif path.is_file():
            yield path


def _binary_mask_files(masks_dir: Path, builder: _Builder) -> Iterator[tuple[str, list[Path]]]:
    """(image stem, its mask files in order), subfolders first, then flat files grouped by stem."""
    for sub in sorted((p for p in masks_dir.iterdir() if p.is_dir()), key=_natural):
        files = _pngs(sub, builder.report)
        if files:
            yield sub.name, files
    flat: dict[str, list[Path]] = {}
    for path in _pngs(masks_dir, builder.report):
        match = _FLAT_BINARY.match(path.stem)
        if match is None:
            builder.report.add("name is not <image stem>_<k>.png", record=path.name, file=str(path))
            continue
        flat.setdefault(match["stem"], []).append(path)
    yield from flat.items()


def _natural(path: Path) -> list[Any]:
    """Sort key that puts ``a_2`` before ``a_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


class _Builder:
    """Collects images, reads masks against them and numbers the instances."""

    def __init__(self, images_dir: str | os.PathLike[str], masks_dir: Path, category: Category | None):
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise DatasetError(self.images_dir, "image folder not found")
        self.category = category or Category(1, "object")
        self.report = ImportReport(str(masks_dir))
        self.images: dict[int, ImageRecord] = {}
        self.by_stem: dict[str, ImageRecord | None] = {}
        self.instances: list[Instance] = []
        files = list(_listed(self.images_dir, IMAGE_EXTENSIONS, self.report))
        if not files and not self.report.problems:
            raise DatasetError(self.images_dir, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder: nothing "
                                                "to import")
        for path in files:
            if path.stem in self.by_stem:
                self.report.add(f"another image has the stem {path.stem!r}; masks map to the first", record=path.name,
                                action="kept", file=str(path))
                continue
            try:
                (width, height), truncated = check_image_file(path)
            except DatasetError as e:
                self.report.add(e.problem, record=path.name, file=str(path))
                self.by_stem[path.stem] = None
                continue
            if truncated is not None:
                self.report.add(truncated, record=path.name, action="kept", file=str(path))
            image = ImageRecord(len(self.images) + 1, path.name, width, height)
            self.images[image.id] = image
            self.by_stem[path.stem] = image

    def image_for(self, stem: str, mask_path: Path) -> ImageRecord | None:
        image = self.by_stem.get(stem)
        if image is None:
            problem = "its image could not be read" if stem in self.by_stem else f"no image {stem}.* in {self.images_dir}"
            self.report.add(problem, record=mask_path.name, file=str(mask_path))
        return image

    def read(self, path: Path, image: ImageRecord | None, *, binary: bool) -> np.ndarray | None:
        """The mask (bool) or label map of ``path`` if it is readable and of its image's size."""
        if image is None:
            return None
        try:
            pixels = read_image_unchanged(path)
        except DatasetError as e:
            self.report.add(e.problem, record=path.name, file=str(path))
            return None
        if pixels.ndim == 3:
            if binary:
                pixels = (pixels != 0).any(axis=2)
            elif (pixels == pixels[..., :1]).all():
                pixels = pixels[..., 0]
            else:
                self.report.add("label map has colour channels; it must be single-channel (grey) with one value per "
                                "instance", record=path.name, file=str(path))
                return None
        if pixels.shape != (image.height, image.width):
            self.report.add(
                f"mask is {pixels.shape[1]}x{pixels.shape[0]} but image {image.file_name} is {image.width}x{image.height}",
                record=path.name, file=str(path),
            )
            return None
        if binary:
            pixels = pixels != 0
            if not pixels.any():
                self.report.add("mask is empty", record=path.name, action="kept as an empty mask", file=str(path))
        return pixels

    def add(self, image: ImageRecord, mask: np.ndarray) -> None:
        self.instances.append(Instance(
            len(self.instances) + 1, image.id, self.category.id, encode_mask(mask),
            provenance=Provenance(ChangeKind.IMPORTED), source_format=SegmentationFormat.MASK,
        ))

    def finish(self) -> tuple[Dataset, ImportReport]:
        self.report.counts.update(images=len(self.images), categories=1, instances=len(self.instances))
        dataset = Dataset(self.images, {self.category.id: self.category}, self.instances, kind="png")
        return dataset, self.report


# --------------------------------------------------------------------------------------------- export
def save_png_masks(
    dataset: Dataset, out_dir: str | os.PathLike[str], *, layout: Literal["label", "binary"] = "label", **options: Any
) -> ExportReport:
    """Write a whole in-memory dataset as label maps (``layout="label"``) or binary masks."""
    instances = sorted(dataset.instances, key=lambda inst: inst.image_id)  # stable: keeps each image's order
    if layout == "label":
        return write_label_masks(out_dir, dataset.images.values(), instances, **options)
    if layout == "binary":
        return write_binary_masks(out_dir, dataset.images.values(), instances, **options)
    raise ValueError(f"layout must be 'label' or 'binary', not {layout!r}")


def write_label_masks(
    out_dir: str | os.PathLike[str],
    images: Iterable[ImageRecord],
    instances: Iterable[Instance],
    *,
    suffix: str = "_mask",
    order: LabelOrder = "area",
    statuses: Collection[ReviewStatus] | None = None,
) -> ExportReport:
    """One label map per image, written as each image's instances arrive: ``instances`` must come grouped
    by image (the store orders them so). ``statuses`` keeps only instances in those review states (None:
    all)."""
    if order not in ("area", "given"):
        raise ValueError(f"order must be 'area' or 'given', not {order!r}")
    out = _out_dir(out_dir)
    report = ExportReport(str(out))
    image_list = list(images)
    by_id = {img.id: img for img in image_list}
    names = _file_stems(image_list, report)
    written: set[int] = set()
    for image_id, group in _groups(instances, statuses, by_id, report):
        if image_id in names:
            _write_label_map(out / f"{names[image_id]}{suffix}.png", by_id[image_id], group, order, report)
            written.add(image_id)
    for image in image_list:  # images without instances: an all-background map
        check_stop()
        if image.id in names and image.id not in written:
            _write_label_map(out / f"{names[image.id]}{suffix}.png", image, [], order, report)
    return report


def _write_label_map(path: Path, image: ImageRecord, instances: list[Instance], order: LabelOrder, report: ExportReport) -> None:
    if _too_large(image, report, "a PNG label map"):
        return
    try:
        labels = _label_map(image, instances, order, report)
        if labels is not None:
            _write_png(path, labels)
            report.counts["label maps"] += 1
    except MemoryError:
        report.add(f"not enough memory for its {image.width}x{image.height} label map", record=f"image {image.id}")


def _too_large(image: ImageRecord, report: ExportReport, what: str) -> bool:
    """Refuse (and report) an image whose masks would not fit in memory, before allocating any."""
    limit = max_image_pixels()
    if image.width * image.height <= limit:
        return False
    report.add(f"the {image.width}x{image.height} image is too large for {what}: more than {limit} pixels, "
               "OpenCV's limit (OPENCV_IO_MAX_IMAGE_PIXELS raises it)", record=f"image {image.id}")
    return True


def write_binary_masks(
    out_dir: str | os.PathLike[str],
    images: Iterable[ImageRecord],
    instances: Iterable[Instance],
    *,
    statuses: Collection[ReviewStatus] | None = None,
) -> ExportReport:
    """One 0/255 PNG per instance, ``<image stem>_<instance id>.png``."""
    out = _out_dir(out_dir)
    report = ExportReport(str(out))
    image_list = list(images)
    by_id = {img.id: img for img in image_list}
    names = _file_stems(image_list, report)
    for image_id, group in _groups(instances, statuses, by_id, report):
        if image_id not in names:
            continue
        image = by_id[image_id]
        if _too_large(image, report, "PNG masks"):
            continue
        for inst in group:
            if not _fits(inst, image, report):
                continue
            try:
                _write_png(out / f"{names[image_id]}_{inst.id}.png", inst.mask().astype(np.uint8) * 255)
            except MemoryError:
                report.add(f"not enough memory for its {image.width}x{image.height} mask", record=f"instance {inst.id}")
                continue
            report.counts["masks"] += 1
    return report


def _out_dir(out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(out, f"cannot create the output folder: {e.strerror or e}") from None
    return out


def _file_stems(images: list[ImageRecord], report: ExportReport) -> dict[int, str]:
    """Output stem per image id: the image's file stem, flat (never a path from the annotation file)."""
    stems: dict[int, str] = {}
    taken: dict[str, int] = {}
    for image in images:
        stem = Path(image.file_name).stem
        if stem in taken:
            report.add(f"file name stem {stem!r} is also image {taken[stem]}'s", record=f"image {image.id}")
            continue
        taken[stem] = image.id
        stems[image.id] = stem
    return stems


def _groups(
    instances: Iterable[Instance],
    statuses: Collection[ReviewStatus] | None,
    images: dict[int, ImageRecord],
    report: ExportReport,
) -> Iterator[tuple[int, list[Instance]]]:
    wanted = None if statuses is None else {ReviewStatus(s) for s in statuses}
    done: set[int] = set()
    for image_id, group in groupby(instances, key=lambda inst: inst.image_id):
        check_stop()  # SIGTERM / SIGHUP: between images, every PNG written so far whole
        if image_id in done:
            raise ValueError(f"instances must come grouped by image; image {image_id} came twice")
        done.add(image_id)
        members = list(group)
        kept = [inst for inst in members if wanted is None or ReviewStatus(inst.status) in wanted]
        if wanted is not None:
            report.counts["excluded by status"] += len(members) - len(kept)
        if image_id not in images:
            for inst in kept:
                report.add(f"image {image_id} is not among the images exported", record=f"instance {inst.id}")
            continue
        yield image_id, kept


def _fits(inst: Instance, image: ImageRecord, report: ExportReport) -> bool:
    if inst.size == (image.height, image.width):
        return True
    report.add(f"mask is {inst.size[1]}x{inst.size[0]} but image {image.id} is {image.width}x{image.height}",
               record=f"instance {inst.id}")
    return False


def _label_map(image: ImageRecord, instances: list[Instance], order: LabelOrder, report: ExportReport) -> np.ndarray | None:
    instances = [inst for inst in instances if _fits(inst, image, report)]
    if len(instances) > 65535:
        report.add(f"{len(instances)} instances do not fit a 16-bit label map", record=f"image {image.id}")
        return None
    areas = rle_areas([inst.rle for inst in instances])
    if order == "area":
        ranked = sorted(range(len(instances)), key=lambda k: -areas[k])
        instances, areas = [instances[k] for k in ranked], [areas[k] for k in ranked]
    labels = np.zeros((image.height, image.width), np.uint8 if len(instances) <= 255 else np.uint16)
    for value, inst in enumerate(instances, 1):
        labels[inst.mask()] = value
    visible = np.bincount(labels.ravel(), minlength=len(instances) + 1)
    for value, (inst, area) in enumerate(zip(instances, areas), 1):
        if visible[value] < area:
            action = "not in the label map" if visible[value] == 0 else "written in part"
            report.add(f"{area - visible[value]} of its {area} pixels are covered by instances drawn above it",
                       record=f"instance {inst.id}", action=action)
    report.counts["instances"] += len(instances)
    return labels


def _write_png(path: Path, pixels: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise DatasetError(path, "OpenCV could not encode the PNG")
    try:
        write_bytes_atomic(path, data.tobytes())
    except OSError as e:
        raise DatasetError(path, f"cannot write: {e.strerror or e}") from None
