"""What the refine thread sends the GUI thread: one self-contained ``RefineFrame`` per step.

A frame holds everything the GUI thread needs to show or apply the step, prepared on the refine thread from
the job alone (``build_frame`` is a pure function of the job, the step and the decoded masks): the step's
patches with their provenance, the preview images of the instance the GUI will show (drawn against the
instance's pixels at the version the job was made from), and at the last step the undo patches of the open
image's instances or the store-ready RLE of another image's. The frame is immutable once sent, so nothing
is shared between the threads but these values (docs/decisions/0008, 0014).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from app.core.records import Provenance, decode_mask
from app.gui.editor.layers import MaskCrop, MaskUpdate, prepare_update
from app.gui.editor.preview import DiffColors, Preview, prepare_preview
from app.refiner.options import RefineOptions
from app.refiner.steps import MaskPatch, RefineStep
from app.services.refine import encoded, refined_provenance

MaskInput = np.ndarray | dict[str, Any] | MaskCrop
"""A (H, W) bool mask, a compressed COCO RLE, or a document's MaskCrop; made whole on the refine thread."""


@dataclass(frozen=True)
class RefineJob:
    """One run of the refiner over some instances of one image, and what to prepare for the GUI.

    ``base_versions`` are the open document's mask versions of the instances when their ``MaskCrop``s were
    taken (empty for an image that is not open); previews are drawn for each step's first instance and for
    ``focus_id``. ``min_frame_s`` is the shortest time between frames, so fast devices still animate.
    """

    job_id: int
    options: RefineOptions
    image: np.ndarray | Path
    masks: Sequence[MaskInput]
    instance_ids: Sequence[int]
    region: np.ndarray | None = None
    foreground: np.ndarray | None = None
    background: np.ndarray | None = None
    min_frame_s: float = 0.0
    base_versions: Mapping[int, int] = field(default_factory=dict)
    focus_id: int | None = None
    colors: DiffColors = field(default_factory=DiffColors)
    heat: bool = False
    keep_steps: bool = True
    """Whether the GUI keeps every step (the scrubber) or only the latest (the queue). Kept steps carry their
    confidence as uint8 (quantised here, on the refine thread): 2 bytes a box pixel instead of 5."""


@dataclass(frozen=True)
class InstanceFrame:
    """One instance at one step: its patch, what accepting it records, and what was prepared for it."""

    instance_id: int
    patch: MaskPatch
    provenance: Provenance
    preview: Preview | None = None
    update: MaskUpdate | None = None
    """Last step, open image: the undo patch worked out against ``base_version`` of the instance."""
    rle: dict[str, Any] | None = None
    """Last step, another image: the full refined mask, encoded for the store."""

    def as_update(self) -> MaskUpdate:
        """Applying this state: with the prepared patch when there is one (the document checks its version)."""
        if self.update is not None:
            return self.update
        return MaskUpdate(self.instance_id, self.patch.box, self.patch.mask, self.provenance)

    def as_preview(self) -> Preview:
        """The preview as drawn on the refine thread, else as arrays for the canvas to draw."""
        if self.preview is not None:
            return self.preview
        return Preview(self.instance_id, self.patch.box, self.patch.mask, self.patch.confidence)


@dataclass(frozen=True)
class RefineFrame:
    """One step of a job: ``instances`` holds the instances this step moved (a batch at a time)."""

    job_id: int
    step: RefineStep
    instances: dict[int, InstanceFrame]

    @property
    def first_id(self) -> int:
        return next(iter(self.instances))


def quantized(confidence: np.ndarray) -> np.ndarray:
    """A float confidence in [0, 1] as uint8 (255: sure)."""
    return cv2.convertScaleAbs(confidence, alpha=255.0)


def whole_mask(mask: MaskInput) -> np.ndarray:
    """A mask input as a full (H, W) bool array (on the refine thread)."""
    if isinstance(mask, np.ndarray):
        return mask.astype(bool, copy=False)
    if isinstance(mask, MaskCrop):
        return mask.full()
    return decode_mask(mask)


def build_frame(job: RefineJob, step: RefineStep, masks: Sequence[np.ndarray], weights: str) -> RefineFrame:
    """The frame of ``step``; ``masks`` are the job's masks made whole, in the job's order; ``weights`` the
    name of the weights that ran (what provenance records)."""
    instances: dict[int, InstanceFrame] = {}
    first = True
    for index, patch in zip(step.indices, step.results):
        k = index
        instance_id = job.instance_ids[k]
        provenance = refined_provenance(weights, job.options, patch)
        if job.keep_steps:  # the scrubber keeps every step: the confidence in 1/255 steps, what the heat draws anyway
            patch = replace(patch, confidence=quantized(patch.confidence))
        preview = update = rle = None
        coarse = job.masks[k]
        version = job.base_versions.get(instance_id)
        if not patch.skipped:
            if isinstance(coarse, MaskCrop) and version is not None:
                before = coarse.region(patch.box)
                if first or instance_id == job.focus_id:
                    preview = prepare_preview(instance_id, patch.box, patch.mask, patch.confidence, before, version,
                                              job.colors, job.heat)
                if step.final:
                    update = prepare_update(instance_id, patch.box, patch.mask, before, version, provenance)
            elif step.final and not job.keep_steps:
                rle = encoded(patch, masks[k])
        instances[instance_id] = InstanceFrame(instance_id, patch, provenance, preview, update, rle)
        first = False
    return RefineFrame(job.job_id, step, instances)
