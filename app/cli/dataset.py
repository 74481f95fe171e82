"""Headless dataset commands: ``import``, ``export``, ``stats`` and ``validate``.

A project is one SQLite file, by convention ``<name>.srproj`` (``PROJECT_SUFFIX``); an import writes its
report beside it as ``<name>.import-report.json``. Long operations print progress to stderr about once a
second. Ctrl+C stops cleanly: a new project is only renamed into place once complete, an addition to an
existing project is one transaction, and exports are written to a temporary file and renamed.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from app.core.formats.coco import load_coco, load_coco_results
from app.core.formats.coco_export import SEGMENTATION_MODES, SegmentationMode, write_coco, write_coco_results
from app.core.errors import DatasetError
from app.core.gc_pause import paused_gc
from app.core.formats.lvis import load_lvis, write_lvis
from app.core.records import Dataset, ReviewStatus
from app.core.formats.png_masks import load_binary_masks, load_label_masks, write_binary_masks, write_label_masks
from app.core.report import ExportReport, ImportReport
from app.core.store.project import ProjectStore
from app.core.store.errors import ProjectError
from app.core.store.query import InstanceFilter
from app.core.store.rows import StoredInstance
from app.core.store.schema import PROJECT_SUFFIX

IMPORT_FORMATS = ("coco", "lvis", "results", "png-instances", "png-labels")
EXPORT_FORMATS = ("coco", "lvis", "results", "png")
PNG_LAYOUTS = ("label", "binary")
# COCO's size classes: small < 32², medium < 96², large above.
COCO_AREA_CLASSES = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, None))

PER_INSTANCE_PNG = re.compile(r".+_\d+\.png$", re.IGNORECASE)

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the dataset subcommands to the ``segrefiner-studio`` parser."""
    imp = subparsers.add_parser(
        "import", help="import a dataset into a project file",
        description=f"Import a COCO / LVIS / results file or a folder of PNG masks into a project "
                    f"({PROJECT_SUFFIX}).",
    )
    _source_arguments(imp)
    imp.add_argument("--project", type=Path, metavar=f"OUT{PROJECT_SUFFIX}",
                     help=f"project file to create (default: the source's name with {PROJECT_SUFFIX}, "
                          "beside it)")
    imp.add_argument("--add", action="store_true",
                     help="add to an existing project (predictions, more images) instead of creating one")
    imp.set_defaults(handler=run_import)

    val = subparsers.add_parser(
        "validate", help="check a dataset for bad input without importing it",
        description="Run the importer's checks, print the report; exit status 1 when it found problems.",
    )
    _source_arguments(val)
    val.set_defaults(handler=run_validate)

    exp = subparsers.add_parser(
        "export", help="export a project to COCO / LVIS / results JSON or PNG masks",
        description="Export a project's current masks. JSON keeps each unedited annotation as its file had it "
                    "and writes every mask made or changed here as RLE, unless --segmentation says otherwise.",
    )
    exp.add_argument("--project", type=Path, required=True, metavar=f"PROJECT{PROJECT_SUFFIX}")
    exp.add_argument("--format", choices=EXPORT_FORMATS, help="default: the format the project came from")
    exp.add_argument("--out", type=Path, required=True, help="output file (a folder for png)")
    exp.add_argument("--segmentation", choices=SEGMENTATION_MODES, default="source",
                     help="source (default): unedited annotations as imported, changed masks as RLE; rle: RLE for "
                          "all; polygon: polygons for all (exact, holes as keyhole cuts), RLE where they cannot be exact")
    exp.add_argument("--accepted-only", action="store_true", help="export only instances marked accepted")
    exp.add_argument("--png-layout", choices=PNG_LAYOUTS, default="label",
                     help="png: one label map per image, overlaps drawn in the project's z-order (default), "
                          "or one binary PNG per instance")
    exp.set_defaults(handler=run_export)

    stats = subparsers.add_parser(
        "stats", help="counts per category and status, and an area histogram",
        description="Print a project's counts per category and review status and a histogram of mask areas.",
    )
    stats.add_argument("--project", type=Path, required=True, metavar=f"PROJECT{PROJECT_SUFFIX}")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(handler=run_stats)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="annotation file, or folder of PNG masks")
    parser.add_argument("--format", choices=IMPORT_FORMATS,
                        help="default: detected (JSON object: coco or lvis, JSON list: results, folder: "
                             "png-instances when its names end in _<k>.png or it has a subfolder per image, "
                             "else png-labels)")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="folder with the image files (checked against the records when given; "
                             "required for PNG masks, whose images it also names)")
    parser.add_argument("--images-file", type=Path, metavar="JSON",
                        help="results format: the COCO/LVIS file giving the images and categories")


# ------------------------------------------------------------------------------------------ commands
def run_import(args: argparse.Namespace) -> int:
    with paused_gc():
        return _run_import(args)


def _run_import(args: argparse.Namespace) -> int:
    start = time.monotonic()
    project: Path = args.project or args.source.with_suffix(PROJECT_SUFFIX)
    if not args.add:  # before the parse, which may take a while: a new project may go into a new folder
        if project.exists():
            raise ProjectError(project, "already exists; open it, or add the dataset to it with --add")
        project.parent.mkdir(parents=True, exist_ok=True)
    dataset, report = load_source(args)
    print(report.summary())
    progress = Progress("stored", "instances")
    if args.add:
        with ProjectStore.open(project) as store:
            if store.read_only:
                raise ProjectError(project, f"cannot add to it: {store.read_only_reason}")
            result = store.add_dataset(dataset, progress=progress)
        if result.renumbered:
            print(f"{len(result.renumbered)} instance id(s) already in the project were renumbered")
    else:
        ProjectStore.create(project, dataset, source_path=args.source, images_dir=args.images,
                            progress=progress).close()
    report_path = report_path_for(project)
    report.write_json(report_path)
    print(
        f"{'added to' if args.add else 'created'} {project}: {len(dataset.images)} images, "
        f"{len(dataset.categories)} categories, {len(dataset.instances)} instances "
        f"in {time.monotonic() - start:.1f} s; report: {report_path}"
    )
    return 0


def run_validate(args: argparse.Namespace) -> int:
    _, report = load_source(args)
    print(report.summary(max_problems=200))
    return 0 if report.ok else 1


def run_export(args: argparse.Namespace) -> int:
    start = time.monotonic()
    progress = Progress("exported", "instances")
    with paused_gc():
        report = export_project(args.project, args.format, args.out, segmentation=args.segmentation,
                                accepted_only=args.accepted_only, png_layout=args.png_layout, progress=progress)
    print(report.summary())
    print(f"exported {progress.done} instances to {args.out} in {time.monotonic() - start:.1f} s")
    return 0


def export_project(
    project: Path,
    fmt: str | None,
    out: Path,
    *,
    segmentation: SegmentationMode = "source",
    accepted_only: bool = False,
    png_layout: str = "label",
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Export a project's current masks (the CLI's ``export``, also run by the GUI on a worker thread).

    ``fmt`` is one of EXPORT_FORMATS or None for the format the project came from; ``segmentation`` is one
    of SEGMENTATION_MODES (see ``write_coco``); ``png_layout`` is
    "label" (one label map per image, overlaps in z-order) or "binary" (one PNG per instance).
    ``progress(done, total)`` follows the instances written; an exception it raises stops the export
    and leaves nothing at ``out`` (it is written to a temporary file and renamed). The project is opened
    read-only, so a window editing it can go on.
    """
    if fmt is not None and fmt not in EXPORT_FORMATS:
        raise DatasetError(out, f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    if png_layout not in PNG_LAYOUTS:
        raise DatasetError(out, f"png layout must be one of {', '.join(PNG_LAYOUTS)}, not {png_layout!r}")
    with ProjectStore.open(project, read_only=True) as store:
        fmt = fmt or _default_export_format(store.kind)
        statuses = [ReviewStatus.ACCEPTED] if accepted_only else None
        total = store.count_instances(InstanceFilter(statuses=statuses))
        instances: Iterable[StoredInstance] = store.iter_instances(statuses=statuses, by_image=fmt == "png")
        if progress is not None:
            report_progress = progress
            report_progress(0, total)
            instances = counted(instances, lambda done: report_progress(done, total))
        if fmt == "coco":
            report = write_coco(out, store.extra, store.images(), store.categories(), instances,
                                segmentation=segmentation)
        elif fmt == "lvis":
            report = write_lvis(out, store.extra, store.images(), store.categories(), instances,
                                segmentation=segmentation)
        elif fmt == "results":
            report = write_coco_results(out, instances, segmentation=segmentation)
        elif png_layout == "label":
            report = write_label_masks(out, store.images(), instances, order="given")
        else:
            report = write_binary_masks(out, store.images(), instances)
        excluded = store.count_instances() - total
    if excluded:
        report.counts["excluded by status"] += excluded
    return report


def run_stats(args: argparse.Namespace) -> int:
    with ProjectStore.open(args.project, read_only=True) as store:
        stats = project_stats(store)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


# ------------------------------------------------------------------------------------------ helpers
def load_source(args: argparse.Namespace) -> tuple[Dataset, ImportReport]:
    """Read the import source in the given or detected format; problems that stop it raise DatasetError."""
    source: Path = args.source
    fmt = args.format or detect_format(source)
    print(f"reading {source} ({fmt})", file=sys.stderr)
    check = args.images is not None
    if fmt == "coco":
        return load_coco(source, images_dir=args.images, check_images=check, kind=args.format)
    if fmt == "lvis":
        return load_lvis(source, images_dir=args.images, check_images=check)
    if fmt == "results":
        if args.images_file is None:
            raise DatasetError(source, "a results file needs --images-file, the COCO/LVIS file of its images")
        return load_coco_results(source, args.images_file, images_dir=args.images, check_images=check)
    if args.images is None:
        raise DatasetError(source, "PNG masks need --images, the folder of the images they belong to")
    if fmt == "png-labels":
        return load_label_masks(args.images, source)
    return load_binary_masks(args.images, source)


def detect_format(source: Path) -> str:
    """'coco' for a JSON object (load_coco tells LVIS apart), 'results' for a JSON list, 'png-*' for a folder."""
    if source.is_dir():
        entries = list(source.iterdir())
        per_instance = any(p.is_dir() for p in entries) or any(
            PER_INSTANCE_PNG.match(p.name) for p in entries if p.suffix.lower() == ".png"
        )
        return "png-instances" if per_instance else "png-labels"
    try:
        with open(source, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except FileNotFoundError:
        raise DatasetError(source, f"file not found ({source})") from None
    except OSError as e:
        raise DatasetError(source, f"cannot read: {e.strerror or e}") from None
    if head[:1] == b"[":
        return "results"
    if head[:1] == b"{":
        return "coco"
    if not head:
        raise DatasetError(source, "file is empty (0 bytes)")
    raise DatasetError(source, "not a JSON annotation file nor a folder of PNG masks; give --format")


def report_path_for(project: Path) -> Path:
    return project.with_name(f"{project.stem}.import-report.json")


def _default_export_format(kind: str) -> str:
    return kind if kind in EXPORT_FORMATS else "png" if kind.startswith("png") else "coco"


def project_stats(store: ProjectStore) -> dict[str, Any]:
    """Counts per status and per category (split by status), and mask areas by COCO class and histogram."""
    by_status = store.counts_by_status()
    per_status = {s: store.counts_by_category([s]) for s in ReviewStatus}
    categories = []
    for cat in store.categories():
        counts = {s.value: per_status[s].get(cat.id, 0) for s in ReviewStatus}
        categories.append({"id": cat.id, "name": cat.name, "total": sum(counts.values()), **counts})
    areas = store.areas()
    top = max(int(areas.max()) + 1 if areas.size else 1, 2)
    edges = [0] + [4**k for k in range(int(np.ceil(np.log(top) / np.log(4))) + 1)]
    hist, _ = np.histogram(areas, bins=edges)
    return {
        "project": str(store.path),
        "images": store.image_count(),
        "instances": int(areas.size),
        "by_status": {s.value: n for s, n in by_status.items()},
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
    statuses = [s.value for s in ReviewStatus]
    lines = [f"{stats['project']}: {stats['images']} images, {stats['instances']} instances", "", "by status:"]
    lines += [f"  {status:<12} {stats['by_status'][status]:>9}" for status in statuses]
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


class Progress:
    """``progress(done, total)`` that prints to stderr at most once a second, and always at the end;
    ``done`` keeps the last count."""

    def __init__(self, verb: str, noun: str, total: int | None = None) -> None:
        self.verb, self.noun, self.total = verb, noun, total
        self.done = 0
        self._last = time.monotonic()

    def __call__(self, done: int, total: int | None = None) -> None:
        total = self.total if total is None else total
        self.done = done
        now = time.monotonic()
        if done != total and now - self._last < 1.0:
            return
        self._last = now
        print(f"  {self.verb} {done}/{total} {self.noun}", file=sys.stderr, flush=True)


def counted(items: Iterable[T], progress: Callable[[int], None]) -> Iterator[T]:
    """Pass items through, reporting how many went by."""
    for done, item in enumerate(items, 1):
        progress(done)
        yield item
