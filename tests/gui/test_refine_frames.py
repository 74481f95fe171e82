"""What the refine thread prepares into a frame, on a synthetic step: preview images and undo patches for the
open image's instances, store-ready RLE for another image's, provenance for all; and how the window's
controller uses them only while they still match."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from app.core.records import encode_mask
from app.gui.editor.layers import MaskCrop
from app.gui.editor.preview import DiffColors, qimage_view, render_heat
from app.gui.refine.controller import RefineRun
from app.gui.refine.frames import RefineJob, build_frame
from app.refiner.options import RefineOptions
from app.refiner.steps import MaskPatch, RefineStep

SHAPE = (60, 80)


def square(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_a_frame_carries_previews_patches_store_masks_and_provenance() -> None:
    other, opened = square(10, 10, 30, 30), square(40, 20, 70, 50)  # instance 5: another image's (RLE); 6: open
    box5, box6 = (5, 5, 35, 35), (35, 15, 75, 55)
    refined5 = square(12, 10, 30, 32)[5:35, 5:35]
    refined6 = square(40, 22, 70, 50)[15:55, 35:75]
    crop6 = MaskCrop(SHAPE, (40, 20, 70, 50), opened[20:50, 40:70].copy())
    job = RefineJob(1, RefineOptions(weights="w", steps=1), np.zeros((*SHAPE, 3), np.uint8), [encode_mask(other), crop6],
                    [5, 6], base_versions={6: 3}, focus_id=6, colors=DiffColors(), heat=True, keep_steps=False)
    patches = [MaskPatch(box5, refined5, np.ones(refined5.shape, np.float32), 40, reverse_steps=1),
               MaskPatch(box6, refined6, np.full(refined6.shape, 0.5, np.float32), 60, reverse_steps=1)]
    step = RefineStep(1, 1, "instance", 0, SHAPE, [0, 1], patches, True)
    frame = build_frame(job, step, [other, opened], "compact-v1")

    five, six = frame.instances[5], frame.instances[6]
    assert five.preview is None  # nothing to preview on an image that is not open
    assert six.preview is not None and six.preview.diff is not None and six.preview.heat is not None
    assert six.preview.base_version == 3
    assert six.update is not None and six.update.base_version == 3 and six.update.patch is not None
    assert six.update.patch.rect == (40, 20, 70, 22)  # only the rows that changed
    assert six.as_update() is six.update and six.update.provenance == six.provenance
    assert six.provenance.weights == "compact-v1" and six.provenance.steps == 1
    assert six.provenance.mean_confidence == 0.5 and five.provenance.mean_confidence == 1.0

    want = other.copy()
    want[5:35, 5:35] = refined5
    assert five.rle is not None and six.rle is None
    assert np.array_equal(mask_utils.decode(five.rle).astype(bool), want)


def test_the_controller_keeps_drawn_previews_only_for_the_newest_step() -> None:
    mask = square(10, 10, 30, 30)
    crop = MaskCrop(SHAPE, (10, 10, 30, 30), mask[10:30, 10:30].copy())
    job = RefineJob(2, RefineOptions(steps=2), np.zeros((*SHAPE, 3), np.uint8), [crop], [9], base_versions={9: 0})
    run = RefineRun(job, 1)
    for k in (1, 2):
        patch = MaskPatch((5, 5, 35, 35), square(10, 10, 30, 30 + k)[5:35, 5:35], np.ones((30, 30), np.float32), k,
                          reverse_steps=k)
        run.add(build_frame(job, RefineStep(k, 2, "instance", 6 - k, SHAPE, [0], [patch], k == 2), [mask], "w"))
    assert len(run.snapshots) == 2 and all(s[9].preview is None for s in run.snapshots)
    assert run.state(-1, 9).preview is not None and run.state(1, 9).preview is not None
    assert run.state(0, 9).preview is None and run.state(0, 9).patch.changed == 1


def test_earlier_steps_keep_their_confidence_in_bytes_and_draw_the_same_heat() -> None:
    mask = square(10, 10, 30, 30)
    crop = MaskCrop(SHAPE, (10, 10, 30, 30), mask[10:30, 10:30].copy())
    job = RefineJob(3, RefineOptions(steps=2), np.zeros((*SHAPE, 3), np.uint8), [crop], [9], base_versions={9: 0})
    run = RefineRun(job, 1)
    confidence = np.linspace(0.0, 1.0, 900, dtype=np.float32).reshape(30, 30)
    for k in (1, 2):
        patch = MaskPatch((5, 5, 35, 35), square(10, 10, 30, 30 + k)[5:35, 5:35], confidence, k, reverse_steps=k)
        run.add(build_frame(job, RefineStep(k, 2, "instance", 6 - k, SHAPE, [0], [patch], k == 2), [mask], "w"))
    earlier = run.state(0, 9).patch.confidence
    assert earlier.dtype == np.uint8 and earlier[0, 0] == 0 and earlier[-1, -1] == 255
    assert np.abs(earlier / 255.0 - confidence).max() <= 0.5 / 255 + 1e-6
    assert run.state(-1, 9).patch.confidence.dtype == np.uint8
    kept_heat, heat = render_heat(earlier), render_heat(confidence)
    assert np.array_equal(qimage_view(kept_heat), qimage_view(heat))
    assert run.state(0, 9).provenance.mean_confidence == float(confidence.mean())  # from the float confidence
