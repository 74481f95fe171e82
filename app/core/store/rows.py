"""Conversions between the shared records and the project file's rows.

Kept apart from the store so the SQL there reads as queries, not as field plumbing. Instances read from a
project come back as ``StoredInstance``: an ``Instance`` (what codecs and the refiner take) that also carries
the per-project layer state (overlap order, lock, visibility) and the refiner's last figures.
"""
from __future__ import annotations

import functools
import json
import sqlite3
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar


from app.core.records import (
    Category, ChangeKind, ImageRecord, Instance, Provenance, ReviewStatus, SegmentationFormat, SourcePolygons,
    rle_geometry,
)
from app.core.store.errors import DamagedRecord
from app.core.store.packing import pack_original, unpack_original

T = TypeVar("T")


@dataclass
class StoredInstance(Instance):
    """An instance as the project holds it: the shared record plus its layer state and refiner figures."""

    z_order: int = 0
    locked: bool = False
    hidden: bool = False
    changed_pixels: int | None = None
    mean_confidence: float | None = None


@dataclass(frozen=True)
class InstanceSummary:
    """One row of an instance listing: everything but the mask, so 245k of them stay cheap."""

    id: int
    image_id: int
    category_id: int
    status: ReviewStatus
    score: float | None
    iscrowd: int
    area: float
    bbox: tuple[float, float, float, float]
    provenance_kind: ChangeKind
    z_order: int
    locked: bool
    hidden: bool
    changed_pixels: int | None
    mean_confidence: float | None


INSTANCE_COLUMNS = (
    "id, image_id, category_id, counts, height, width, score, iscrowd, status, prov_kind, prov_weights, "
    "prov_mode, prov_steps, prov_time, z_order, locked, hidden, changed_pixels, mean_confidence, "
    "source_format, original_segmentation, extra"
)
INSTANCES_WITH_MASKS = "instances JOIN instance_masks ON instance_id = id"
"""FROM clause for ``INSTANCE_COLUMNS``; the column names are unique across the two tables."""
INSERT_INSTANCE = (
    "INSERT INTO instances (id, image_id, category_id, height, width, score, iscrowd, status, prov_kind, "
    "prov_weights, prov_mode, prov_steps, prov_time, z_order, source_format, extra, area, bbox_x, bbox_y, "
    f"bbox_w, bbox_h) VALUES ({', '.join('?' * 21)})"
)
INSERT_MASK = "INSERT INTO instance_masks (instance_id, counts, original_segmentation) VALUES (?, ?, ?)"
SUMMARY_COLUMNS = (
    "id, image_id, category_id, status, score, iscrowd, area, bbox_x, bbox_y, bbox_w, bbox_h, prov_kind, "
    "z_order, locked, hidden, changed_pixels, mean_confidence"
)
IMAGE_COLUMNS = "id, file_name, width, height, neg_category_ids, not_exhaustive_category_ids, extra"
INSERT_IMAGE = f"INSERT INTO images (seq, {IMAGE_COLUMNS}) VALUES ({', '.join('?' * 8)})"
CATEGORY_COLUMNS = "id, name, supercategory, frequency, synset, synonyms, definition, extra"
INSERT_CATEGORY = f"INSERT INTO categories (seq, {CATEGORY_COLUMNS}) VALUES ({', '.join('?' * 9)})"


def dump_json(value: Any) -> str:
    """Compact JSON; empty dicts skip the encoder (most records have no unknown fields). Polygons kept as
    their file's text are written as the polygons (an edit's history keeps them as numbers)."""
    if isinstance(value, dict) and not value:
        return "{}"
    return json.dumps(value, separators=(",", ":"), default=_polygon_numbers)


def _polygon_numbers(value: Any) -> Any:
    if isinstance(value, SourcePolygons):
        return value.parse()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_json(text: str | None) -> Any:
    if text is None:
        return None
    if text == "{}":
        return {}
    return json.loads(text)


def _loaded(text: str | None, kind: type, *, optional: bool = False) -> Any:
    """A JSON column's value, which must be a ``kind`` (or None if ``optional``): what export and the codecs
    expect of it. Anything else is a damaged row (ValueError, named by ``damage_named``)."""
    value = load_json(text)
    if not isinstance(value, kind) and not (value is None and optional):
        raise ValueError(f"{json.dumps(value)[:40]} where a JSON {kind.__name__} belongs")
    return value


def _original(packed: bytes | str | None) -> dict[str, Any] | None:
    original = unpack_original(packed)
    if original is not None and not isinstance(original, dict):
        raise ValueError(f"the imported geometry is {type(original).__name__}, not an object")
    return original


def counts_text(rle: dict[str, Any]) -> str:
    counts = rle["counts"]
    if isinstance(counts, str):
        return counts
    if isinstance(counts, bytes):
        return counts.decode("ascii")
    raise ValueError("the store keeps compressed RLE only (counts as str or bytes)")


def rle_from(counts: str, height: int, width: int) -> dict[str, Any]:
    return {"size": [height, width], "counts": counts}


INSERT_BATCH = 2000


def _mask_geometry(rles: Sequence[dict[str, Any]]) -> Iterator[tuple[int, float, float, float, float]]:
    """(area, x, y, w, h) for each RLE, by pycocotools in few calls."""
    if not rles:
        return iter(())
    areas, boxes = rle_geometry(rles)
    return ((a, float(b[0]), float(b[1]), float(b[2]), float(b[3])) for a, b in zip(areas, boxes))


def geometry(
    originals: Sequence[dict[str, Any] | None], rle_at: Callable[[int], dict[str, Any]]
) -> list[tuple[float, ...]]:
    """(area, x, y, w, h) per instance from its original segmentation: the annotation's own area and bbox
    while it carries them (what export writes, and what COCO's size classes use), else the mask's, whose
    RLE ``rle_at(k)`` gives; it is only asked for those, so polygons not yet rasterised stay so."""
    def own(original: dict[str, Any] | None) -> tuple[float, ...] | None:
        if original is None or "area" not in original or len(original.get("bbox") or ()) != 4:
            return None
        return (original["area"], *original["bbox"])

    owns = [own(original) for original in originals]
    computed = _mask_geometry([rle_at(k) for k, o in enumerate(owns) if o is None])
    return [o if o is not None else next(computed) for o in owns]


# Enum member or its plain string -> the string (a str enum hashes like its value), for tight loops.
_VALUE: dict[Any, str] = {
    key: member.value
    for enum in (ReviewStatus, ChangeKind, SegmentationFormat)
    for member in enum
    for key in (member, member.value)
}


_STATUS = {m.value: m for m in ReviewStatus}
_KIND = {m.value: m for m in ChangeKind}
_FORMAT = {m.value: m for m in SegmentationFormat}


def provenance_values(p: Provenance) -> tuple[str, str | None, str | None, int | None, float]:
    return _VALUE[p.kind], p.weights, p.mode, p.steps, p.timestamp


def insert_instances(
    conn: sqlite3.Connection, instances: Iterable[Instance], next_z: dict[int, int], *, rasterise: bool,
    batch: int = INSERT_BATCH,
) -> None:
    """Insert instances and their masks, a batch at a time (geometry takes few pycocotools calls per batch).

    File order is overlap order: each instance goes above the ones before it on its image. ``next_z`` maps
    an image id to the next free z (images absent from it start at 0) and is advanced in place. Polygons
    not rasterised yet are stored without counts unless ``rasterise`` (format 1 files require counts).
    """
    chunk: list[Instance] = []
    for inst in instances:
        chunk.append(inst)
        if len(chunk) == batch:
            _insert_chunk(conn, chunk, next_z, rasterise)
            chunk = []
    _insert_chunk(conn, chunk, next_z, rasterise)


def _insert_chunk(conn: sqlite3.Connection, chunk: list[Instance], next_z: dict[int, int], rasterise: bool) -> None:
    rows, masks = [], []
    geometries = geometry([inst.original_segmentation for inst in chunk], lambda k: chunk[k].rle)
    for inst, geo in zip(chunk, geometries):
        p, image_id = inst.provenance, inst.image_id
        z_order = next_z.get(image_id, 0)
        next_z[image_id] = z_order + 1
        height, width = inst.size
        rows.append((
            inst.id, image_id, inst.category_id, height, width, inst.score, int(inst.iscrowd),
            _VALUE[inst.status], _VALUE[p.kind], p.weights, p.mode, p.steps, p.timestamp, z_order,
            _VALUE.get(inst.source_format), dump_json(inst.extra), *geo,
        ))
        counts = counts_text(inst.rle) if rasterise or inst.rasterised else None
        masks.append((inst.id, counts, pack_original(inst.original_segmentation)))
    conn.executemany(INSERT_INSTANCE, rows)
    conn.executemany(INSERT_MASK, masks)


def damage_named(kind: str) -> Callable[[Callable[[Sequence[Any]], T]], Callable[[Sequence[Any]], T]]:
    """Make a row decoder raise ``DamagedRecord`` naming the record (``kind`` and the row's first column,
    its id) for a value this app never writes, instead of a KeyError or JSON error from deep inside."""
    def wrap(decode: Callable[[Sequence[Any]], T]) -> Callable[[Sequence[Any]], T]:
        @functools.wraps(decode)
        def checked(row: Sequence[Any]) -> T:
            try:
                return decode(row)
            except (KeyError, ValueError, TypeError, IndexError, struct.error) as e:
                raise DamagedRecord(f"{kind} {row[0]}", f"{type(e).__name__}: {e}") from None
        return checked
    return wrap


_INT, _NUMBER, _NUMBER_OR_NONE, _TEXT, _TEXT_OR_NONE = (
    frozenset(kinds) for kinds in ({int}, {int, float}, {int, float, type(None)}, {str}, {str, type(None)})
)


def _check_types(row: Sequence[Any], names: str, kinds: Sequence[frozenset[type]]) -> None:
    """ValueError naming the columns of a row that hold a value of a type this app never writes there (SQLite
    does not enforce column types: a damaged file or another program can put text where a number belongs)."""
    wrong = [f"{name} is {value!r:.40}" for name, value, ok in zip(names.split(", "), row, kinds)
             if type(value) not in ok]
    if wrong:
        raise ValueError("; ".join(wrong))


_INSTANCE_KINDS = (_INT, _INT, _INT, _TEXT_OR_NONE, _INT, _INT, _NUMBER_OR_NONE, _INT)


@damage_named("instance")
def instance_from_row(row: Sequence[Any]) -> StoredInstance:
    (iid, image_id, category_id, counts, h, w, score, iscrowd, status, pkind, pweights, pmode, psteps, ptime,
     z_order, locked, hidden, changed, confidence, source_format, original, extra) = row
    if not (type(iid) is int and type(image_id) is int and type(category_id) is int and type(h) is int
            and type(w) is int and type(iscrowd) is int and type(counts) in _TEXT_OR_NONE
            and type(score) in _NUMBER_OR_NONE):  # what export and the codecs compute with
        _check_types(row, INSTANCE_COLUMNS, _INSTANCE_KINDS)
    rle = {"size": [h, w]} if counts is None else rle_from(counts, h, w)  # None: polygons, rasterised on use
    return StoredInstance(
        id=iid, image_id=image_id, category_id=category_id, rle=rle, score=score,
        iscrowd=iscrowd, status=_STATUS[status],
        provenance=Provenance(_KIND[pkind], pweights, pmode, psteps, ptime,
                              mean_confidence=confidence if _KIND[pkind] is ChangeKind.REFINED else None),
        extra=_loaded(extra, dict),
        source_format=_FORMAT.get(source_format),
        original_segmentation=_original(original), z_order=z_order, locked=bool(locked), hidden=bool(hidden),
        changed_pixels=changed, mean_confidence=confidence,
    )


_SUMMARY_KINDS = (_INT, _INT, _INT, _TEXT, _NUMBER_OR_NONE, _INT, _NUMBER, _NUMBER, _NUMBER, _NUMBER, _NUMBER)


@damage_named("instance")
def summary_from_row(row: Sequence[Any]) -> InstanceSummary:
    (iid, image_id, category_id, status, score, iscrowd, area, x, y, w, h, pkind, z_order, locked, hidden,
     changed, confidence) = row
    _check_types(row, SUMMARY_COLUMNS, _SUMMARY_KINDS)
    return InstanceSummary(
        iid, image_id, category_id, _STATUS[status], score, iscrowd, area, (x, y, w, h), _KIND[pkind], z_order,
        bool(locked), bool(hidden), changed, confidence,
    )


def image_row(seq: int, img: ImageRecord) -> tuple[Any, ...]:
    return (
        seq, img.id, img.file_name, img.width, img.height, _optional_json(img.neg_category_ids),
        _optional_json(img.not_exhaustive_category_ids), dump_json(img.extra),
    )


@damage_named("image")
def image_from_row(row: Sequence[Any]) -> ImageRecord:
    iid, file_name, width, height, neg, not_exhaustive, extra = row
    _check_types(row, IMAGE_COLUMNS, (_INT, _TEXT, _INT, _INT, _TEXT_OR_NONE, _TEXT_OR_NONE, _TEXT))
    if width <= 0 or height <= 0:
        raise ValueError(f"its size {width}x{height} is not an image's")
    return ImageRecord(iid, file_name, width, height, _loaded(neg, list, optional=True),
                       _loaded(not_exhaustive, list, optional=True), _loaded(extra, dict))


def category_row(seq: int, cat: Category) -> tuple[Any, ...]:
    return (
        seq, cat.id, cat.name, cat.supercategory, cat.frequency, cat.synset, _optional_json(cat.synonyms),
        cat.definition, dump_json(cat.extra),
    )


@damage_named("category")
def category_from_row(row: Sequence[Any]) -> Category:
    cid, name, supercategory, frequency, synset, synonyms, definition, extra = row
    _check_types(row, CATEGORY_COLUMNS, (_INT, _TEXT, *[_TEXT_OR_NONE] * 5, _TEXT))
    return Category(cid, name, supercategory, frequency, synset, _loaded(synonyms, list, optional=True), definition,
                    _loaded(extra, dict))


def _optional_json(value: Any) -> str | None:
    return None if value is None else dump_json(value)

