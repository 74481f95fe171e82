"""COCO instances JSON and COCO results (predictions): import and streaming export.

Import (``load_coco``, ``load_coco_results``) parses the file once (``app.core.json_polygons``: the
standard library's scanner, keeping the text of each polygon list) and reads masks as ``COCO.annToRLE``
does: uncompressed RLE through ``frPyObjects``, compressed RLE kept as is, and polygons kept as the file's
own text, rasterised by ``frPyObjects`` + ``merge`` the first time the instance's mask is read (their
coordinates are checked at import). A problem that stops the whole file (not JSON, empty, no ``images`` list, ...)
raises ``DatasetError`` before anything is returned; a problem with one record is put in the
``ImportReport`` and that record (or one polygon part) is skipped.

Round trips: keys we do not model are kept in ``extra`` on every record (and top-level keys other than
images/annotations/categories in ``Dataset.extra``) and written back untouched. A modelled optional field
with an unexpected type (``"supercategory": null``) stays in ``extra`` verbatim too. While an instance's
mask is unedited its ``original_segmentation`` keeps the file's own polygons, ``area`` and ``bbox``, which
export writes back verbatim, so an unedited dataset exports to the same annotations; once edited, area and
bbox are the mask's (pixel count, tight box).

Export (``write_coco``) streams: it takes iterables of images, categories and instances (the project store
hands them over from SQLite) and writes one record per line through ``atomic_open``. Segmentations:
- ``segmentation="source"`` (default): an unedited instance as its file had it (polygons as the very same
  text, RLE as compressed RLE: a crowd region's uncompressed counts come back compressed, the same pixels),
  every mask made or changed here as compressed RLE. Nothing is approximated and an unedited dataset
  exports to its own annotations (docs/decisions/0011). Results files are always RLE (see
  ``write_coco_results``).
- ``segmentation="rle"``: compressed RLE for every instance.
- ``segmentation="polygon"``: an unedited instance imported as polygons gets its original polygons back
  exactly. Any other instance is vectorised (``app.core.polygons.mask_to_polygons``: pixel-edge outlines,
  holes as keyhole cuts, one polygon per part) and the polygons are rasterised again and compared with the
  mask. If they differ (only possible with ``tolerance > 0``) the instance is written as RLE and the report
  says by how many pixels the polygons would have been wrong (``on_inexact="rle"``, the default), or the
  polygons are written and the report warns with the pixel difference (``on_inexact="polygon"``). An empty
  mask is always written as RLE: COCO has no empty polygon.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, Callable, Collection, Iterable, Iterator, Literal, Mapping

import numpy as np
from pycocotools import mask as mask_utils

from app.core.atomic import atomic_open
from app.core.errors import DatasetError, read_input
from app.core.gc_pause import paused_gc
from app.core.images import check_image_files
from app.core.json_polygons import loads_keeping_polygon_text
from app.core.model import (
    Category,
    ChangeKind,
    Dataset,
    ImageRecord,
    Instance,
    Provenance,
    ReviewStatus,
    SegmentationFormat,
    SourcePolygons,
    rle_areas,
)
from app.core.polygons import mask_to_polygons, pixel_difference
from app.core.report import ExportReport, ImportReport

log = logging.getLogger(__name__)

SegmentationMode = Literal["source", "rle", "polygon"]
SEGMENTATION_MODES: tuple[SegmentationMode, ...] = ("source", "rle", "polygon")
InexactPolicy = Literal["rle", "polygon"]

_IMAGE_KEYS = frozenset({"id", "file_name", "width", "height"})
_LVIS_IMAGE_LISTS = ("neg_category_ids", "not_exhaustive_category_ids")
_CATEGORY_STRINGS = {"supercategory": "supercategory", "frequency": "frequency", "synset": "synset", "def": "definition"}
_ANNOTATION_KEYS = frozenset({"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", "score"})
_ANNOTATION_KEYS_BUT_SCORE = _ANNOTATION_KEYS - {"score"}
_NUMBER_TYPES = frozenset({int, float})
_CROWD_TYPES = frozenset({int, bool})
_MAX_PIXELS = 2**32 - 1  # COCO RLE run lengths are 32-bit
_CHUNK = 4096
_RLE_CHUNK = 1 << 17  # characters per rle_pixel_totals step (small arrays are reused, big ones page-fault)


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
    """``read_json`` plus the polygon text of each record of ``data[list_key]`` (see ``app.core.json_polygons``)."""
    data = read_input(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # UTF-16/32 or not text: json.loads tells which
        return _parse_json(path, json.loads, data), None
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
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0 and width * height <= _MAX_PIXELS):
            report.add(f"width {_short(width)} and height {_short(height)} are not a valid image size", record=record, file=file)
            continue
        file_name = item.get("file_name")
        if not isinstance(file_name, str):
            file_name = _name_from_url(item.get("coco_url"))
            if file_name is None:
                report.add("no 'file_name' (and no 'coco_url' to take it from)", record=record, file=file)
                continue
        extra = {k: v for k, v in item.items() if k not in _IMAGE_KEYS}
        lists = [extra.pop(key) if _is_int_list(extra.get(key)) else None for key in _LVIS_IMAGE_LISTS]
        images[image_id] = ImageRecord(image_id, file_name, width, height, lists[0], lists[1], extra)
    return images


def _name_from_url(url: Any) -> str | None:
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
        fields = {attr: extra.pop(key) for key, attr in _CATEGORY_STRINGS.items() if isinstance(extra.get(key), str)}
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
        area, bbox = ann.get("area"), ann.get("bbox")
        if area is not None:
            if type(area) in _NUMBER_TYPES:
                original["area"] = area
            else:
                add(f"'area' is {_type_name(area)}, not a number", record=self._name(index, ann_id),
                    action="recomputed from the mask")
        if bbox is not None:
            if type(bbox) is list and len(bbox) == 4 and type(bbox[0]) in _NUMBER_TYPES and type(bbox[1]) in _NUMBER_TYPES \
                    and type(bbox[2]) in _NUMBER_TYPES and type(bbox[3]) in _NUMBER_TYPES:
                original["bbox"] = bbox
            else:
                add("'bbox' is not 4 numbers", record=self._name(index, ann_id), action="recomputed from the mask")
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
            limit = 4.0 * max(image.height, image.width)
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


def rle_pixel_totals(counts: list[str]) -> np.ndarray:
    """How many pixels each compressed RLE string covers (the sum of its runs); -1 where malformed.

    pycocotools decodes a string without checking that its runs cover the image: too long fails, too
    short silently leaves uninitialised memory in the mask. So imports check totals first, vectorised over
    all strings (a Python loop over 245k strings would double the import time), about a million
    characters at a time so the working arrays stay small and reused. The format is pycocotools'
    ``rleFrString``: per character 5 value bits (offset 48), 0x20 = more characters follow, 0x10 in the
    last character = negative, and from the fourth run on each value is a delta to the run two before.
    """
    totals = np.full(len(counts), -1, dtype=np.int64)
    usable = [i for i, s in enumerate(counts) if s and s.isascii()]
    start, size = 0, 0
    for end, i in enumerate(usable, 1):
        size += len(counts[i])
        if size >= _RLE_CHUNK or end == len(usable):
            chunk = usable[start:end]
            totals[chunk] = _chunk_totals([counts[i] for i in chunk])
            start, size = end, 0
    return totals


def _chunk_totals(strings: list[str]) -> np.ndarray:
    """``rle_pixel_totals`` of non-empty ASCII strings."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    last_char = np.cumsum(lengths) - 1
    chars = np.frombuffer("".join(strings).encode("ascii"), np.uint8) - np.uint8(48)
    bad = np.zeros(len(strings), bool)
    invalid = np.flatnonzero(chars > 63)
    if invalid.size:
        bad[np.searchsorted(last_char, invalid)] = True
        chars[invalid] = 0
    ends = chars < 32
    unterminated = ~ends[last_char]
    if unterminated.any():
        bad |= unterminated
        ends[last_char] = True  # so no run carries on into the next string
    end_pos = np.flatnonzero(ends)
    values = ((chars[end_pos] << 3).view(np.int8) >> 3).astype(np.int64)  # last character: 5 bits, signed
    # Horner, from each run's last character back to its first. The buffer ends with a run's end, so the
    # index -1 reached from the very first run reads an end character and stops there too.
    longer = np.flatnonzero(~ends[end_pos - 1])
    back = 1
    while longer.size and back < 7:
        at = end_pos[longer] - back
        values[longer] = (values[longer] << 5) + (chars[at] & 31)
        longer = longer[~ends[at - 1]]
        back += 1
    if longer.size:  # 8 or more characters: far beyond a 32-bit run
        bad[np.searchsorted(last_char, end_pos[longer])] = True
    last_token = np.searchsorted(end_pos, last_char)
    per_string = np.diff(last_token, prepend=-1)
    first_token = last_token - per_string + 1
    step = np.ones(len(values), np.int64)
    step[first_token] = 1 - np.concatenate(([1], per_string[:-1]))
    j = np.cumsum(step)  # index of each run within its string
    odd = (j & 1).astype(bool)
    runs = values.copy()
    for parity in (odd, ~odd & (j >= 2)):  # runs 1, 3, 5, ... and 2, 4, 6, ... are deltas to the one before
        summed = np.cumsum(np.where(parity, values, 0))
        base = np.concatenate(([0], summed))[first_token]
        np.copyto(runs, summed - np.repeat(base, per_string), where=parity)
    out_of_range = np.flatnonzero((runs < 0) | (runs > _MAX_PIXELS))
    if out_of_range.size:
        bad[np.searchsorted(last_token, out_of_range)] = True
    return np.where(bad, -1, np.add.reduceat(runs, first_token))


# --------------------------------------------------------------------------------------------- export
def save_coco(dataset: Dataset, path: str | os.PathLike[str], **options: Any) -> ExportReport:
    """Write a whole in-memory dataset as COCO JSON; ``options`` as for ``write_coco``, whose ``kind``
    defaults to the dataset's own ("lvis" for an LVIS file, else "coco")."""
    options.setdefault("kind", "lvis" if dataset.kind == "lvis" else "coco")
    return write_coco(path, dataset.extra, dataset.images.values(), dataset.categories.values(), dataset.instances, **options)


def write_coco(
    path: str | os.PathLike[str],
    meta: Mapping[str, Any],
    images: Iterable[ImageRecord],
    categories: Iterable[Category],
    instances: Iterable[Instance],
    *,
    kind: str = "coco",
    segmentation: SegmentationMode = "source",
    on_inexact: InexactPolicy = "rle",
    tolerance: float = 0.0,
    statuses: Collection[ReviewStatus] | None = None,
) -> ExportReport:
    """Stream a COCO (``kind="coco"``) or LVIS (``kind="lvis"``) instances file, atomically.

    ``meta`` holds the top-level keys other than images/annotations/categories (``info``, ``licenses``).
    ``statuses`` keeps only instances in those review states (``{ReviewStatus.ACCEPTED}`` for "accepted
    only"); None writes all. Segmentation options: see the module docstring. LVIS differences: images
    always carry ``neg_category_ids`` / ``not_exhaustive_category_ids`` (``[]`` when unknown), a
    ``file_name`` taken from ``coco_url`` on import is not written back, and ``iscrowd`` is written only
    when it is 1 (LVIS has no crowd annotations).
    """
    _check_options(segmentation, on_inexact)
    report = ExportReport(str(path))
    encoder = _Encoder(report, segmentation, on_inexact, tolerance, statuses)
    lvis = kind == "lvis"

    def body(f: IO[str]) -> None:
        f.write("{")
        for key, value in meta.items():
            if key not in ("images", "annotations", "categories"):
                f.write(f"{_dumps(key)}:{_dumps(value)},\n")
        _write_list(f, "images", (_image_json(img, lvis) for img in images), report)
        f.write(",\n")
        _write_list(f, "annotations", encoder.annotations(instances, lvis), report)
        f.write(",\n")
        _write_list(f, "categories", (_category_json(cat) for cat in categories), report)
        f.write("}\n")

    _write_file(path, body)
    return report


def save_coco_results(dataset: Dataset, path: str | os.PathLike[str], **options: Any) -> ExportReport:
    """Write a dataset's instances as a COCO results list; ``options`` as for ``write_coco_results``."""
    return write_coco_results(path, dataset.instances, **options)


def write_coco_results(
    path: str | os.PathLike[str],
    instances: Iterable[Instance],
    *,
    segmentation: SegmentationMode = "source",
    on_inexact: InexactPolicy = "rle",
    tolerance: float = 0.0,
    statuses: Collection[ReviewStatus] | None = None,
) -> ExportReport:
    """Stream a COCO results list ``[{image_id, category_id, segmentation, score, bbox}, ...]``, atomically.

    Instance ids are not written (the results format has none); an instance without a score gets 1.0 and
    is counted in the report. Unknown keys are written back. ``segmentation="source"`` writes RLE here:
    pycocotools' ``loadRes`` (what evaluates results files) reads result segmentations as RLE only.
    """
    _check_options(segmentation, on_inexact)
    report = ExportReport(str(path))
    encoder = _Encoder(report, "rle" if segmentation == "source" else segmentation, on_inexact, tolerance, statuses)

    def body(f: IO[str]) -> None:
        f.write("[\n")
        first = True
        for chunk in _chunks(map(_record_json, encoder.results(instances)), 512):
            f.write(("" if first else ",\n") + ",\n".join(chunk))
            first = False
        f.write("\n]\n")

    _write_file(path, body)
    return report


def _check_options(segmentation: str, on_inexact: str) -> None:
    if segmentation not in SEGMENTATION_MODES:
        raise ValueError(f"segmentation must be 'source', 'rle' or 'polygon', not {segmentation!r}")
    if on_inexact not in ("rle", "polygon"):
        raise ValueError(f"on_inexact must be 'rle' or 'polygon', not {on_inexact!r}")


def _write_file(path: str | os.PathLike[str], body: Callable[[IO[str]], None]) -> None:
    try:
        with atomic_open(path, "w") as f:
            body(f)
    except OSError as e:
        raise DatasetError(path, f"cannot write: {e.strerror or e}") from None


def _write_list(f: IO[str], key: str, records: Iterator[dict[str, Any]], report: ExportReport) -> None:
    f.write(f'"{key}":[\n')
    n = 0
    for chunk in _chunks(records, 512):
        f.write((",\n" if n else "") + ",\n".join(map(_record_json, chunk)))
        n += len(chunk)
    f.write("\n]")
    report.counts[key] = n


def _image_json(img: ImageRecord, lvis: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": img.id}
    if not (lvis and img.file_name == _name_from_url(img.extra.get("coco_url"))):
        out["file_name"] = img.file_name
    out["width"], out["height"] = img.width, img.height
    for key, value in zip(_LVIS_IMAGE_LISTS, (img.neg_category_ids, img.not_exhaustive_category_ids)):
        if value is not None or lvis:
            out[key] = value if value is not None else []
    return _with_extra(out, img.extra)


def _category_json(cat: Category) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cat.id, "name": cat.name}
    for key, attr in _CATEGORY_STRINGS.items():
        if getattr(cat, attr) is not None:
            out[key] = getattr(cat, attr)
    if cat.synonyms is not None:
        out["synonyms"] = cat.synonyms
    return _with_extra(out, cat.extra)


class _Encoder:
    """Turns instances into annotation / result records: status filter, segmentation, area and bbox."""

    def __init__(self, report: ExportReport, segmentation: str, on_inexact: str, tolerance: float,
                 statuses: Collection[ReviewStatus] | None):
        self.report, self.segmentation, self.on_inexact, self.tolerance = report, segmentation, on_inexact, tolerance
        self.statuses = None if statuses is None else {ReviewStatus(s) for s in statuses}

    def annotations(self, instances: Iterable[Instance], lvis: bool) -> Iterator[dict[str, Any]]:
        for inst, seg, area, bbox in self._geometry(instances):
            out = {"id": inst.id, "image_id": inst.image_id, "category_id": inst.category_id,
                   "segmentation": seg, "area": area, "bbox": bbox}
            if inst.iscrowd or not lvis:
                out["iscrowd"] = int(inst.iscrowd)
            if inst.score is not None:
                out["score"] = inst.score
            yield _with_extra(out, inst.extra) if inst.extra else out

    def results(self, instances: Iterable[Instance]) -> Iterator[dict[str, Any]]:
        for inst, seg, _, bbox in self._geometry(instances):
            score = inst.score
            if score is None:
                score = 1.0
                self.report.counts["given score 1.0 (had none)"] += 1
            out = {"image_id": inst.image_id, "category_id": inst.category_id, "segmentation": seg,
                   "score": score, "bbox": bbox}
            yield _with_extra(out, inst.extra) if inst.extra else out

    def _geometry(self, instances: Iterable[Instance]) -> Iterator[tuple[Instance, Any, Any, Any]]:
        """Per instance: segmentation, area and bbox; the mask's own area/bbox computed a chunk at a time.

        An instance's RLE is only read where it is written or its area/bbox is needed, so polygons that are
        written back as they came are never rasterised."""
        counts = self.report.counts
        for chunk in _chunks(instances, _CHUNK):
            if self.statuses is not None:
                kept = [inst for inst in chunk if ReviewStatus(inst.status) in self.statuses]
                counts["excluded by status"] += len(chunk) - len(kept)
                chunk = kept
            if not chunk:
                continue
            originals = [inst.original_segmentation or {} for inst in chunk]
            need = [k for k, o in enumerate(originals) if "area" not in o or "bbox" not in o]
            areas: dict[int, int] = {}
            boxes: dict[int, list[float]] = {}
            if need:
                subset = [chunk[k].rle for k in need]
                areas = dict(zip(need, rle_areas(subset)))
                boxes = dict(zip(need, mask_utils.toBbox(subset).tolist()))
            for k, inst in enumerate(chunk):
                original = originals[k]
                seg = self._segmentation(inst, original)
                counts[f"written as {'RLE' if isinstance(seg, dict) else 'polygons'}"] += 1
                source = SegmentationFormat(inst.source_format).value if inst.source_format else "unknown"
                counts[f"source format {source}"] += 1
                yield inst, seg, original.get("area", areas.get(k)), original.get("bbox", boxes.get(k))

    def _segmentation(self, inst: Instance, original: dict[str, Any]) -> Any:
        if self.segmentation != "rle" and "segmentation" in original:
            return original["segmentation"]
        rle = _rle_json(inst.rle)
        if self.segmentation != "polygon":
            return rle
        record = f"annotation {inst.id}"
        mask = mask_utils.decode(rle)
        polygons = mask_to_polygons(mask, self.tolerance)
        if not polygons:
            self.report.add("mask is empty; COCO has no empty polygon", record=record, action="wrote RLE")
            return rle
        diff = pixel_difference(polygons, mask)
        if diff == 0:
            return polygons
        if self.on_inexact == "rle":
            self.report.add(f"polygons would differ from the mask by {diff} pixels", record=record, action="wrote RLE")
            return rle
        self.report.add(f"polygons differ from the mask by {diff} pixels", record=record, action="wrote polygons")
        return polygons


def _rle_json(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _empty_rle(height: int, width: int) -> dict[str, Any]:
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _with_extra(out: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _record_json(record: dict[str, Any]) -> str:
    """A record as one line of JSON; polygons kept as their file's text are written as that text."""
    polygons = record.get("segmentation")
    if not isinstance(polygons, SourcePolygons):
        return _dumps(record)
    items = list(record.items())
    k = next(i for i, (key, _) in enumerate(items) if key == "segmentation")
    head, tail = (_dumps(dict(part))[1:-1] for part in (items[:k], items[k + 1:]))
    return "{" + ",".join(p for p in (head, f'"segmentation":{polygons.text}', tail) if p) + "}"


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
