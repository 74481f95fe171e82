"""LVIS v1 JSON: the COCO layout plus per-category ``frequency``, ``synset``, ``synonyms``, ``def`` (and
``image_count`` / ``instance_count``, kept in ``extra``) and per-image ``neg_category_ids`` /
``not_exhaustive_category_ids``.

Reading and writing are COCO's (``app.core.formats.coco``, ``app.core.formats.coco_export``) with the LVIS conventions switched on:
- LVIS v1 images have no ``file_name``; it is taken from ``coco_url`` as ``val2017/000000266409.jpg`` (as
  detectron2 does) and not written back, so the file round-trips unchanged.
- Images always carry the two category-id lists on export (``[]`` when unknown), which LVIS' evaluation
  needs; annotations carry ``iscrowd`` only when it is 1 (LVIS has none, so unedited files come back as
  they were).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from app.core.formats.coco import load_coco
from app.core.formats.coco_export import write_coco
from app.core.records import Category, Dataset, ImageRecord, Instance
from app.core.report import ExportReport, ImportReport


def load_lvis(
    path: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    check_images: bool = False,
) -> tuple[Dataset, ImportReport]:
    """Read an LVIS v1 file (see ``app.core.formats.coco.load_coco`` for the checks and the report)."""
    return load_coco(path, images_dir=images_dir, check_images=check_images, kind="lvis")


def write_lvis(
    path: str | os.PathLike[str],
    meta: Mapping[str, Any],
    images: Iterable[ImageRecord],
    categories: Iterable[Category],
    instances: Iterable[Instance],
    **options: Any,
) -> ExportReport:
    """Stream an LVIS file, atomically; ``options`` as for ``app.core.formats.coco_export.write_coco``."""
    return write_coco(path, meta, images, categories, instances, kind="lvis", **options)


def save_lvis(dataset: Dataset, path: str | os.PathLike[str], **options: Any) -> ExportReport:
    """Write a whole in-memory dataset as LVIS JSON."""
    return write_lvis(path, dataset.extra, dataset.images.values(), dataset.categories.values(), dataset.instances, **options)
