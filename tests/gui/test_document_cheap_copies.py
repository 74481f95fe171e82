"""What keeps large photos cheap on the GUI thread: boxes read off the RLE, bounding boxes that edits only grow, and mask snapshots that copy the box rather than the image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.core import mask_ops
from app.core.mask_ops import mask_bbox
from app.gui.controller import rle_bbox
from app.gui.editor.document import ImageDocument
from app.gui.editor.layers import InstanceLayer, MaskCrop, palette_color


def test_rle_bbox_reads_the_box_off_the_runs() -> None:
    mask = np.zeros((37, 53), np.uint8)
    cv2.ellipse(mask, (30, 18), (15, 9), 20, 0, 360, 1, thickness=-1)
    rle = mask_utils.encode(np.asfortranarray(mask))
    assert rle_bbox(rle) == mask_bbox(mask.astype(bool))
    assert rle_bbox(mask_utils.encode(np.zeros((5, 5), np.uint8, order="F"))) is None


def test_bboxes_given_by_the_loader_are_used_and_grow_with_edits(image_document: ImageDocument) -> None:
    source = image_document
    hint = (0, 0, 150, 150)  # looser than the disc's tight box: taken as given, no scan
    doc = ImageDocument(source.image, 7, [InstanceLayer(2, 2, source.layer(2).mask.copy(), palette_color(2))],
                        bboxes={2: hint})
    assert doc.layer_bbox(2) == hint
    doc.begin_stroke(2, "brush")
    doc.stroke_to([(280, 190)], 5)
    doc.end_stroke()
    assert doc.layer_bbox(2) == (0, 0, 283, 193)
    assert source.layer_bbox(1) == (40, 30, 100, 110)  # no hint: the tight box, computed once


def test_a_snapshot_copies_the_box_and_widens_to_the_image(image_document: ImageDocument) -> None:
    doc = image_document
    snap = doc.snapshot(1)
    assert snap.box == (40, 30, 100, 110) and snap.pixels is not None and snap.pixels.shape == (80, 60)
    assert np.array_equal(snap.full(), doc.layer(1).mask)
    doc.begin_stroke(1, "brush")
    doc.stroke_to([(45, 35)], 3, value=False)
    doc.end_stroke()
    assert not np.array_equal(snap.full(), doc.layer(1).mask)  # a copy, not a view
    region = snap.region((30, 20, 70, 60))  # partly outside the box: empty there
    assert np.array_equal(region, snap.full()[20:60, 30:70])
    empty = MaskCrop((4, 6), None, None)
    assert not empty.full().any() and empty.full().shape == (4, 6) and not empty.region((1, 1, 3, 3)).any()


def test_an_adopted_instance_keeps_the_box_it_came_with_through_undo_and_redo(image_document: ImageDocument,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    doc = image_document
    mask = np.zeros(doc.shape, bool)
    mask[50:90, 200:260] = True
    scans: list[int] = []
    real = mask_ops.mask_bbox
    monkeypatch.setattr(mask_ops, "mask_bbox", lambda m: scans.append(1) or real(m))
    doc.adopt_instance(InstanceLayer(9, 1, mask, palette_color(9)), (200, 50, 260, 90))
    assert doc.layer_bbox(9) == (200, 50, 260, 90)
    doc.undo()
    assert not doc.has_layer(9)
    doc.redo()
    assert doc.layer_bbox(9) == (200, 50, 260, 90) and np.array_equal(doc.layer(9).mask, mask)
    doc.delete_instance(9)
    doc.undo()
    assert doc.layer_bbox(9) == (200, 50, 260, 90) and np.array_equal(doc.layer(9).mask, mask)
    assert not scans  # nothing scanned the whole photo for the box
