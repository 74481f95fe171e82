"""The project file's integrity check: SQLite's own (pages, indexes, foreign keys) and ours (every instance
has one mask row whose RLE covers its image, values are among those we write, geometry is finite).

What an interrupted import, edit or export must never break; ``ProjectStore.integrity_problems`` runs it.
"""
from __future__ import annotations

import sqlite3
import struct
from typing import Iterator

from app.core.formats.rle_check import rle_pixel_totals
from app.core.records import ChangeKind, ReviewStatus, SegmentationFormat
from app.core.store.packing import unpack_original

_MAX_LISTED = 10  # offending records named per kind of problem
_CHUNK = 20_000  # mask rows checked at a time


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """Every problem found, one line each (at most ``_MAX_LISTED`` records named per kind); [] when sound."""
    problems = [f"SQLite: {row[0]}" for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
    if problems:  # the rest reads through the damaged structures
        return problems
    problems += [f"{table} row {rowid} refers to a missing {parent} row"
                 for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchmany(_MAX_LISTED)]
    problems += _named(conn, "instance {} has no mask row",
                       "SELECT id FROM instances WHERE id NOT IN (SELECT instance_id FROM instance_masks)")
    problems += _named(conn, "mask row {} has no instance",
                       "SELECT instance_id FROM instance_masks WHERE instance_id NOT IN (SELECT id FROM instances)")
    for column, enum in (("status", ReviewStatus), ("prov_kind", ChangeKind), ("source_format", SegmentationFormat)):
        values = ", ".join(f"'{member.value}'" for member in enum)  # NULL (no source format) is not NOT IN
        problems += _named(conn, f"instance {{}} has a {column} that is none of {values}",
                           f"SELECT id FROM instances WHERE {column} NOT IN ({values})")
    problems += _named(conn, "instance {} has an area or bbox that is not finite, or a negative size",
                       "SELECT id FROM instances WHERE NOT (area BETWEEN 0 AND 1e300 AND bbox_x BETWEEN -1e300 AND 1e300 "
                       "AND bbox_y BETWEEN -1e300 AND 1e300 AND bbox_w BETWEEN 0 AND 1e300 "
                       "AND bbox_h BETWEEN 0 AND 1e300)")
    problems += list(_mask_problems(conn))
    return problems


def _named(conn: sqlite3.Connection, template: str, sql: str) -> list[str]:
    return [template.format(row[0]) for row in conn.execute(f"{sql} LIMIT {_MAX_LISTED}")]


def _mask_problems(conn: sqlite3.Connection) -> Iterator[str]:
    """Counts that do not cover their image (or are not RLE), and masks with neither counts nor polygons."""
    found = 0
    rows = conn.execute(
        "SELECT id, counts, height * width, original_segmentation "
        "FROM instances JOIN instance_masks ON instance_id = id"
    )
    while found < _MAX_LISTED and (chunk := rows.fetchmany(_CHUNK)):
        with_counts = [row for row in chunk if row[1] is not None]
        totals = rle_pixel_totals([row[1] if isinstance(row[1], str) else "" for row in with_counts])
        for (iid, _, pixels, _), total in zip(with_counts, totals.tolist()):
            if total != pixels:
                found += 1
                yield f"instance {iid}: its mask's RLE covers {total} pixels, not its image's {pixels}"
        for iid, counts, _, original in chunk:
            if counts is None and not _has_polygons(original):
                found += 1
                yield f"instance {iid} has neither RLE counts nor imported polygons"


def _has_polygons(packed: bytes | str | None) -> bool:
    try:
        original = unpack_original(packed)
    except (ValueError, TypeError, IndexError, struct.error):
        return False
    return isinstance(original, dict) and original.get("segmentation") is not None
