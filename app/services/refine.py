"""Refining instances of a project and saving the results: the headless ``refine`` and ``refine-image``, and
the one "save a refinement" the window's queue uses too.

Every refined instance is written to the project store in its own transaction, with a REFINED
``Provenance`` (weights, mode, reverse steps, mean confidence) and an edit in its history, so an interrupted
run loses at most the image in progress and a second run resumes: the selection (app/services/selection.py)
skips instances already refined unless asked to redo them. An image that cannot be read is reported and
skipped. torch is imported only when a refiner is loaded (``load_refiner``).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from app.core.atomic import prepare_output
from app.core.errors import DatasetError
from app.core.images import read_image_rgb, read_image_unchanged
from app.core.records import Provenance, ReviewStatus, encode_mask
from app.core.signals import check_stop
from app.core.store.project import MaskLike, ProjectStore
from app.core.wording import plural
from app.refiner.options import MODES, NUM_TIMESTEPS, RefineOptions
from app.refiner.steps import MaskPatch, RefineStep
from app.services.selection import (
    TOO_SMALL, Selection, check_categories, check_images_folder, image_file, plan_refinement,
)

if TYPE_CHECKING:
    from app.refiner.api import Refiner
    from app.refiner.pipeline import Guidance

log = logging.getLogger(__name__)

__all__ = ["MODES", "NUM_TIMESTEPS", "TOO_SMALL", "BatchReport", "MaskFiles", "RefineOptions", "ReviewStatus",
           "Selection", "check_categories", "encoded", "load_refiner", "open_for_refining", "read_refine_inputs", "refine_image_steps",
           "refine_project", "refined_mask", "refined_provenance", "save_refinement"]

Progress = Callable[[int, int, str], None]
"""(instances done, instances selected, what just happened)"""


def load_refiner(options: RefineOptions, compile: bool = False) -> Refiner:
    """The refiner for ``options.weights`` on ``options.device`` (imports torch: the first call takes seconds)."""
    from app.refiner.api import Refiner

    return Refiner(options.weights, options.torch_device, compile=compile)


def refined_provenance(weights: str, options: RefineOptions, patch: MaskPatch) -> Provenance:
    """What a refinement records: the name of the weights that ran (``Refiner.name``: a registry name, or a
    file's name), the mode, the reverse steps behind ``patch`` and the model's mean confidence over its crop."""
    confidence = float(patch.confidence.mean()) if patch.confidence.size else 0.0
    return Provenance.refined(weights, options.mode, patch.reverse_steps, confidence)


def refined_mask(patch: MaskPatch, coarse: np.ndarray) -> np.ndarray:
    """The full-resolution refined mask: ``patch`` inside its box, ``coarse`` elsewhere."""
    return patch.full_mask(coarse.shape, coarse)


def save_refinement(store: ProjectStore, instance_id: int, mask: MaskLike, provenance: Provenance) -> None:
    """Write a refined mask (a full-resolution array, or its RLE) with its provenance: one transaction."""
    if not provenance.is_refined:
        raise ValueError(f"instance {instance_id}: a refinement needs a REFINED provenance, got {provenance.kind}")
    store.set_mask(instance_id, mask, provenance=provenance)


@contextmanager
def open_for_refining(project: Path, images_dir: Path | None = None) -> Iterator[ProjectStore]:
    """The project opened for writing (ProjectError naming it when another window holds it), pointed at
    ``images_dir`` first when given."""
    check_images_folder(images_dir)
    store = ProjectStore.open(project)
    try:
        if store.read_only:
            raise DatasetError(project, f"cannot write to it ({store.read_only_reason})")
        if images_dir is not None:
            store.set_images_dir(images_dir)
        yield store
    finally:
        store.close()


@dataclass
class BatchReport:
    """What a run did; ``problems`` names each image that could not be refined and why."""

    selected: int = 0
    refined: int = 0
    unchanged: int = 0
    passed_through: int = 0
    kept_out: Counter[str] = field(default_factory=Counter)
    """Instances the selection matched that the rules keep out, by reason (app/services/selection.py)."""
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
    plan = plan_refinement(store, selection)
    by_image, report.kept_out = plan.by_image, plan.skipped
    report.selected = plan.total
    done = 0
    for image_id, ids in by_image.items():
        check_stop()  # SIGTERM / SIGHUP: between images, each saved in its own transaction
        if should_stop():
            report.stopped = True
            break
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
    try:
        path = image_file(store, record)
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
    finals = refiner.final_patches(image, masks, options)
    changed_here = 0
    for k, instance_id in enumerate(ids):
        patch = finals[k]
        if patch.skipped:
            report.passed_through += 1
            continue
        save_refinement(store, instance_id, refined_mask(patch, masks[k]),
                        refined_provenance(refiner.name, options, patch))
        report.refined += 1
        report.unchanged += patch.changed == 0
        changed_here += patch.changed
    report.changed_pixels += changed_here
    return f"image {image_id} ({path.name}): {plural(len(ids), 'instance')}, {changed_here} px changed, {time.perf_counter() - started:.1f} s"


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A binary mask PNG of the image's size: values >= 128 are foreground in a mask that reaches 128 (0/255,
    anti-aliased), every nonzero value in one that does not (0/1, or a label map's 1, 2, ...)."""
    mask = read_image_unchanged(path)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != shape:
        raise DatasetError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {shape[1]}x{shape[0]}")
    return mask >= 128 if mask.max() >= 128 else mask > 0


@dataclass(frozen=True)
class MaskFiles:
    """``refine-image``'s inputs: the image, its coarse mask and optional guidance masks (PNG files)."""

    image: Path
    mask: Path
    region: Path | None = None
    foreground: Path | None = None
    background: Path | None = None


def check_outputs(out: Path, steps: Path | None = None) -> None:
    """``refine-image``'s mask file and step folder checked writable (their folders made) before any work.

    The mask is written as a PNG (lossless): another suffix would give a file whose name says another format."""
    if out.suffix.lower() != ".png" and not out.is_dir():
        raise DatasetError(out, "a mask is written as PNG: give a file name ending in .png")
    prepare_output(out)
    if steps is not None:
        prepare_output(steps, folder=True)


@dataclass
class RefineInputs:
    """``refine-image``'s inputs, read and checked: the photo, the coarse mask and the guidance masks."""

    image: np.ndarray
    coarse: np.ndarray
    guidance: Guidance


def read_refine_inputs(files: MaskFiles) -> RefineInputs:
    """Read the files of one ``refine-image`` run, before any weights load: a missing or bad file is named first."""
    from app.refiner.pipeline import Guidance

    image = read_image_rgb(files.image)
    shape = image.shape[:2]

    def optional(path: Path | None) -> np.ndarray | None:
        return None if path is None else read_mask(path, shape)

    guidance = Guidance(region=optional(files.region), foreground=optional(files.foreground),
                        background=optional(files.background))
    coarse = read_mask(files.mask, shape)
    if not coarse.any():
        raise DatasetError(files.mask, "the mask is empty: no foreground pixel to refine")
    return RefineInputs(image, coarse, guidance)


def refine_image_steps(refiner: Refiner, inputs: RefineInputs, options: RefineOptions) -> Iterator[RefineStep]:
    """Every step of refining one coarse mask of one image, with the guidance the files gave."""
    return refiner.run(inputs.image, [inputs.coarse], options, inputs.guidance)


def encoded(patch: MaskPatch, coarse: np.ndarray) -> dict[str, Any]:
    """The RLE of a refined mask, as ``save_refinement`` takes it (encode off the GUI thread)."""
    return encode_mask(refined_mask(patch, coarse))
