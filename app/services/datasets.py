"""Import, validate and export datasets: the jobs behind ``import`` / ``validate`` / ``export`` and the
window's File menu.

A project is one SQLite file, by convention ``<name>.srproj`` (``PROJECT_SUFFIX``); an import writes its
report beside it as ``<name>.import-report.json``. ``progress(done, total)`` callbacks may raise to stop a
job: a new project is only renamed into place once complete, an addition to an existing project is one
transaction, and exports are written to a temporary file and renamed, so a stopped job leaves nothing half
written.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from app.core.atomic import prepare_output, remove_stale_temporaries
from app.core.errors import DatasetError
from app.core.formats.coco_export import CROWD_LEFT_OUT, SEGMENTATION_MODES, SegmentationMode
from app.core.formats.png_masks import no_masks_problem
from app.core.gc_pause import paused_gc
from app.core.images import MISSING_IMAGES
from app.core.records import Dataset, ReviewStatus
from app.core.signals import check_stop
from app.core.report import ExportReport, ImportReport
from app.core.store.errors import ProjectError
from app.core.store.files import project_errors
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from app.core.store.schema import PROJECT_SUFFIX
from app.core.wording import plural
from app.services.formats import (
    ImportRequest, ProjectData, default_export_format, export_format, import_format,
)
from app.services.selection import check_images_folder

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
T = TypeVar("T")
PER_INSTANCE_PNG = re.compile(r".+_\d+\.png$", re.IGNORECASE)

__all__ = ["CROWD_LEFT_OUT", "PROJECT_SUFFIX", "SEGMENTATION_MODES", "ImportRequest", "ImportResult", "detect_format",
           "export_project", "export_report_path", "import_project", "read_dataset", "report_path_for"]


@dataclass
class ImportResult:
    """What an import did: the project written, what it holds, the report of problems found."""

    project: Path
    report: ImportReport
    images: int
    categories: int
    instances: int
    added: bool = False
    renumbered: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def images_missing(self) -> int:
        """Images whose file was not found where the records say (all of them: the wrong images folder)."""
        return self.report.counts.get(MISSING_IMAGES, 0)


SOURCE_FORMATS = {
    "polygon": "as polygons (lists of outline points)",
    "rle": "as compressed RLE masks",
    "uncompressed_rle": "as uncompressed RLE masks (COCO's crowd regions)",
    "mask": "as raster masks (PNG masks, or drawn or changed here)",
    "unknown": "in a form the project does not know",
}


def explain_source_formats(counts: dict[str, int]) -> str:
    """The report's "source format …" counts in words: how each annotation was stored in the imported file."""
    parts = [f"{n} {SOURCE_FORMATS.get(key.removeprefix('source format '), key)}"
             for key, n in counts.items() if key.startswith("source format ")]
    if not parts:
        return ""
    return ("\"Source format\" is how each annotation was stored in the file you imported: "
            + "; ".join(parts) + ". With \"As imported\" (the default; --segmentation source headless), "
            "annotations nobody changed are written back in that form, and every mask changed here (refined or "
            "painted) is written as exact RLE.")


def detect_format(source: Path) -> str:
    """'coco' for a JSON object (the COCO reader tells LVIS apart), 'results' for a JSON list, 'png-instances'
    for a folder whose names end in _<k>.png or with a subfolder per image, else 'png-labels'. JSON may be
    UTF-8, UTF-16 or UTF-32 (``json.detect_encoding``); a folder without PNG masks is an error."""
    if source.is_dir():
        return _detect_folder(source)
    try:
        with open(source, "rb") as f:
            raw = f.read(4096)
    except FileNotFoundError:
        raise DatasetError(source, f"file not found ({source})") from None
    except OSError as e:
        raise DatasetError(source, f"cannot read: {e.strerror or e}") from None
    head = raw.decode(json.detect_encoding(raw), errors="ignore").lstrip("\ufeff \t\r\n")
    if head[:1] == "[":
        return "results"
    if head[:1] == "{":
        return "coco"
    if not raw:
        raise DatasetError(source, "file is empty (0 bytes)")
    raise DatasetError(source, "not a JSON annotation file nor a folder of PNG masks; give the format")


def _detect_folder(source: Path) -> str:
    entries = list(source.iterdir())
    pngs = [p for p in entries if p.suffix.lower() == ".png"]
    folders = [p for p in entries if p.is_dir()]
    if not pngs and not any(p.suffix.lower() == ".png" for folder in folders for p in folder.iterdir()):
        raise DatasetError(source, no_masks_problem(source))
    per_instance = bool(folders) or any(PER_INSTANCE_PNG.match(p.name) for p in pngs)
    return "png-instances" if per_instance else "png-labels"


def _nothing_found(dataset: Dataset, report: ImportReport) -> str | None:
    """Why a dataset that was read holds nothing to import (no images; a results file: no predictions; PNG masks:
    none that matched an image)."""
    png_unmatched = dataset.kind == "png" and not dataset.instances and report.problems  # (empty masks are fine)
    if dataset.images and (dataset.kind != "results" or dataset.instances) and not png_unmatched:
        return None
    what = "images" if not dataset.images else "predictions" if dataset.kind == "results" else "masks"
    if not report.problems:
        return f"holds no {what}: nothing to import"
    first = report.problems[0]
    return (f"no usable {what}: nothing to import ({plural(len(report.problems), 'problem')}, the first: "
            f"{first.record + ': ' if first.record else ''}{first.problem}; run validate for all)")


def read_dataset(request: ImportRequest) -> tuple[Dataset, ImportReport]:
    """Read a dataset in the given or detected format (``validate`` is this alone); problems that stop the
    read raise DatasetError, the others are in the report."""
    check_images_folder(request.images_dir)
    fmt = import_format(request.fmt, request.source) if request.fmt else import_format(
        detect_format(request.source), request.source)
    log.info("reading %s (%s)", request.source, fmt.name)
    dataset, report = fmt.read(request)
    problem = _nothing_found(dataset, report)
    if problem is not None:
        raise DatasetError(request.source, problem)
    return dataset, report


def report_path_for(project: Path) -> Path:
    """Where an import writes its report: beside the project."""
    return project.with_name(f"{project.stem}.import-report.json")


def default_project_path(source: Path) -> Path:
    return source.with_suffix(PROJECT_SUFFIX)


def import_project(request: ImportRequest, project: Path | None = None, *, add: bool = False,
                   progress: ProgressFn | None = None) -> ImportResult:
    """Read a dataset into a new project (or, with ``add``, into an existing one) and write the report."""
    start = time.monotonic()
    project = project or default_project_path(request.source)
    if project.is_dir():
        raise ProjectError(project, f"is a folder: give the project file to write in it, e.g. "
                                    f"{project / default_project_path(request.source).name}")
    if not add:  # before the read, which may take a while: a new project may go into a new folder
        if project.exists():
            raise ProjectError(project, "already exists; open it, or add the dataset to it with --add")
        project.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(project.parent)
    progress = _checked_progress(progress)
    with paused_gc():
        dataset, report = read_dataset(request)
        check_stop()
        renumbered: dict[int, int] = {}
        if add:
            with ProjectStore.open(project) as store:
                if store.read_only:
                    raise ProjectError(project, f"cannot add to it: {store.read_only_reason}")
                if store.source_path is not None and store.source_path.resolve() == request.source.resolve():
                    raise ProjectError(project, f"was made from {request.source}: adding that file again would "
                                                "hold every annotation twice")
                renumbered = dict(store.add_dataset(dataset, progress=progress).renumbered)
        else:
            ProjectStore.create(project, dataset, source_path=request.source, images_dir=request.images_dir,
                                progress=progress).close()
    report.write_json(report_path_for(project))
    return ImportResult(project, report, len(dataset.images), len(dataset.categories), len(dataset.instances),
                        add, renumbered, time.monotonic() - start)


def export_project(
    project: Path,
    fmt: str | None,
    out: Path,
    *,
    segmentation: SegmentationMode = "source",
    accepted_only: bool = False,
    include_proposed: bool = False,
    progress: ProgressFn | None = None,
) -> ExportReport:
    """Export a project's current masks.

    ``fmt`` names a row of ``EXPORT_FORMATS`` (None: the format the project came from); ``segmentation`` is
    one of SEGMENTATION_MODES for JSON formats (see ``write_coco``). Find-similar proposals are written only
    once accepted, unless ``include_proposed`` (docs/decisions/0021). ``progress(done, total)`` follows the
    instances written. The project is opened read-only, so a window editing it can go on.
    """
    writer = export_format(fmt, out) if fmt is not None else None
    if segmentation not in SEGMENTATION_MODES:
        raise DatasetError(out, f"segmentation must be one of {', '.join(SEGMENTATION_MODES)}, not {segmentation!r}")
    with paused_gc(), project_errors(project), ProjectStore.open(project, read_only=True) as store:
        writer = writer or export_format(default_export_format(store.kind), out)
        prepare_output(out, folder=not writer.json)
        stale = remove_stale_temporaries(out.parent if writer.json else out)
        statuses = [ReviewStatus.ACCEPTED] if accepted_only else None
        total = store.count_instances(InstanceFilter(statuses=statuses, proposals=include_proposed))
        by_status = store.count_instances(InstanceFilter(statuses=statuses))
        instances = store.iter_instances(statuses=statuses, by_image=writer.by_image, proposals=include_proposed)
        if progress is not None:
            report_progress = progress
            report_progress(0, total)
            instances = counted(instances, lambda done: report_progress(done, total))
        data = ProjectData(store.extra, store.images(), store.categories(), instances)
        report = writer.write(out, data, segmentation)
        excluded = store.count_instances() - by_status
    if excluded:
        report.counts["excluded by status"] += excluded
    if stale:
        report.counts["leftover temporary files removed"] += len(stale)
    if by_status > total:
        report.counts["proposals not accepted (left out)"] += by_status - total
    if report.problems:  # the window and the command line list the first few; the file keeps every one
        report.write_json(export_report_path(out, writer.json))
    return report


def export_report_path(out: Path, json_file: bool) -> Path:
    """Where an export with problems writes its whole report: beside the file, or beside the PNG folder."""
    return out.with_name(f"{out.stem if json_file else out.name}.export-report.json")


def _checked_progress(progress: ProgressFn | None) -> ProgressFn:
    """``progress`` that first stops the import (``Terminated``) if SIGTERM or SIGHUP arrived: it is called
    between instances stored, where the store's own clean-up leaves nothing half written (exports stop in
    their writers, ``app.core.signals``)."""
    def checked(done: int, total: int) -> None:
        check_stop()
        if progress is not None:
            progress(done, total)
    return checked


def counted(items: Iterable[T], progress: Callable[[int], None]) -> Iterator[T]:
    """Pass items through, reporting how many went by."""
    for done, item in enumerate(items, 1):
        progress(done)
        yield item
