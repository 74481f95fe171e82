"""Headless refinement of a whole project: a model's coarse masks in, refined masks and provenance out.

Every refined instance is written to the project store in its own transaction, with a REFINED provenance
(weights, mode, steps) and an edit in its history, so an interrupted run loses at most the image in progress
and a second run resumes: instances already refined are skipped unless asked to redo them. Locked and
crowd instances are left alone; an image that cannot be read is reported and skipped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from itertools import groupby
from typing import Callable, Collection, Iterable

from app.core.errors import DatasetError
from app.core.images import read_image_rgb
from app.core.records import ChangeKind, Provenance, ReviewStatus
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from app.core.store.rows import InstanceSummary
from app.refiner.api import Refiner, RefineOptions
from app.refiner.steps import MaskPatch, RefineStep

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
"""(instances done, instances selected, what just happened)"""


@dataclass(frozen=True)
class Selection:
    """Which instances of a project to refine."""

    statuses: Collection[ReviewStatus] | None = (ReviewStatus.UNREVIEWED,)
    category_ids: Collection[int] | None = None
    min_score: float | None = None
    redo: bool = False
    include_crowd: bool = False
    limit: int | None = None

    def query(self) -> InstanceFilter:
        kinds = None if self.redo else [k for k in ChangeKind if k is not ChangeKind.REFINED]
        return InstanceFilter(statuses=self.statuses, category_ids=self.category_ids, min_score=self.min_score,
                              provenance_kinds=kinds, sort_by="id")

    def pick(self, rows: list[InstanceSummary]) -> list[InstanceSummary]:
        kept = [r for r in rows if not r.locked and (self.include_crowd or not r.iscrowd)]
        return kept[: self.limit] if self.limit is not None else kept


@dataclass
class BatchReport:
    """What a run did; ``problems`` names each image that could not be refined and why."""

    selected: int = 0
    refined: int = 0
    unchanged: int = 0
    passed_through: int = 0
    images: int = 0
    changed_pixels: int = 0
    seconds: float = 0.0
    stopped: bool = False
    problems: list[str] = field(default_factory=list)


def refine_project(
    store: ProjectStore,
    refiner: Refiner,
    options: RefineOptions = RefineOptions(),
    selection: Selection = Selection(),
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> BatchReport:
    """Refine the selected instances image by image and save each result; see the module docstring."""
    report = BatchReport()
    started = time.perf_counter()
    rows = selection.pick(store.list_instances(selection.query()))
    report.selected = len(rows)
    rows.sort(key=lambda r: (r.image_id, r.id))
    done = 0
    for image_id, group in groupby(rows, key=lambda r: r.image_id):
        if should_stop():
            report.stopped = True
            break
        ids = [r.id for r in group]
        what = _refine_image(store, refiner, options, image_id, ids, report)
        done += len(ids)
        report.images += 1
        if progress is not None:
            progress(done, report.selected, what)
    report.seconds = time.perf_counter() - started
    return report


def _refine_image(store: ProjectStore, refiner: Refiner, options: RefineOptions, image_id: int, ids: list[int],
                  report: BatchReport) -> str:
    record = store.image(image_id)
    path = store.image_path(record)
    try:
        if path is None:
            raise DatasetError(record.file_name, "image folder unknown: pass --images-dir")
        image = read_image_rgb(path)
    except DatasetError as error:
        report.problems.append(str(error))
        log.warning("skipped image %s: %s", image_id, error)
        return f"image {image_id}: skipped ({error.problem})"
    stored = {inst.id: inst for inst in store.instances_for_image(image_id)}  # one query, masks decoded below
    masks = [stored[i].mask() for i in ids]
    if masks and masks[0].shape != image.shape[:2]:
        problem = f"{path}: the image is {image.shape[1]}x{image.shape[0]} but its masks are {masks[0].shape[1]}x{masks[0].shape[0]}"
        report.problems.append(problem)
        return f"image {image_id}: skipped (size mismatch)"
    started = time.perf_counter()
    if options.mode == "hr":  # one mask per run
        runs = [(k, refiner.run(image, [mask], options)) for k, mask in enumerate(masks)]
    else:
        runs = [(0, refiner.run(image, masks, options))]
    finals = {k: patch for offset, run in runs for k, patch in _final_patches(run, offset)}
    changed_here = 0
    for k, instance_id in enumerate(ids):
        patch = finals[k]
        if patch.skipped:
            report.passed_through += 1
            continue
        refined = patch.full_mask(image.shape[:2], masks[k])
        provenance = Provenance(ChangeKind.REFINED, refiner.name, options.mode, patch.reverse_steps)
        store.set_mask(instance_id, refined, provenance=provenance, mean_confidence=float(patch.confidence.mean()))
        report.refined += 1
        report.unchanged += patch.changed == 0
        changed_here += patch.changed
    report.changed_pixels += changed_here
    return f"image {image_id} ({path.name}): {len(ids)} instance(s), {changed_here} px changed, {time.perf_counter() - started:.1f} s"


def _final_patches(steps: Iterable[RefineStep], offset: int = 0) -> list[tuple[int, MaskPatch]]:
    """(index, last patch) for every instance a run yields."""
    last: dict[int, MaskPatch] = {}
    for step in steps:
        for index, patch in zip(step.indices, step.results):
            last[index] = patch
    return [(offset + i, patch) for i, patch in last.items()]
