"""A project's counts per category and review status, and its mask areas (``stats``).

Counted in SQL in two scans of the instances table, so a 245k-instance project's figures take a fraction of
a second, and this module imports nothing heavier than the store (``segrefiner-studio stats`` starts fast).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from app.core.records import ChangeKind, ReviewStatus
from app.core.store.files import project_errors
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from app.core.store.schema import PROJECT_SUFFIX
from app.core.wording import plural

__all__ = ["COCO_AREA_CLASSES", "PROJECT_SUFFIX", "format_stats", "project_stats"]

TO_REVIEW = (ReviewStatus.UNREVIEWED, ReviewStatus.NEEDS_WORK, ReviewStatus.REJECTED)
"""What is left to review: every instance not accepted yet."""

# COCO's size classes: small < 32², medium < 96², large above.
COCO_AREA_CLASSES = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, None))
# Histogram bins: [0, 1), then powers of 4 up to 4**16 (2**32 pixels, the largest COCO RLE), then above.
_POWERS = [0] + [4**k for k in range(17)]
_BOUNDS = sorted(set(_POWERS) | {lo for _, lo, _ in COCO_AREA_CLASSES})


def project_stats(project: Path) -> dict[str, Any]:
    """Counts per status, per last change (and find-similar proposals not accepted yet) and per category
    (split by status), and mask areas by COCO class and histogram (bins of powers of 4, up to the one holding
    the largest area). The project is opened read-only."""
    with project_errors(project), ProjectStore.open(project, read_only=True) as store:
        per_category = store.counts_by_category_and_status()
        by_change = {k.value: store.count_instances(InstanceFilter(provenance_kinds=[k])) for k in ChangeKind}
        pending = store.count_instances() - store.count_instances(InstanceFilter(proposals=False))
        categories = []
        for cat in store.categories():
            counts = {s.value: per_category.get(cat.id, {}).get(s, 0) for s in ReviewStatus}
            categories.append({"id": cat.id, "name": cat.name, "total": sum(counts.values()), **counts})
        by_bound = dict(zip(_BOUNDS, store.count_areas(_BOUNDS)))
        image_count, path = store.image_count(), store.path
    by_status = {s.value: sum(c.get(s, 0) for c in per_category.values()) for s in ReviewStatus}
    return {
        "project": str(path),
        "images": image_count,
        "instances": sum(by_status.values()),
        "by_status": by_status,
        "by_last_change": by_change,
        "proposals_pending": pending,
        "by_category": categories,
        "area_classes": {
            name: sum(n for bound, n in by_bound.items() if bound >= lo and (hi is None or bound < hi))
            for name, lo, hi in COCO_AREA_CLASSES
        },
        "area_histogram": _histogram(by_bound),
    }


def _histogram(by_bound: dict[float, int]) -> list[dict[str, int]]:
    """Bins [0, 1), [1, 4), [4, 16), ... up to the last one with an area in it (at least [1, 4))."""
    bins = [sum(n for bound, n in by_bound.items() if lo <= bound < hi) for lo, hi in zip(_POWERS, _POWERS[1:])]
    bins.append(sum(n for bound, n in by_bound.items() if bound >= _POWERS[-1]))
    last = max([1] + [k for k, n in enumerate(bins) if n])
    highs = _POWERS[1:] + [None]
    return [{"min": lo, "max": hi - 1 if hi is not None else None, "count": n}
            for lo, hi, n in zip(_POWERS, highs, bins[: last + 1])]


def format_stats(stats: dict[str, Any]) -> str:
    """``project_stats`` as text: tables by status and category, area classes and a histogram."""
    statuses = [s.value for s in ReviewStatus]
    lines = [f"{stats['project']}: {stats['images']} images, {stats['instances']} instances", "", "by status:"]
    lines += [f"  {status:<12} {stats['by_status'][status]:>9}" for status in statuses]
    lines += ["", "by last change:"]
    lines += [f"  {kind:<12} {n:>9}" for kind, n in stats["by_last_change"].items()]
    if stats["proposals_pending"]:
        lines.append(f"  {plural(stats['proposals_pending'], 'find-similar proposal')} not accepted yet: left out of exports")
    used = [c for c in stats["by_category"] if c["total"]]
    lines += ["", f"by category ({len(used)} of {len(stats['by_category'])} with instances):"]
    lines.append(f"  {'id':>6}  {'name':<28} {'total':>8} " + " ".join(f"{s:>11}" for s in statuses))
    for c in sorted(used, key=lambda c: -c["total"]):
        by_status = " ".join(f"{c[s]:>11}" for s in statuses)
        lines.append(f"  {c['id']:>6}  {c['name'][:28]:<28} {c['total']:>8} {by_status}")
    lines += ["", "area (pixels):"]
    lines += [f"  {name:<8} {n:>9}" for name, n in stats["area_classes"].items()]
    peak = max((b["count"] for b in stats["area_histogram"]), default=0) or 1
    lines.append("")
    for b in stats["area_histogram"]:
        bar = "#" * round(40 * b["count"] / peak)
        high = "" if b["max"] is None else b["max"]
        lines.append(f"  {b['min']:>9} - {high:>9} {b['count']:>9} {bar}")
    return "\n".join(lines)


def pixel_area(store: ProjectStore, instance_id: int) -> int:
    """The pixels of an instance's mask. The store's ``area`` is the annotation file's own while the instance is
    unedited (a polygon's area for COCO, a float), which is what export writes but not what the mask covers.
    ProjectError when the instance's mask is damaged."""
    with project_errors(store.path):
        return store.instance(instance_id).area
