"""Filtered, sorted instance listings turned into one parameterised SQL query, and the counts ``stats``
makes (from indexes where the project has them).

The instance dock filters by image, category, status, provenance, score, area and change size, and sorts
by any of those columns; on 245k instances that has to stay in SQLite, never in Python.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

from app.core.records import ChangeKind, ReviewStatus
from app.core.store.errors import ProjectError

SORT_KEYS = ("id", "image_id", "category_id", "status", "score", "area", "changed_pixels", "mean_confidence")


@dataclass
class InstanceFilter:
    """Which instances to list and in which order. Unset fields do not filter.

    ``sort_by`` is one of ``SORT_KEYS``; rows without a value for it (no score, never refined) come last in
    either direction, then ties go by id.
    """

    image_id: int | None = None
    ids: Collection[int] | None = None
    category_ids: Collection[int] | None = None
    statuses: Collection[ReviewStatus] | None = None
    provenance_kinds: Collection[ChangeKind] | None = None
    min_score: float | None = None
    max_score: float | None = None
    min_area: int | None = None
    max_area: int | None = None
    min_changed_pixels: int | None = None
    max_mean_confidence: float | None = None
    include_hidden: bool = True
    proposals: bool = True
    """False leaves out find-similar proposals not accepted yet (``ChangeKind.PROPOSED``, status not accepted)."""
    sort_by: str = "id"
    descending: bool = False
    limit: int | None = None
    offset: int = 0


def where_clause(f: InstanceFilter) -> tuple[str, list[Any]]:
    """The WHERE part (possibly empty) and its parameters."""
    terms: list[str] = []
    params: list[Any] = []

    def add_in(column: str, values: Collection[Any] | None) -> None:
        if values is None:
            return
        values = list(values)
        terms.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
        params.extend(values)

    def add_cmp(column: str, op: str, value: Any) -> None:
        if value is not None:
            terms.append(f"{column} {op} ?")
            params.append(value)

    add_cmp("image_id", "=", f.image_id)
    add_in("id", f.ids)
    add_in("category_id", f.category_ids)
    add_in("status", None if f.statuses is None else [ReviewStatus(s).value for s in f.statuses])
    add_in("prov_kind", None if f.provenance_kinds is None else [ChangeKind(k).value for k in f.provenance_kinds])
    add_cmp("score", ">=", f.min_score)
    add_cmp("score", "<=", f.max_score)
    add_cmp("area", ">=", f.min_area)
    add_cmp("area", "<=", f.max_area)
    add_cmp("changed_pixels", ">=", f.min_changed_pixels)
    add_cmp("mean_confidence", "<=", f.max_mean_confidence)
    if not f.include_hidden:
        terms.append("hidden = 0")
    if not f.proposals:
        terms.append("NOT (prov_kind = ? AND status != ?)")
        params.extend([ChangeKind.PROPOSED.value, ReviewStatus.ACCEPTED.value])
    return (" WHERE " + " AND ".join(terms)) if terms else "", params


def order_clause(f: InstanceFilter) -> str:
    if f.sort_by not in SORT_KEYS:
        raise ValueError(f"cannot sort instances by {f.sort_by!r}; use one of {', '.join(SORT_KEYS)}")
    direction = "DESC" if f.descending else "ASC"
    if f.sort_by == "id":
        return f" ORDER BY id {direction}"
    return f" ORDER BY {f.sort_by} IS NULL, {f.sort_by} {direction}, id"


def limit_clause(f: InstanceFilter) -> tuple[str, list[Any]]:
    if f.limit is None and not f.offset:
        return "", []
    return " LIMIT ? OFFSET ?", [-1 if f.limit is None else f.limit, f.offset]


def counts_by_category_and_status(conn: sqlite3.Connection, project: Path) -> dict[int, dict[ReviewStatus, int]]:
    """Instances per category id and status (read from the index on both where the project has it)."""
    counts: dict[int, dict[ReviewStatus, int]] = {}
    for category_id, status, n in conn.execute(
        "SELECT category_id, status, COUNT(*) FROM instances GROUP BY category_id, status"
    ):
        try:
            counts.setdefault(category_id, {})[ReviewStatus(status)] = n
        except ValueError:
            raise ProjectError(project, f"damaged: instances have the review status {status!r}") from None
    return counts


def count_areas(conn: sqlite3.Connection, bounds: Sequence[float]) -> list[int]:
    """How many instance areas fall in each of [bounds[i], bounds[i + 1]), the last bin open above; areas
    below ``bounds[0]`` are not counted. With the index on area, a range count per bin (245k instances:
    milliseconds); a project made without it is binned in one scan of the table."""
    if list(bounds) != sorted(bounds):
        raise ValueError("bounds must be ascending")
    edges = [float(b) for b in bounds]
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'instances_by_area'").fetchone():
        counts = [conn.execute("SELECT COUNT(*) FROM instances WHERE area >= ? AND area < ?", r).fetchone()[0]
                  for r in zip(edges, edges[1:])]
        return counts + [conn.execute("SELECT COUNT(*) FROM instances WHERE area >= ?", edges[-1:]).fetchone()[0]]
    cases = " ".join(f"WHEN area < ? THEN {k - 1}" for k in range(len(edges)))
    counts = [0] * len(edges)
    for k, n in conn.execute(f"SELECT CASE {cases} ELSE {len(edges) - 1} END AS bin, COUNT(*) FROM instances "
                             "GROUP BY bin", edges):
        if k >= 0:
            counts[k] = n
    return counts
