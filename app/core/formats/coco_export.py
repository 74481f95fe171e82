"""COCO instances JSON and COCO results (predictions): streaming export.

Export (``write_coco``) streams: it takes iterables of images, categories and instances (the project store
hands them over from SQLite) and writes one record per line through ``atomic_open``. Segmentations:
- ``segmentation="source"`` (default): an unedited instance as its file had it (polygons as the very same
  text, compressed or uncompressed RLE as it was), every mask made or changed here as compressed RLE.
  Nothing is approximated and an unedited dataset exports to its own annotations (docs/decisions/0011).
  Results files are always RLE (see ``write_coco_results``).
- ``segmentation="rle"``: compressed RLE for every instance.
- ``segmentation="polygon"``: an unedited instance imported as polygons gets its original polygons back
  exactly. Any other instance is vectorised (``app.core.formats.polygons.mask_to_polygons``: pixel-edge outlines,
  holes as keyhole cuts, one polygon per part) and the polygons are rasterised again and compared with the
  mask. If they differ (only possible with ``tolerance > 0``) the instance is written as RLE and the report
  says by how many pixels the polygons would have been wrong (``on_inexact="rle"``, the default), or the
  polygons are written and the report warns with the pixel difference (``on_inexact="polygon"``). An empty
  mask is always written as RLE: COCO has no empty polygon; so is a crowd region, as COCO writes them.
Results files leave crowd regions out: they are areas the ground truth ignores, not detections.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from itertools import islice
from typing import IO, Any, Callable, Collection, Iterable, Iterator, Literal, Mapping

from pycocotools import mask as mask_utils

from app.core.atomic import atomic_open
from app.core.formats.coco import CATEGORY_STRINGS, LVIS_IMAGE_LISTS, name_from_url
from app.core.errors import DatasetError
from app.core.images import max_image_pixels
from app.core.records import (
    Category, Dataset, ImageRecord, Instance, MaskError, ReviewStatus, RLEError, SegmentationFormat, SourcePolygons,
    check_rle, rle_geometry,
)
from app.core.formats.polygons import mask_to_polygons, pixel_difference
from app.core.report import ExportReport
from app.core.signals import check_stop

CROWD_LEFT_OUT = "crowd regions left out (not detections)"
"""The results report's count of crowd regions it did not write."""
FREQUENCY_GIVEN = "categories given an LVIS frequency from the exported images (they had none)"
"""The LVIS report's count of categories whose frequency group the export worked out."""
SegmentationMode = Literal["source", "rle", "polygon"]
SEGMENTATION_MODES: tuple[SegmentationMode, ...] = ("source", "rle", "polygon")
InexactPolicy = Literal["rle", "polygon"]

_CHUNK = 4096


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
        frequency = encoder.frequency if lvis else None
        _write_list(f, "categories", (_category_json(cat, frequency, report) for cat in categories), report)
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
            check_stop()
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
        check_stop()  # SIGTERM / SIGHUP: the temporary file is removed on the way out
        f.write((",\n" if n else "") + ",\n".join(map(_record_json, chunk)))
        n += len(chunk)
    f.write("\n]")
    report.counts[key] = n


def _image_json(img: ImageRecord, lvis: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": img.id}
    if not (lvis and img.file_name == name_from_url(img.extra.get("coco_url"))):
        out["file_name"] = img.file_name
    out["width"], out["height"] = img.width, img.height
    for key, value in zip(LVIS_IMAGE_LISTS, (img.neg_category_ids, img.not_exhaustive_category_ids)):
        if value is not None or lvis:
            out[key] = value if value is not None else []
    return _with_extra(out, img.extra)


def lvis_frequency(images: int) -> str:
    """LVIS' frequency group of a category seen on ``images`` images: rare (1-10), common (11-100), frequent."""
    return "r" if images <= 10 else "c" if images <= 100 else "f"


def _category_json(cat: Category, frequency: Callable[[int], str] | None = None,
                   report: ExportReport | None = None) -> dict[str, Any]:
    """A category record; with ``frequency`` (an LVIS export) one without a frequency gets it from the export's
    images (LVIS' evaluation groups categories by it and fails without it, e.g. for a COCO project)."""
    out: dict[str, Any] = {"id": cat.id, "name": cat.name}
    for key, attr in CATEGORY_STRINGS.items():
        if getattr(cat, attr) is not None:
            out[key] = getattr(cat, attr)
    if frequency is not None and cat.frequency is None:
        out["frequency"] = frequency(cat.id)
        if report is not None:
            report.counts[FREQUENCY_GIVEN] += 1
    if cat.synonyms is not None:
        out["synonyms"] = cat.synonyms
    return _with_extra(out, cat.extra)


class _Encoder:
    """Turns instances into annotation / result records: status filter, segmentation, area and bbox."""

    def __init__(self, report: ExportReport, segmentation: str, on_inexact: str, tolerance: float,
                 statuses: Collection[ReviewStatus] | None):
        self.report, self.segmentation, self.on_inexact, self.tolerance = report, segmentation, on_inexact, tolerance
        self.statuses = None if statuses is None else {ReviewStatus(s) for s in statuses}
        self.images_by_category: defaultdict[int, set[int]] = defaultdict(set)

    def frequency(self, category_id: int) -> str:
        """The LVIS frequency group of a category from the images of the annotations written so far."""
        return lvis_frequency(len(self.images_by_category.get(category_id, ())))

    def annotations(self, instances: Iterable[Instance], lvis: bool) -> Iterator[dict[str, Any]]:
        for inst, seg, area, bbox in self._geometry(instances):
            if lvis:
                self.images_by_category[inst.category_id].add(inst.image_id)
            out = {"id": inst.id, "image_id": inst.image_id, "category_id": inst.category_id,
                   "segmentation": seg, "area": area, "bbox": bbox}
            if inst.iscrowd or not lvis:
                out["iscrowd"] = int(inst.iscrowd)
            if inst.score is not None:
                out["score"] = inst.score
            yield _with_extra(out, inst.extra) if inst.extra else out

    def results(self, instances: Iterable[Instance]) -> Iterator[dict[str, Any]]:
        for inst, seg, _, bbox in self._geometry(self._no_crowd(instances)):
            score = inst.score
            if score is None:
                score = 1.0
                self.report.counts["given score 1.0 (had none)"] += 1
            out = {"image_id": inst.image_id, "category_id": inst.category_id, "segmentation": seg,
                   "score": score, "bbox": bbox}
            yield _with_extra(out, inst.extra) if inst.extra else out

    def _no_crowd(self, instances: Iterable[Instance]) -> Iterator[Instance]:
        """A results file lists detections: a crowd region is an "ignore" area of the ground truth, not one."""
        for inst in instances:
            if inst.iscrowd:
                self.report.counts[CROWD_LEFT_OUT] += 1
            else:
                yield inst

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
                try:
                    subset_areas, subset_boxes = rle_geometry(subset)
                    areas = dict(zip(need, subset_areas))
                    boxes = dict(zip(need, subset_boxes.tolist()))
                except RLEError as e:
                    raise MaskError(chunk[need[e.index]].id, str(e)) from None
            for k, inst in enumerate(chunk):
                original = originals[k]
                seg = self._segmentation(inst, original)
                counts[f"written as {'RLE' if isinstance(seg, dict) else 'polygons'}"] += 1
                source = SegmentationFormat(inst.source_format).value if inst.source_format else "unknown"
                counts[f"source format {source}"] += 1
                yield inst, seg, original.get("area", areas.get(k)), original.get("bbox", boxes.get(k))

    def _segmentation(self, inst: Instance, original: dict[str, Any]) -> Any:
        own = original.get("segmentation")
        if own is not None and (self.segmentation == "source" or (self.segmentation == "polygon" and not isinstance(own, dict))):
            return own
        rle = _rle_json(inst.rle)
        if self.segmentation != "polygon":
            return rle
        if inst.iscrowd:  # COCO writes crowd regions as RLE (their file's own, else ours)
            self.report.counts["crowd regions kept as RLE"] += 1
            return own if isinstance(own, dict) else rle
        record = f"annotation {inst.id}"
        height, width = inst.size
        if height * width > max_image_pixels():  # decoding alone would take a byte per pixel
            self.report.add(f"the {width}x{height} mask is too large to vectorise: more than {max_image_pixels()} "
                            "pixels, OpenCV's limit (OPENCV_IO_MAX_IMAGE_PIXELS raises it)", record=record,
                            action="wrote RLE")
            return rle
        try:
            check_rle(rle)
        except ValueError as e:
            self.report.add(f"{e}; the project is damaged", record=record, action="wrote RLE")
            return rle
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
