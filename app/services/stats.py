"""A project's counts per category and review status, and its mask areas (``stats``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.core.records import ChangeKind, ReviewStatus
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter

# COCO's size classes: small < 32², medium < 96², large above.
COCO_AREA_CLASSES = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, None))


def project_stats(project: Path) -> dict[str, Any]:
    """Counts per status, per last change (and find-similar proposals not accepted yet) and per category
    (split by status), and mask areas by COCO class and histogram (bins of powers of 4). The project is opened
    read-only."""
    with ProjectStore.open(project, read_only=True) as store:
        by_status = store.counts_by_status()
        by_change = {k.value: store.count_instances(InstanceFilter(provenance_kinds=[k])) for k in ChangeKind}
        pending = store.count_instances() - store.count_instances(InstanceFilter(proposals=False))
        per_status = {s: store.counts_by_category([s]) for s in ReviewStatus}
        categories = []
        for cat in store.categories():
            counts = {s.value: per_status[s].get(cat.id, 0) for s in ReviewStatus}
            categories.append({"id": cat.id, "name": cat.name, "total": sum(counts.values()), **counts})
        areas = store.areas()
        image_count, path = store.image_count(), store.path
    top = max(int(areas.max()) + 1 if areas.size else 1, 2)
    edges = [0] + [4**k for k in range(int(np.ceil(np.log(top) / np.log(4))) + 1)]
    hist, _ = np.histogram(areas, bins=edges)
    return {
        "project": str(path),
        "images": image_count,
        "instances": int(areas.size),
        "by_status": {s.value: n for s, n in by_status.items()},
        "by_last_change": by_change,
        "proposals_pending": pending,
        "by_category": categories,
        "area_classes": {
            name: int(((areas >= lo) & (areas < (hi if hi is not None else np.inf))).sum())
            for name, lo, hi in COCO_AREA_CLASSES
        },
        "area_histogram": [
            {"min": int(lo), "max": int(hi) - 1, "count": int(n)} for lo, hi, n in zip(edges[:-1], edges[1:], hist)
        ],
    }


def format_stats(stats: dict[str, Any]) -> str:
    """``project_stats`` as text: tables by status and category, area classes and a histogram."""
    statuses = [s.value for s in ReviewStatus]
    lines = [f"{stats['project']}: {stats['images']} images, {stats['instances']} instances", "", "by status:"]
    lines += [f"  {status:<12} {stats['by_status'][status]:>9}" for status in statuses]
    lines += ["", "by last change:"]
    lines += [f"  {kind:<12} {n:>9}" for kind, n in stats["by_last_change"].items()]
    if stats["proposals_pending"]:
        lines.append(f"  {stats['proposals_pending']} find-similar proposal(s) not accepted yet: left out of exports")
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
        lines.append(f"  {b['min']:>9} - {b['max']:>9} {b['count']:>9} {bar}")
    return "\n".join(lines)
