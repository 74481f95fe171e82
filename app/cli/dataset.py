"""``import``, ``validate`` and ``export``: argparse and printing around app/services/datasets.py.

Long operations print progress to stderr about once a second. Ctrl+C stops cleanly (see the service).
"""
from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

from app.cli import COMMANDS, add_project_argument, project_of
from app.services.datasets import (
    CROWD_LEFT_OUT, PROJECT_SUFFIX, SEGMENTATION_MODES, ImportRequest, explain_source_formats, export_project,
    import_project, read_dataset, report_path_for,
)
from app.services.formats import EXPORT_FORMATS, IMPORT_FORMATS
from app.services.wording import plural

PNG_LAYOUTS = {"label": "png-labels", "binary": "png-instances"}
"""``--format png --png-layout X``: the older spelling of the two PNG export formats."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the dataset subcommands to the ``segrefiner-studio`` parser."""
    imp = subparsers.add_parser(
        "import", help=COMMANDS["import"].help,
        description=f"Import a COCO / LVIS / results file or a folder of PNG masks into a project ({PROJECT_SUFFIX}).",
    )
    _source_arguments(imp)
    imp.add_argument("--project", type=Path, metavar=f"OUT{PROJECT_SUFFIX}",
                     help=f"project file to create (default: the source's name with {PROJECT_SUFFIX}, beside it)")
    imp.add_argument("--add", action="store_true",
                     help="add to an existing project (predictions, more images) instead of creating one")
    imp.set_defaults(handler=run_import)

    val = subparsers.add_parser(
        "validate", help=COMMANDS["validate"].help,
        description="Run the importer's checks, print the report; exit status 1 when it found problems.",
    )
    _source_arguments(val)
    val.set_defaults(handler=run_validate)

    exp = subparsers.add_parser(
        "export", help=COMMANDS["export"].help,
        description="Export a project's current masks. JSON keeps each unedited annotation as its file had it "
                    "and writes every mask made or changed here as RLE, unless --segmentation says otherwise.",
    )
    add_project_argument(exp)
    exp.add_argument("--format", choices=[*EXPORT_FORMATS, "png"],
                     help="default: the format the project came from; "
                          + "; ".join(f"{f.name}: {f.description}" for f in EXPORT_FORMATS.values())
                          + "; png: png-labels, or png-instances with --png-layout binary")
    exp.add_argument("--out", type=Path, required=True, help="output file (a folder for PNG formats)")
    exp.add_argument("--segmentation", choices=SEGMENTATION_MODES, default="source",
                     help="source (default): unedited annotations as imported, changed masks as RLE; rle: RLE for "
                          "all; polygon: polygons for all (exact, holes as keyhole cuts), RLE where they cannot be exact")
    exp.add_argument("--accepted-only", action="store_true", help="export only instances marked accepted")
    exp.add_argument("--include-proposed", action="store_true",
                     help="also export find-similar proposals not accepted yet (left out by default)")
    exp.add_argument("--png-layout", choices=PNG_LAYOUTS, default="label",
                     help="with --format png: one label map per image, overlaps drawn in the project's z-order "
                          "(default), or one binary PNG per instance")
    exp.set_defaults(handler=run_export)


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


def _request(args: argparse.Namespace) -> ImportRequest:
    return ImportRequest(args.source, args.format, args.images, args.images_file)


def run_import(args: argparse.Namespace) -> int:
    progress = Progress("stored", "instances")
    result = import_project(_request(args), args.project, add=args.add, progress=progress)
    print(result.report.summary())
    if result.images and result.images_missing == result.images:
        print(f"none of the {result.images} images' files was found: give the folder that holds them with --images "
              f"(the records are kept; the window shows a grey placeholder until the files are found)")
    if result.renumbered:
        print(f"{plural(len(result.renumbered), 'instance id')} already in the project "
              f"{'was' if len(result.renumbered) == 1 else 'were'} renumbered")
    print(
        f"{'added to' if result.added else 'created'} {result.project}: {plural(result.images, 'image')}, "
        f"{plural(result.categories, 'category', 'categories')}, {plural(result.instances, 'instance')} in "
        f"{result.seconds:.1f} s; "
        f"report: {report_path_for(result.project)}"
    )
    return 0


def run_validate(args: argparse.Namespace) -> int:
    _, report = read_dataset(_request(args))
    print(report.summary(max_problems=200))
    return 0 if report.ok else 1


def run_export(args: argparse.Namespace) -> int:
    start = time.monotonic()
    fmt = PNG_LAYOUTS[args.png_layout] if args.format == "png" else args.format
    progress = Progress("exported", "instances")
    report = export_project(project_of(args, "export"), fmt, args.out, segmentation=args.segmentation,
                            accepted_only=args.accepted_only, include_proposed=args.include_proposed,
                            progress=progress)
    print(report.summary())
    words = explain_source_formats(dict(report.counts)) if args.segmentation == "source" and fmt != "results" else ""
    if words:
        print(textwrap.fill(words, 110))
    problems = f"; {plural(len(report.problems), 'problem')}, listed above" if report.problems else ""
    written = progress.done - report.counts.get(CROWD_LEFT_OUT, 0)
    print(f"exported {plural(written, 'instance')} to {args.out} in {time.monotonic() - start:.1f} s{problems}")
    return 0


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
