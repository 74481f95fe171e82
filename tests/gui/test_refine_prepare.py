"""What the refine thread prepares for the GUI thread, on a synthetic step: preview images and undo
patches for the open image's instances, store-ready RLE for another image's, each used only while it
still matches."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from pycocotools import mask as mask_utils

from app.core.records import encode_mask
from app.gui.refine.controller import RefineChoice, RefineController, RefineRun
from app.gui.editor.document import MaskCrop
from app.gui.editor.preview import DiffColors
from app.gui.refine.worker import RefineJob
from app.refiner.steps import MaskPatch, RefineStep

SHAPE = (60, 80)


def square(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_prepare_draws_previews_patches_and_store_masks_ahead() -> None:
    other, opened = square(10, 10, 30, 30), square(40, 20, 70, 50)  # instance 5: another image's (RLE); 6: open
    box5, box6 = (5, 5, 35, 35), (35, 15, 75, 55)
    refined5 = square(12, 10, 30, 32)[5:35, 5:35]
    refined6 = square(40, 22, 70, 50)[15:55, 35:75]
    crop6 = MaskCrop(SHAPE, (40, 20, 70, 50), opened[20:50, 40:70].copy())
    job = RefineJob(1, "w", "cpu", "instance", 1, 0, np.zeros((*SHAPE, 3), np.uint8), [encode_mask(other), crop6], [5, 6])
    run = RefineRun(job, 1, RefineChoice("w", "cpu", "instance", 1, 0), {5: job.masks[0], 6: crop6}, keep_all=False,
                    base_versions={6: 3}, focus_id=6)
    patches = [MaskPatch(box5, refined5, np.ones(refined5.shape, np.float32), 40, reverse_steps=1),
               MaskPatch(box6, refined6, np.full(refined6.shape, 0.5, np.float32), 60, reverse_steps=1)]
    step = RefineStep(1, 1, "instance", 0, SHAPE, [0, 1], patches, True)
    controller = SimpleNamespace(diff_colors=DiffColors(), want_confidence=True)
    RefineController._prepare(controller, run, step, [other, opened])  # type: ignore[arg-type]

    assert (1, 5) not in run.frames  # nothing to preview on an image that is not open
    frame = run.frames[(1, 6)]
    assert frame.diff is not None and frame.heat is not None and frame.base_version == 3
    update = run.updates[6]
    assert update.base_version == 3 and update.patch is not None
    assert update.patch.rect == (40, 20, 70, 22)  # only the rows that changed
    state = run.add(step)
    applied = run.update(6, state[6])
    assert applied.patch is update.patch and applied.provenance is not None and applied.provenance["steps"] == 1

    want = other.copy()
    want[5:35, 5:35] = refined5
    assert 5 in run.encoded and 6 not in run.encoded
    rle, provenance, confidence = run.stored_mask(5, state[5], SHAPE)
    assert rle is run.encoded[5][1] and np.array_equal(mask_utils.decode(rle).astype(bool), want)
    assert provenance.steps == 1 and confidence == 1.0
    stale = RefineStep(2, 2, "instance", 0, SHAPE, [0], [MaskPatch(box5, refined5.copy(), patches[0].confidence, 40, reverse_steps=2)], True)
    newer = run.add(stale)  # a state the refine thread did not encode: encoded here, same pixels
    rle2, _, _ = run.stored_mask(5, newer[5], SHAPE)
    assert rle2 is not run.encoded[5][1] and rle2["counts"] == rle["counts"]
