"""The dataset formats by name: one row per format, for import and for export.

Adding a format is one codec module in app/core/formats and one row here; the command line's choices, the
window's import detection and its export dialog all read these tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

from app.core.errors import DatasetError
from app.core.formats.coco import load_coco, load_coco_results
from app.core.formats.coco_export import SegmentationMode, write_coco, write_coco_results
from app.core.formats.lvis import load_lvis, write_lvis
from app.core.formats.png_masks import load_binary_masks, load_label_masks, write_binary_masks, write_label_masks
from app.core.records import Category, Dataset, ImageRecord
from app.core.report import ExportReport, ImportReport
from app.core.store.rows import StoredInstance

Place = Literal["file", "folder"]


@dataclass(frozen=True)
class ImportRequest:
    """What to read: ``fmt`` is the user's explicit choice (None: detected, see ``detect_format``)."""

    source: Path
    fmt: str | None = None
    images_dir: Path | None = None
    images_file: Path | None = None


@dataclass(frozen=True)
class ProjectData:
    """What an export writes: the project's records and its instances in the order to write them."""

    extra: dict
    images: list[ImageRecord]
    categories: list[Category]
    instances: Iterable[StoredInstance]


@dataclass(frozen=True)
class ImportFormat:
    name: str
    description: str
    source: Place
    read: Callable[[ImportRequest], tuple[Dataset, ImportReport]]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    description: str
    target: Place
    write: Callable[[Path, ProjectData, SegmentationMode], ExportReport]
    by_image: bool = False
    """Instances grouped by image, in the project's z-order (label maps draw overlaps in that order)."""

    @property
    def json(self) -> bool:
        return self.target == "file"


def _read_coco(r: ImportRequest) -> tuple[Dataset, ImportReport]:
    return load_coco(r.source, images_dir=r.images_dir, check_images=r.images_dir is not None, kind=r.fmt)


def _read_lvis(r: ImportRequest) -> tuple[Dataset, ImportReport]:
    return load_lvis(r.source, images_dir=r.images_dir, check_images=r.images_dir is not None)


def _read_results(r: ImportRequest) -> tuple[Dataset, ImportReport]:
    if r.images_file is None:
        raise DatasetError(r.source, "a results file needs --images-file, the COCO/LVIS file of its images")
    return load_coco_results(r.source, r.images_file, images_dir=r.images_dir, check_images=r.images_dir is not None)


def _images_for_png(r: ImportRequest) -> Path:
    if r.images_dir is None:
        raise DatasetError(r.source, "PNG masks need --images, the folder of the images they belong to")
    return r.images_dir


IMPORT_FORMATS: dict[str, ImportFormat] = {f.name: f for f in (
    ImportFormat("coco", "COCO instances JSON (polygons, RLE; LVIS told apart)", "file", _read_coco),
    ImportFormat("lvis", "LVIS v1 JSON", "file", _read_lvis),
    ImportFormat("results", "COCO results (a model's predictions with scores)", "file", _read_results),
    ImportFormat("png-instances", "folder of binary PNG masks, one per instance", "folder",
                 lambda r: load_binary_masks(_images_for_png(r), r.source)),
    ImportFormat("png-labels", "folder of PNG label maps, one per image", "folder",
                 lambda r: load_label_masks(_images_for_png(r), r.source)),
)}

EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("coco", "COCO instances JSON", "file",
                 lambda out, d, seg: write_coco(out, d.extra, d.images, d.categories, d.instances, segmentation=seg)),
    ExportFormat("lvis", "LVIS v1 JSON", "file",
                 lambda out, d, seg: write_lvis(out, d.extra, d.images, d.categories, d.instances, segmentation=seg)),
    ExportFormat("results", "COCO results (predictions) JSON", "file",
                 lambda out, d, seg: write_coco_results(out, d.instances, segmentation=seg)),
    ExportFormat("png-labels", "PNG label maps (one per image, z-order kept)", "folder",
                 lambda out, d, _seg: write_label_masks(out, d.images, d.instances, order="given"), by_image=True),
    ExportFormat("png-instances", "PNG binary masks (one per instance)", "folder",
                 lambda out, d, _seg: write_binary_masks(out, d.images, d.instances), by_image=True),
)}


def import_format(name: str, where: Path) -> ImportFormat:
    """The import format ``name``; DatasetError naming ``where`` when there is none."""
    try:
        return IMPORT_FORMATS[name]
    except KeyError:
        raise DatasetError(where, f"import format must be one of {', '.join(IMPORT_FORMATS)}, not {name!r}") from None


def export_format(name: str, where: Path) -> ExportFormat:
    """The export format ``name``; DatasetError naming ``where`` when there is none."""
    try:
        return EXPORT_FORMATS[name]
    except KeyError:
        raise DatasetError(where, f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {name!r}") from None


def default_export_format(kind: str) -> str:
    """The export format matching what a project was imported from (its ``kind``)."""
    return kind if kind in EXPORT_FORMATS else "png-labels" if kind.startswith("png") else "coco"
