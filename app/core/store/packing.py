"""Compact storage of an instance's imported geometry (``Instance.original_segmentation``).

An unedited instance keeps its file's polygons, area and bbox so export writes them back verbatim. For an
LVIS-sized file that is tens of millions of coordinates: written as JSON text they cost more than parsing
the whole file did (float formatting), so the usual shape, ``{"segmentation": [[x, y, ...], ...],
"area": a, "bbox": [x, y, w, h]}``, is packed as little-endian binary:

    0x01, flags, uint32 part count, uint32 part lengths, 8-byte coordinates, [8-byte area], [4 x 8-byte bbox]

Each group is int64 when all its numbers are integers (a flag says so) and float64 otherwise, which holds
every JSON number of these fields exactly. A polygon mixing integers and floats comes back all floats
(equal values). Polygons kept as their file's text (``SourcePolygons``, what an import makes) are stored
as that text, so nothing is converted either way:

    0x02, flags, [8-byte area], [4 x 8-byte bbox], UTF-8 polygon text

Anything else (other keys, non-numeric values) is kept as JSON text.
"""
from __future__ import annotations

import json
import struct
import sys
from array import array
from typing import Any

from app.core.records import SourcePolygons

_TAG, _TEXT_TAG = 1, 2
_COORDS_INT, _HAS_AREA, _AREA_INT, _HAS_BBOX, _BBOX_INT = 1, 2, 4, 8, 16
_KEYS = frozenset({"segmentation", "area", "bbox"})
_NUMBER_TYPES = frozenset({int, float})
_HEADER = struct.Struct("<BBI")
_TEXT_HEADER = struct.Struct("<BB")
_TEXT_FLOATS = struct.Struct("<BB5d")
_SWAP = sys.byteorder != "little"


def pack_original(original: dict[str, Any] | None) -> bytes | str | None:
    """Binary for the usual shape, JSON text otherwise, None for None."""
    if original is None:
        return None
    packed = _pack(original)
    return packed if packed is not None else json.dumps(original, separators=(",", ":"))


def unpack_original(value: bytes | str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return json.loads(value)
    if value[0] == _TEXT_TAG:
        return _unpack_text(value)
    _, flags, n_parts = _HEADER.unpack_from(value)
    lengths = struct.unpack_from(f"<{n_parts}I", value, _HEADER.size)
    start = _HEADER.size + 4 * n_parts
    total = sum(lengths)
    numbers = _read(value[start:start + 8 * total], "q" if flags & _COORDS_INT else "d")
    parts, k = [], 0
    for n in lengths:
        parts.append(numbers[k:k + n])
        k += n
    out: dict[str, Any] = {"segmentation": parts}
    out.update(_unpack_area_bbox(value, start + 8 * k, flags)[0])
    return out


def _pack(original: dict[str, Any]) -> bytes | None:
    segmentation = original.get("segmentation")
    if isinstance(segmentation, SourcePolygons):
        return _pack_text(original, segmentation)
    if type(segmentation) is not list or not segmentation or not original.keys() <= _KEYS:
        return None
    if any(type(part) is not list for part in segmentation):
        return None
    coords = _numbers(segmentation)
    if coords is None:
        return None
    flags = _COORDS_INT if coords[0].typecode == "q" else 0
    area_bbox = _pack_area_bbox(original)
    if area_bbox is None:
        return None
    chunks = [
        _HEADER.pack(_TAG, flags | area_bbox[0], len(segmentation)),
        struct.pack(f"<{len(segmentation)}I", *map(len, segmentation)), *map(_bytes, coords), area_bbox[1],
    ]
    return b"".join(chunks)


def _pack_text(original: dict[str, Any], polygons: SourcePolygons) -> bytes | None:
    area, box = original.get("area"), original.get("bbox")
    if type(area) is float and type(box) is list and len(box) == 4 and len(original) == 3 \
            and type(box[0]) is float and type(box[1]) is float and type(box[2]) is float and type(box[3]) is float:
        # the usual case (COCO and LVIS write floats), in one call; the same layout as below
        return _TEXT_FLOATS.pack(_TEXT_TAG, _HAS_AREA | _HAS_BBOX, area, *box) + polygons.text.encode("utf-8")
    if not original.keys() <= _KEYS:
        return None
    area_bbox = _pack_area_bbox(original)
    if area_bbox is None:
        return None
    return _TEXT_HEADER.pack(_TEXT_TAG, area_bbox[0]) + area_bbox[1] + polygons.text.encode("utf-8")


def _unpack_text(value: bytes) -> dict[str, Any]:
    _, flags = _TEXT_HEADER.unpack_from(value)
    out, at = _unpack_area_bbox(value, _TEXT_HEADER.size, flags)
    out["segmentation"] = SourcePolygons(value[at:].decode("utf-8"))
    return out


def _pack_area_bbox(original: dict[str, Any]) -> tuple[int, bytes] | None:
    """(flags, bytes) of the optional area and bbox, each int64 when all integers, else float64; None when
    one is not numbers (or the bbox not four)."""
    flags, chunks = 0, []
    for key, has, integer in (("area", _HAS_AREA, _AREA_INT), ("bbox", _HAS_BBOX, _BBOX_INT)):
        if key in original:
            value = original[key]
            fixed = _fixed([value] if key == "area" else value)
            if fixed is None or (key == "bbox" and len(value) != 4):
                return None
            flags |= has | (integer if fixed[0] else 0)
            chunks.append(fixed[1])
    return flags, b"".join(chunks)


def _unpack_area_bbox(value: bytes, at: int, flags: int) -> tuple[dict[str, Any], int]:
    """What ``_pack_area_bbox`` wrote at ``at``, and the offset after it."""
    out: dict[str, Any] = {}
    if flags & _HAS_AREA:
        out["area"] = _read(value[at:at + 8], "q" if flags & _AREA_INT else "d")[0]
        at += 8
    if flags & _HAS_BBOX:
        out["bbox"] = _read(value[at:at + 32], "q" if flags & _BBOX_INT else "d")
        at += 32
    return out, at


def _fixed(values: Any) -> tuple[bool, bytes] | None:
    """(all integers, packed) for a short list of numbers (area, bbox), None when not numbers."""
    kinds = set(map(type, values)) if type(values) is list else {None}
    if not kinds <= _NUMBER_TYPES:
        return None
    integers = kinds == {int}
    try:
        return integers, struct.pack(f"<{len(values)}{'q' if integers else 'd'}", *values)
    except struct.error:  # an integer beyond int64
        return None


def _numbers(lists: list[list[Any]]) -> list[array] | None:
    """One array per list, all int64 when every number is an integer, else all float64; None when some
    value is not a number (or an integer too large)."""
    if all(values and type(values[0]) is int for values in lists):
        try:
            return [array("q", values) for values in lists]
        except TypeError:  # a float among the integers
            pass
        except OverflowError:
            return None
    try:
        return [array("d", values) for values in lists]
    except (TypeError, OverflowError):
        return None


def _bytes(values: array) -> bytes:
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _read(buffer: bytes, typecode: str) -> list[Any]:
    values = array(typecode)
    values.frombytes(buffer)
    if _SWAP:
        values.byteswap()
    return values.tolist()
