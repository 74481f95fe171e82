"""COCO instances JSON and COCO results (predictions): import.

Import (``load_coco``, ``load_coco_results``) parses the file once (``app.core.formats.json_polygons``: the
standard library's scanner, keeping the text of each polygon list) and reads masks as ``COCO.annToRLE``
does: uncompressed RLE through ``frPyObjects``, compressed RLE kept as is, and polygons kept as the file's
own text, rasterised by ``frPyObjects`` + ``merge`` the first time the instance's mask is read (their
coordinates are checked at import). A problem that stops the whole file (not JSON, empty, no ``images`` list, ...)
raises ``DatasetError`` before anything is returned; a problem with one record is put in the
``ImportReport`` and that record (or one polygon part) is skipped.

Round trips: keys we do not model are kept in ``extra`` on every record (and top-level keys other than
images/annotations/categories in ``Dataset.extra``) and written back untouched. A modelled optional field
with an unexpected type (``"supercategory": null``) stays in ``extra`` verbatim too. While an instance's
mask is unedited its ``original_segmentation`` keeps the file's own polygons (or uncompressed RLE), ``area``
and ``bbox``, which export writes back verbatim, so an unedited dataset exports to the same annotations;
once edited, area and bbox are the mask's (pixel count, tight box). Export: ``app.core.formats.coco_export``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from itertools import chain
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pycocotools import mask as mask_utils

from app.core.errors import DatasetError, read_input
from app.core.gc_pause import paused_gc
from app.core.images import check_image_files
from app.core.formats.json_polygons import loads_keeping_polygon_text
from app.core.records import (
    Category,
    ChangeKind,
    Dataset,
    ImageRecord,
    Instance,
    Provenance,
    ReviewStatus,
    SegmentationFormat,
    SourcePolygons,
)
from app.core.report import ImportReport
from app.core.signals import check_stop
from app.core.formats.polygons import coordinate_limit
from app.core.formats.rle_check import MAX_PIXELS, rle_pixel_totals

log = logging.getLogger(__name__)


_IMAGE_KEYS = frozenset({"id", "file_name", "width", "height"})
LVIS_IMAGE_LISTS = ("neg_category_ids", "not_exhaustive_category_ids")
CATEGORY_STRINGS = {"supercategory": "supercategory", "frequency": "frequency", "synset": "synset", "def": "definition"}
_ANNOTATION_KEYS = frozenset({"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", "score"})
_ANNOTATION_KEYS_BUT_SCORE = _ANNOTATION_KEYS - {"score"}
_NUMBER_TYPES = frozenset({int, float})
_CROWD_TYPES = frozenset({int, bool})


# --------------------------------------------------------------------------------------------- import
def load_coco(
    path: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    check_images: bool = False,
    kind: str | None = None,
) -> tuple[Dataset, ImportReport]:
    """Read a COCO (or LVIS) instances file: polygons, compressed and uncompressed RLE, crowd regions.

    ``kind`` is "coco" or "lvis"; by default "lvis" when the file carries LVIS fields (category
    ``frequency`` or image ``neg_category_ids``). With ``check_images`` every image file is looked up
    under ``images_dir`` (default: the annotation file's folder) and its header checked against the
    record's size; problems are reported, the records kept.
    """
    path = Path(path)
    with paused_gc():
        data, polygon_texts = read_json_keeping_polygons(path, "annotations")
        if not isinstance(data, dict):
            hint = " (a list is a results file: import it as predictions)" if isinstance(data, list) else ""
            raise DatasetError(path, f"top level must be a JSON object with images, annotations and categories{hint}")
        images_raw, annotations_raw, categories_raw = (_top_list(data, k, path) for k in ("images", "annotations", "categories"))
        report = ImportReport(str(path))
        images = _parse_images(images_raw, report)
        categories = _parse_categories(categories_raw, report)
        instances = _parse_annotations(annotations_raw, images, categories, report, results=False,
                                       polygon_texts=polygon_texts)
    extra = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    dataset = Dataset(images, categories, instances, extra, kind or ("lvis" if _looks_like_lvis(data) else "coco"))
    _finish(dataset, report, path, images_dir, check_images)
    return dataset, report


def load_coco_results(
    path: str | os.PathLike[str],
    images_file: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    check_images: bool = False,
) -> tuple[Dataset, ImportReport]:
    """Read COCO results-format predictions (how a model's coarse masks arrive).

    ``path`` holds a JSON list of ``{image_id, category_id, segmentation, score[, bbox]}``;
    ``images_file`` is a COCO or LVIS file giving the images and categories they refer to (its
    annotations, if any, are not read). Each prediction gets a fresh instance id (1, 2, ... in file order)
    and keeps its score; an ``id`` in the predictions is not kept. The dataset's ``kind`` is "results".
    """
    path, images_file = Path(path), Path(images_file)
    with paused_gc():
        predictions, polygon_texts = read_json_keeping_polygons(path, None)
        if not isinstance(predictions, list):
            raise DatasetError(path, "results must be a JSON list of predictions {image_id, category_id, segmentation, score}")
        meta = read_json(images_file)
        if not isinstance(meta, dict):
            raise DatasetError(images_file, "top level must be a JSON object with images and categories")
        images_raw, categories_raw = _top_list(meta, "images", images_file), _top_list(meta, "categories", images_file)
        report = ImportReport(str(path))
        images = _parse_images(images_raw, report, file=str(images_file))
        categories = _parse_categories(categories_raw, report, file=str(images_file))
        instances = _parse_annotations(predictions, images, categories, report, results=True,
                                       polygon_texts=polygon_texts)
    extra = {k: v for k, v in meta.items() if k not in ("images", "annotations", "categories")}
    dataset = Dataset(images, categories, instances, extra, "results")
    _finish(dataset, report, images_file, images_dir, check_images)
    return dataset, report


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; anything that stops it (missing, empty, not JSON, not UTF-8) is a DatasetError."""
    return _parse_json(path, json.loads, read_input(path))


def read_json_keeping_polygons(path: str | os.PathLike[str], list_key: str | None) -> tuple[Any, list[str | None] | None]:
    """``read_json`` plus the polygon text of each record of ``data[list_key]`` (see ``app.core.formats.json_polygons``).

    The text may be UTF-8 (with or without a byte-order mark), UTF-16 or UTF-32, told apart as JSON
    specifies (RFC 8259 / ``json.detect_encoding``)."""
    data = read_input(path)
    encoding = json.detect_encoding(data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        name = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        raise DatasetError(path, f"not {name} text, so not a JSON file") from None
    return _parse_json(path, lambda t: loads_keeping_polygon_text(t, list_key), text)


def _parse_json(path: str | os.PathLike[str], parse: Callable[[Any], Any], data: bytes | str) -> Any:
    try:
        return parse(data)
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError:
        raise DatasetError(path, "not UTF-8 text, so not a JSON file") from None
    except RecursionError:
        raise DatasetError(path, "not usable JSON: nested too deeply") from None
    except ValueError as e:
        raise DatasetError(path, f"not valid JSON: {e}") from None


def _top_list(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    if key not in data:
        raise DatasetError(path, f"missing top-level key {key!r}")
    if not isinstance(data[key], list):
        raise DatasetError(path, f"top-level {key!r} must be a list, not {_type_name(data[key])}")
    return data[key]


def _finish(dataset: Dataset, report: ImportReport, path: Path, images_dir: Any, check_images: bool) -> None:
    if check_images:
        check_image_files(dataset.images.values(), images_dir if images_dir is not None else path.parent, report)
    report.counts.update(images=len(dataset.images), categories=len(dataset.categories), instances=len(dataset.instances))
    log.info("%s", report.summary(max_problems=0))


def _looks_like_lvis(data: dict[str, Any]) -> bool:
    first_cat = next(iter(data["categories"]), None)
    first_img = next(iter(data["images"]), None)
    return (isinstance(first_cat, dict) and isinstance(first_cat.get("frequency"), str)) or (
        isinstance(first_img, dict) and isinstance(first_img.get("neg_category_ids"), list)
    )


def _parse_images(items: list[Any], report: ImportReport, file: str | None = None) -> dict[int, ImageRecord]:
    images: dict[int, ImageRecord] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            report.add(f"not a JSON object but {_type_name(item)}", record=f"images[{index}]", file=file)
            continue
        image_id = item.get("id")
        if not _is_id(image_id):
            report.add(f"'id' must be a 64-bit integer, not {_short(image_id)}", record=f"images[{index}]", file=file)
            continue
        record = f"image {image_id}"
        if image_id in images:
            report.add("duplicate image id; the first one is kept", record=record, file=file)
            continue
        width, height = item.get("width"), item.get("height")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0 and width * height <= MAX_PIXELS):
            report.add(f"width {_short(width)} and height {_short(height)} are not a valid image size", record=record, file=file)
            continue
        file_name = item.get("file_name")
        if not isinstance(file_name, str):
            file_name = name_from_url(item.get("coco_url"))
            if file_name is None:
                report.add("no 'file_name' (and no 'coco_url' to take it from)", record=record, file=file)
                continue
        extra = {k: v for k, v in item.items() if k not in _IMAGE_KEYS}
        lists = [extra.pop(key) if _is_int_list(extra.get(key)) else None for key in LVIS_IMAGE_LISTS]
        images[image_id] = ImageRecord(image_id, file_name, width, height, lists[0], lists[1], extra)
    return images


def name_from_url(url: Any) -> str | None:
    """LVIS v1 images have no file_name: take ``val2017/000000266409.jpg`` from the coco_url."""
    if not isinstance(url, str) or "/" not in url.rstrip("/"):
        return None
    return "/".join(url.rstrip("/").split("/")[-2:])


def _parse_categories(items: list[Any], report: ImportReport, file: str | None = None) -> dict[int, Category]:
    categories: dict[int, Category] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            report.add(f"not a JSON object but {_type_name(item)}", record=f"categories[{index}]", file=file)
            continue
        cat_id = item.get("id")
        if not _is_id(cat_id):
            report.add(f"'id' must be a 64-bit integer, not {_short(cat_id)}", record=f"categories[{index}]", file=file)
            continue
        record = f"category {cat_id}"
        if cat_id in categories:
            report.add("duplicate category id; the first one is kept", record=record, file=file)
            continue
        name = item.get("name")
        if not isinstance(name, str):
            report.add(f"'name' must be a string, not {_type_name(name)}", record=record, file=file)
            continue
        extra = {k: v for k, v in item.items() if k not in ("id", "name")}
        fields = {attr: extra.pop(key) for key, attr in CATEGORY_STRINGS.items() if isinstance(extra.get(key), str)}
        synonyms = extra.get("synonyms")
        if isinstance(synonyms, list) and all(isinstance(s, str) for s in synonyms):
            fields["synonyms"] = extra.pop("synonyms")
        categories[cat_id] = Category(cat_id, name, extra=extra, **fields)
    return categories


class _AnnotationParser:
    """One pass over the annotations, then polygon coordinates and compressed RLE checked in bulk.

    The per-annotation pass only checks structure (cheap type and length tests); coordinates are converted
    and checked once per image. Polygons are not rasterised here: an instance keeps them (as the file's
    own text where ``polygon_texts`` has it) and rasterises them the first time its mask is read.
    """

    def __init__(self, images: dict[int, ImageRecord], categories: dict[int, Category], report: ImportReport,
                 results: bool, polygon_texts: list[str | None] | None):
        self.images, self.categories, self.report, self.results = images, categories, report, results
        self.polygon_texts = polygon_texts
        self.instances: list[Instance] = []
        self.file_index: list[int] = []
        self.polygons: dict[int, list[tuple[int, list[Any]]]] = {}
        self.compressed: list[int] = []
        self.dropped: set[int] = set()
        self.provenance = Provenance(ChangeKind.IMPORTED, None, None, None, time.time())

    def run(self, items: list[Any]) -> list[Instance]:
        seen: set[int] = set()
        for index, item in enumerate(items):
            if not index & 4095:
                check_stop()
            self._one(index, item, seen)
        self._check_polygons()
        self._check_compressed()
        if self.dropped:
            return [inst for k, inst in enumerate(self.instances) if k not in self.dropped]
        return self.instances

    def _record(self, k: int) -> str:
        """The name of instance ``k``'s record, for problems found after the first pass."""
        return self._name(self.file_index[k], self.instances[k].id)

    def _name(self, index: int, ann_id: Any) -> str:
        if self.results:
            return f"predictions[{index}]"
        return f"annotation {ann_id}" if _is_id(ann_id) else f"annotations[{index}]"

    def _one(self, index: int, ann: Any, seen: set[int]) -> None:
        """Check one annotation's structure and record it; names are only built when there is a problem."""
        add = self.report.add
        if type(ann) is not dict:
            add(f"not a JSON object but {_type_name(ann)}", record=self._name(index, None))
            return
        if self.results:
            ann_id = len(self.instances) + 1
        else:
            ann_id = ann.get("id")
            if not _is_id(ann_id):
                add(f"'id' must be a 64-bit integer, not {_short(ann_id)}", record=self._name(index, None))
                return
            if ann_id in seen:
                add("duplicate annotation id; the first one is kept", record=self._name(index, ann_id))
                return
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        image = self.images.get(image_id) if type(image_id) is int else None
        if image is None or type(cat_id) is not int or cat_id not in self.categories:
            self._reference_problem(index, ann_id, image_id, cat_id)
            return
        seg = ann.get("segmentation")
        height, width = image.height, image.width
        original: dict[str, Any] = {}
        parts: list[Any] | None = None
        if type(seg) is list:
            parts = self._polygon_parts(seg, index, ann_id)
            if parts is None:
                return
            fmt = SegmentationFormat.POLYGON
            if parts:
                rle: dict[str, Any] = {"size": [height, width]}  # rasterised on first use
                texts = self.polygon_texts
                source = texts[index] if texts is not None and parts is seg else None
                original["segmentation"] = parts if source is None else SourcePolygons(source)
            else:
                add("empty segmentation", record=self._name(index, ann_id), action="kept as an empty mask")
                rle = _empty_rle(height, width)
        elif type(seg) is dict and type(seg.get("counts")) is str and seg.get("size") == [height, width]:
            rle, fmt = {"size": [height, width], "counts": seg["counts"]}, SegmentationFormat.RLE
        else:
            parsed = self._rle(seg, image, self._name(index, ann_id))
            if parsed is None:
                return
            rle, fmt = parsed
            original["segmentation"] = seg  # uncompressed counts (a crowd region): written back as they were
        area, bbox = ann.get("area"), ann.get("bbox")
        if area is not None:
            if type(area) in _NUMBER_TYPES and 0 <= area <= height * width:  # NaN fails both comparisons
                original["area"] = area
            else:
                add(_area_problem(area, height * width), record=self._name(index, ann_id),
                    action="recomputed from the mask")
        if bbox is not None:
            limit = 4 * max(height, width)
            if type(bbox) is list and len(bbox) == 4 and type(bbox[0]) in _NUMBER_TYPES and type(bbox[1]) in _NUMBER_TYPES \
                    and type(bbox[2]) in _NUMBER_TYPES and type(bbox[3]) in _NUMBER_TYPES \
                    and -limit <= bbox[0] <= limit and -limit <= bbox[1] <= limit \
                    and 0 <= bbox[2] <= limit and 0 <= bbox[3] <= limit:
                original["bbox"] = bbox
            else:
                add(_bbox_problem(bbox, image), record=self._name(index, ann_id), action="recomputed from the mask")
        iscrowd = ann.get("iscrowd", 0)
        if type(iscrowd) not in _CROWD_TYPES or iscrowd not in (0, 1):
            add(f"'iscrowd' is {_short(iscrowd)}, not 0 or 1", record=self._name(index, ann_id), action="kept as iscrowd 0")
            iscrowd = 0
        score = ann.get("score")
        known = _ANNOTATION_KEYS
        if score is not None or self.results:
            if not _is_finite_number(score):
                if self.results:
                    problem = "no 'score'" if score is None else f"'score' is {_short(score)}, not a number"
                    add(problem, record=self._name(index, ann_id), action="kept without a score")
                else:
                    known = _ANNOTATION_KEYS_BUT_SCORE  # an odd score in ground truth is kept as it was
                score = None
        elif "score" in ann:
            known = _ANNOTATION_KEYS_BUT_SCORE
        extra = {} if ann.keys() <= known else {k: v for k, v in ann.items() if k not in known}
        k = len(self.instances)
        self.instances.append(Instance(
            ann_id, image_id, cat_id, rle, score, int(iscrowd), ReviewStatus.UNREVIEWED,
            self.provenance, extra, fmt, original or None,
        ))
        self.file_index.append(index)
        seen.add(ann_id)
        if parts:
            self.polygons.setdefault(image_id, []).append((k, parts))
        elif fmt is SegmentationFormat.RLE:
            self.compressed.append(k)

    def _reference_problem(self, index: int, ann_id: Any, image_id: Any, cat_id: Any) -> None:
        record = self._name(index, ann_id)
        for key, value in (("image_id", image_id), ("category_id", cat_id)):
            if not _is_id(value):
                self.report.add(f"'{key}' must be a 64-bit integer, not {_short(value)}", record=record)
                return
        if image_id not in self.images:
            self.report.add(f"image {image_id} is not among the file's (valid) images", record=record)
        else:
            self.report.add(f"category {cat_id} is not among the file's (valid) categories", record=record)

    def _rle(self, seg: Any, image: ImageRecord, record: str) -> tuple[dict[str, Any], SegmentationFormat] | None:
        """A dict segmentation as compressed RLE of the image's size (compressed strings are checked later)."""
        height, width = image.height, image.width
        if type(seg) is not dict:
            problem = "no 'segmentation'" if seg is None else f"'segmentation' is {_type_name(seg)}, neither polygons nor RLE"
            self.report.add(problem, record=record)
            return None
        size, counts = seg.get("size"), seg.get("counts")
        if counts is None or size is None:
            self.report.add("RLE segmentation needs 'size' and 'counts'", record=record)
            return None
        if size != [height, width]:
            self.report.add(f"RLE size {_short(size)} disagrees with image {image.id}'s [height, width] {[height, width]}",
                            record=record)
            return None
        if type(counts) is not list:
            self.report.add(f"RLE 'counts' is {_type_name(counts)}, neither a string nor a list", record=record)
            return None
        runs = _as_int_array(counts)
        if runs is None or (runs.size and (runs.min() < 0 or runs.max() > height * width)):
            self.report.add("uncompressed RLE 'counts' must be non-negative integers", record=record)
            return None
        if int(runs.sum()) != height * width:
            self.report.add(
                f"RLE counts cover {int(runs.sum())} pixels but the image has {height}x{width} = {height * width}",
                record=record,
            )
            return None
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
        rle["counts"] = rle["counts"].decode("ascii")
        return rle, SegmentationFormat.UNCOMPRESSED_RLE

    def _polygon_parts(self, seg: list[Any], index: int, ann_id: Any) -> list[Any] | None:
        """The usable polygon parts (``seg`` itself when all are), or None to skip the annotation.

        Only the shape is checked here (lists of at least 6, an even count); the coordinates are checked
        per image in ``_rasterise_polygons``. A bad part of several is dropped and reported.
        """
        for part in seg:
            if type(part) is not list or len(part) < 6 or len(part) & 1:
                break
        else:
            return seg
        record = self._name(index, ann_id)
        if type(seg[0]) in _NUMBER_TYPES:
            self.report.add("'segmentation' is a flat list of numbers; it must be a list of polygons", record=record)
            return None
        kept = []
        for k, part in enumerate(seg):
            name = f"polygon part {k + 1} of {len(seg)}" if len(seg) > 1 else "polygon"
            if type(part) is not list:
                problem = f"{name} is {_type_name(part)}, not a list of coordinates"
            elif len(part) < 6:
                points = len(part) // 2
                problem = f"{name} has {points} point{'' if points == 1 else 's'} (needs at least 3)"
            elif len(part) & 1:
                problem = f"{name} has an odd number of coordinates ({len(part)})"
            else:
                kept.append(part)
                continue
            self.report.add(problem, record=record, action="part dropped" if len(seg) > 1 else "skipped")
        if not kept and len(seg) > 1:
            self.report.add("no usable polygon part", record=record)
        return kept or None

    def _check_polygons(self) -> None:
        """Drop annotations whose coordinates are not numbers, not finite, or far outside the image (for
        those pycocotools would allocate the whole span); one conversion per image when all are fine."""
        for image_id, entries in self.polygons.items():
            image = self.images[image_id]
            limit = coordinate_limit(image.height, image.width)
            if _coordinates_ok([p for _, parts in entries for p in parts], limit):
                continue
            for k, parts in entries:
                if not _coordinates_ok(parts, limit):
                    self.report.add(
                        f"polygon coordinates are not all numbers within {limit:g} of the "
                        f"{image.width}x{image.height} image", record=self._record(k),
                    )
                    self.dropped.add(k)

    def _check_compressed(self) -> None:
        if not self.compressed:
            return
        totals = rle_pixel_totals([self.instances[k].rle["counts"] for k in self.compressed])
        for k, total in zip(self.compressed, totals.tolist()):
            height, width = self.instances[k].size
            if total != height * width:
                problem = "RLE 'counts' is not a valid compressed RLE string" if total < 0 else (
                    f"RLE counts cover {total} pixels but the image has {height}x{width} = {height * width}"
                )
                self.report.add(problem, record=self._record(k))
                self.dropped.add(k)


def _area_problem(area: Any, pixels: int) -> str:
    """Why a file's ``area`` cannot be kept (it is a number of pixels of the image: SQLite would refuse NaN,
    and COCO's size classes would put an infinite or negative one in the wrong class)."""
    if type(area) not in _NUMBER_TYPES:
        return f"'area' is {_type_name(area)}, not a number"
    if not _is_finite_number(area):
        return f"'area' is {_short(area)}, not a finite number"
    if area < 0:
        return f"'area' is {_short(area)}, negative"
    return f"'area' is {_short(area)}, more than the image's {pixels} pixels"


def _bbox_problem(bbox: Any, image: ImageRecord) -> str:
    """Why a file's ``bbox`` cannot be kept: not 4 finite numbers, a negative size, or far off the image
    (beyond 4 times its larger side, the polygon coordinates' limit)."""
    if not (type(bbox) is list and len(bbox) == 4 and all(type(v) in _NUMBER_TYPES for v in bbox)):
        return "'bbox' is not 4 numbers"
    if not all(_is_finite_number(v) for v in bbox):
        return f"'bbox' {_short(bbox)} is not 4 finite numbers"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"'bbox' {_short(bbox)} has a negative width or height"
    return f"'bbox' {_short(bbox)} lies far outside the {image.width}x{image.height} image"


def _coordinates_ok(parts: list[Any], limit: float) -> bool:
    try:
        coords = np.fromiter(chain.from_iterable(parts), np.float64, sum(map(len, parts)))
    except (TypeError, ValueError, OverflowError):
        return False
    # NaN (a None reads as NaN) fails both comparisons and infinity the limit: no separate finiteness pass
    return bool(coords.size == 0 or (coords.min() >= -limit and coords.max() <= limit))


def _parse_annotations(
    items: list[Any], images: dict[int, ImageRecord], categories: dict[int, Category], report: ImportReport, *,
    results: bool, polygon_texts: list[str | None] | None = None,
) -> list[Instance]:
    return _AnnotationParser(images, categories, report, results, polygon_texts).run(items)


def _empty_rle(height: int, width: int) -> dict[str, Any]:
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_id(value: Any) -> bool:
    """An integer id that fits 64 bits (what numpy, SQLite and every COCO tool can hold)."""
    return type(value) is int and -(2**63) <= value < 2**63


def _is_finite_number(value: Any) -> bool:
    if type(value) not in _NUMBER_TYPES:
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        return False


def _short(value: Any) -> str:
    """A value for a message, as JSON, cut short so one odd record cannot flood the report."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is int for v in value)


def _as_int_array(values: list[Any]) -> np.ndarray | None:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        return None
    return arr if arr.ndim == 1 and (arr.dtype.kind in "iu" or arr.size == 0) else None


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null")
