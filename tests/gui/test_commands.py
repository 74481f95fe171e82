"""The document's edit API and its undo commands: rectangle deltas, 500+ levels, signals, provenance."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from app.core.records import Provenance
from app.gui.editor.commands import HISTORY_ACTION, PatchCommand
from app.gui.editor.document import UNDO_LIMIT, ImageDocument
from app.gui.editor.layers import InstanceLayer, MaskUpdate, palette_color, prepare_update
from app.gui.editor.preview import Preview


STEPS_1 = Provenance.refined("w", "instance", 1, 0.5)
STEPS_2 = Provenance.refined("w", "instance", 2, 0.5)

def stroke(doc: ImageDocument, target: int | str, points: list[tuple[int, int]], size: int = 5, value: bool = True) -> None:
    assert doc.begin_stroke(target, "brush")
    for a, b in zip(points[:-1], points[1:]):
        doc.stroke_to([a, b], size, value)
    doc.end_stroke()


def test_a_stroke_of_many_segments_is_one_undo_step(image_document: ImageDocument) -> None:
    doc = image_document
    before = doc.layer(1).mask.copy()
    stroke(doc, 1, [(120, 20), (125, 20), (132, 20), (140, 20)])
    assert doc.undo_stack.count() == 1
    assert doc.undo_stack.command(0).text() == "Brush #1"
    assert doc.layer(1).mask[18:23, 120:141].all()
    after = doc.layer(1).mask.copy()
    doc.undo()
    assert (doc.layer(1).mask == before).all()
    doc.redo()
    assert (doc.layer(1).mask == after).all()


def test_patch_keeps_only_the_changed_rectangle_packed(image_document: ImageDocument) -> None:
    doc = image_document
    stroke(doc, 1, [(120, 20), (140, 20)], size=5)
    command = doc.undo_stack.command(0)
    assert isinstance(command, PatchCommand)
    (patch,) = command.patches
    assert patch.rect == (118, 18, 143, 23)
    assert command.nbytes == 2 * ((25 * 5 + 7) // 8)


def test_stroke_that_changes_nothing_leaves_no_undo_step(image_document: ImageDocument) -> None:
    doc = image_document
    stroke(doc, 1, [(50, 40), (55, 40)])  # inside the already filled box
    stroke(doc, 1, [(200, 190), (210, 190)], value=False)  # erasing where there is nothing
    assert doc.undo_stack.count() == 0


def test_six_hundred_undo_levels_stay_cheap_and_exact(image_document: ImageDocument) -> None:
    doc = image_document
    assert doc.undo_stack.undoLimit() >= 500 and UNDO_LIMIT >= 500
    original = doc.layer(2).mask.copy()
    states = []
    for i in range(600):
        x, y = 5 + (i // 2 * 7) % 290, 5 + (i // 2 * 13) % 190
        paint = not doc.layer(2).mask[y, x]
        stroke(doc, 2, [(x, y), (x + 3, y + 1)], size=3, value=paint)  # always changes something
        states.append(doc.layer(2).mask.copy())
    commands = [doc.undo_stack.command(i) for i in range(doc.undo_stack.count())]
    assert len(commands) == 600
    assert sum(c.nbytes for c in commands) < 600 * 2 * 8  # a few bytes each, not a mask each
    for _ in range(600):
        doc.undo()
    assert (doc.layer(2).mask == original).all()
    for _ in range(600):
        doc.redo()
    assert (doc.layer(2).mask == states[-1]).all()
    for _ in range(250):
        doc.undo()
    assert (doc.layer(2).mask == states[349]).all()


def test_thousands_of_qt_calls_keep_singleton_refcounts(image_document: ImageDocument) -> None:
    """PySide6 6.12.0 on Python 3.11 dropped a reference to None / True per void call and emit until CPython
    aborted; pyproject excludes it (docs/decisions/0004). A regression would show as a falling count."""
    timer = QTimer()
    before = sys.getrefcount(None), sys.getrefcount(False)
    for _ in range(20000):
        image_document.preview_changed.emit()
        timer.stop()
    after = sys.getrefcount(None), sys.getrefcount(False)
    assert after[0] >= before[0] - 100 and after[1] >= before[1] - 100


def test_edited_is_emitted_on_do_undo_and_redo(image_document: ImageDocument) -> None:
    doc = image_document
    seen: list[tuple[int, str]] = []
    doc.edited.connect(lambda i, action: seen.append((i, action)))
    stroke(doc, 2, [(10, 10), (20, 10)])
    doc.undo()
    doc.redo()
    assert seen == [(2, "brush"), (2, HISTORY_ACTION), (2, HISTORY_ACTION)]  # saved as reverts of the stroke


def test_guidance_strokes_do_not_emit_edited_but_are_undoable(image_document: ImageDocument) -> None:
    doc = image_document
    seen: list[tuple[int, str]] = []
    doc.edited.connect(lambda i, action: seen.append((i, action)))
    assert doc.region is None
    stroke(doc, "region", [(10, 10), (30, 10)])
    assert doc.region is not None and doc.region[10, 10:31].all()
    doc.undo()
    assert not doc.region.any()
    assert seen == []


def test_foreground_and_background_constraints_exclude_each_other(image_document: ImageDocument) -> None:
    doc = image_document
    stroke(doc, "background", [(10, 100), (60, 100)], size=9)
    stroke(doc, "foreground", [(30, 90), (30, 110)], size=3)
    assert doc.foreground is not None and doc.background is not None
    assert doc.foreground[90:111, 30].all()
    assert not doc.background[100, 29:32].any()
    assert doc.background[100, 10:28].all() and doc.background[100, 33:61].all()
    snapshot = doc.guidance_snapshot()
    assert snapshot["region"] is None
    assert snapshot["foreground"] is not None and (snapshot["foreground"] == doc.foreground).all()
    assert snapshot["foreground"] is not doc.foreground
    doc.clear_guidance()
    assert not doc.foreground.any() and not doc.background.any()
    doc.undo()
    assert doc.foreground[90:111, 30].all() and doc.background[100, 10:28].all()


def test_cancel_stroke_restores_pixels_without_an_undo_step(image_document: ImageDocument) -> None:
    doc = image_document
    before = doc.layer(1).mask.copy()
    assert doc.begin_stroke(1, "eraser")
    doc.stroke_to([(45, 40), (95, 100)], 9, False)
    assert not (doc.layer(1).mask == before).all()
    doc.cancel_stroke()
    assert (doc.layer(1).mask == before).all()
    assert doc.undo_stack.count() == 0


def test_locked_instance_cannot_be_painted(image_document: ImageDocument) -> None:
    doc = image_document
    before = doc.layer(3).mask.copy()
    assert not doc.begin_stroke(3, "brush")
    assert doc.stroke_to([(10, 10)], 5) is None
    assert doc.fill(3, (5, 5)) is None
    assert doc.lasso(3, [(0, 0), (10, 0), (10, 10)]) is None
    assert (doc.layer(3).mask == before).all()
    assert doc.undo_stack.count() == 0


def test_fill_and_lasso_are_undo_steps_with_small_patches(image_document: ImageDocument) -> None:
    doc = image_document
    assert doc.fill(1, (70, 60)) == (60, 50, 80, 70)
    assert doc.layer(1).mask[30:110, 40:100].all()
    fill_cmd = doc.undo_stack.command(0)
    assert fill_cmd.patches[0].rect == (60, 50, 80, 70)
    doc.lasso(1, [(40, 30), (70, 30), (70, 60), (40, 60)], False)
    assert not doc.layer(1).mask[30:61, 40:71].any()
    assert doc.undo_stack.count() == 2
    doc.undo()
    doc.undo()
    assert not doc.layer(1).mask[50:70, 60:80].any()
    assert doc.layer(1).mask[30:50, 40:100].all()


def test_accept_refinement_records_provenance_and_undoes(image_document: ImageDocument) -> None:
    doc = image_document
    refined = doc.layer(2).mask.copy()
    refined[95:105, 205:215] = True
    refined[70:75, 170:190] = False
    seen: list[tuple[int, str]] = []
    doc.edited.connect(lambda i, action: seen.append((i, action)))
    provenance = Provenance.refined("compact", "instance", 6, 0.9)
    assert doc.apply_mask(2, refined, "refine", provenance)
    assert (doc.layer(2).mask == refined).all()
    assert doc.layer(2).provenance == provenance
    (patch,) = doc.undo_stack.command(0).patches
    assert patch.rect == (170, 70, 215, 105)
    assert doc.undo_stack.command(0).text() == "Accept refinement #2"
    doc.undo()
    assert doc.layer(2).provenance is None and not doc.layer(2).mask[95:105, 205:215].all()
    assert seen == [(2, "refine"), (2, HISTORY_ACTION)]


def test_accept_without_change_still_records_provenance(image_document: ImageDocument) -> None:
    doc = image_document
    refined = Provenance.refined("compact", "instance", 6, 1.0)
    assert not doc.apply_mask(2, doc.layer(2).mask.copy(), "refine", refined)
    assert doc.layer(2).provenance == refined
    doc.undo()
    assert doc.layer(2).provenance is None


@pytest.mark.parametrize(
    ("method", "field", "value", "action"),
    [
        ("set_status", "status", "accepted", "status"),
        ("set_category", "category_id", 5, "category"),
        ("set_visible", "visible", False, "visibility"),
        ("set_locked", "locked", True, "lock"),
        ("set_z", "z", 9, "z-order"),
    ],
)
def test_property_commands_undo_and_signal(image_document: ImageDocument, method: str, field: str, value: object, action: str) -> None:
    doc = image_document
    old = getattr(doc.layer(1), field)
    edited: list[tuple[int, str]] = []
    changed: list[tuple[int, str]] = []
    doc.edited.connect(lambda i, a: edited.append((i, a)))
    doc.layer_changed.connect(lambda i, f: changed.append((i, f)))
    getattr(doc, method)(1, value)
    assert getattr(doc.layer(1), field) == value
    doc.undo()
    assert getattr(doc.layer(1), field) == old
    doc.redo()
    assert getattr(doc.layer(1), field) == value
    assert edited == [(1, action)] * 3 and changed == [(1, field)] * 3
    getattr(doc, method)(1, value)  # no change, no step
    assert doc.undo_stack.count() == 1


def test_z_order_decides_draw_order_and_picking(image_document: ImageDocument) -> None:
    doc = image_document
    over = np.zeros(doc.shape, dtype=bool)
    over[40:60, 40:60] = True
    new_id = doc.add_instance(4, over)
    assert new_id == 4 and doc.layers()[-1].id == 4
    assert doc.instance_at(45, 45) == 4
    doc.send_to_back(4)
    assert doc.layers()[0].id == 4 and doc.instance_at(45, 45) == 1
    doc.set_visible(1, False)
    assert doc.instance_at(45, 45) == 4
    assert doc.instance_at(65, 60) is None  # in the hole of 1, outside 4
    assert doc.instance_at(-1, 5) is None


def test_add_and_delete_instance_undo(image_document: ImageDocument) -> None:
    doc = image_document
    mask = np.zeros(doc.shape, dtype=bool)
    mask[150:190, 10:60] = True
    mask[160:170, 20:30] = False
    doc.id_allocator = lambda _category: 1000
    new_id = doc.add_instance(2, mask)
    assert new_id == 1000 and doc.layer(1000).category_id == 2
    doc.select(1000)
    doc.delete_instance(1000)
    assert not doc.has_layer(1000) and doc.selected_id is None
    doc.undo()
    assert (doc.layer(1000).mask == mask).all()
    doc.undo()
    assert not doc.has_layer(1000)
    doc.redo()
    doc.redo()
    assert not doc.has_layer(1000)
    with pytest.raises(ValueError, match="already exists"):
        doc.add_instance(1, mask, instance_id=2)


def test_delete_keeps_only_the_packed_bbox(image_document: ImageDocument) -> None:
    doc = image_document
    doc.delete_instance(2)
    command = doc.undo_stack.command(0)
    assert command.packed.layer.mask.size == 0
    assert command.packed.pixels is not None and command.packed.pixels.nbytes <= (61 * 61 + 7) // 8


def test_preview_set_and_clear(image_document: ImageDocument) -> None:
    doc = image_document
    count = []
    doc.preview_changed.connect(lambda: count.append(1))
    mask = doc.layer(2).mask[60:140, 140:220].copy()
    doc.set_preview(Preview(2, (140, 60, 220, 140), mask, np.ones(mask.shape, np.float32)))
    assert doc.preview_instance_id == 2 and doc.preview is not None and doc.preview.box == (140, 60, 220, 140)
    assert np.array_equal(doc.preview.full_mask(doc.layer(2).mask), doc.layer(2).mask)
    doc.clear_preview()
    assert doc.preview is None and doc.preview_instance_id is None
    doc.clear_preview()
    assert len(count) == 2


def test_a_refinement_applied_in_its_box_keeps_the_rest_and_is_one_step(image_document: ImageDocument) -> None:
    doc = image_document
    before = {i: doc.layer(i).mask.copy() for i in (1, 2)}
    box2 = (160, 80, 200, 120)
    inside = np.zeros((40, 40), bool)  # clears the middle of the disc, keeps its rim outside the box
    prepared = prepare_update(2, box2, inside, doc.layer(2).mask[80:120, 160:200], doc.mask_version(2),
                              STEPS_2)
    assert prepared.patch is not None and prepared.patch.rect == box2
    box1 = (30, 20, 110, 120)
    grown = doc.layer(1).mask[20:120, 30:110].copy()
    grown[0:5, :] = True
    update1 = MaskUpdate(1, box1, grown, STEPS_1)
    versions = doc.mask_version(1), doc.mask_version(2)
    assert doc.apply_updates([update1, prepared], "refine", "Refine 2 instances") == 2
    assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText() == "Refine 2 instances"
    assert not doc.layer(2).mask[80:120, 160:200].any() and doc.layer(2).mask[100, 155]
    assert doc.layer(1).mask[20:25, 30:110].all()
    assert doc.layer(1).provenance == STEPS_1
    assert doc.layer(2).provenance == STEPS_2
    assert doc.mask_version(1) > versions[0] and doc.mask_version(2) > versions[1]
    doc.undo()
    for i in (1, 2):
        assert np.array_equal(doc.layer(i).mask, before[i])
    assert doc.layer(2).provenance is None


def test_a_prepared_patch_is_not_used_once_the_instance_changed(image_document: ImageDocument) -> None:
    doc = image_document
    box = (150, 70, 210, 130)
    stale = prepare_update(2, box, np.zeros((60, 60), bool), doc.layer(2).mask[70:130, 150:210], doc.mask_version(2))
    doc.begin_stroke(2, "brush")  # outside the box, after the patch was worked out
    doc.stroke_to([(120, 180)], 5)
    doc.end_stroke()
    doc.apply_updates([stale], "refine")
    assert doc.layer(2).mask[180, 120]  # the stroke is kept
    doc.undo()
    assert doc.layer(2).mask[180, 120] and doc.layer(2).mask[100, 180]  # undo restores the real "before"


def test_bad_input_is_one_clear_error(image_document: ImageDocument) -> None:
    doc = image_document
    with pytest.raises(ValueError, match=r"new mask has shape \(10, 10\), the image is \(200, 300\)"):
        doc.apply_mask(1, np.zeros((10, 10), bool), "refine")
    with pytest.raises(ValueError, match=r"preview mask has shape \(10, 10\), its box \(0, 0, 20, 20\) is \(20, 20\)"):
        doc.set_preview(Preview(1, (0, 0, 20, 20), np.zeros((10, 10), bool)))
    with pytest.raises(ValueError, match=r"box \(290, 0, 310, 20\) is not inside the 300x200 image"):
        doc.set_preview(Preview(1, (290, 0, 310, 20), np.zeros((20, 20), bool)))
    with pytest.raises(ValueError, match="confidence has shape"):
        doc.set_preview(Preview(1, (0, 0, 20, 20), np.zeros((20, 20), bool), np.zeros((3, 3), np.float32)))
    with pytest.raises(KeyError, match="no instance 42"):
        doc.set_preview(Preview(42, (0, 0, 20, 20), np.zeros((20, 20), bool)))
    with pytest.raises(ValueError, match=r"new mask has shape \(5, 5\), its box"):
        doc.apply_mask(1, np.zeros((5, 5), bool), "refine", box=(0, 0, 10, 10))
    with pytest.raises(KeyError, match="no instance 42"):
        doc.apply_updates([MaskUpdate(42, (0, 0, 5, 5), np.zeros((5, 5), bool))], "refine")
    with pytest.raises(ValueError, match="instance 9 has shape"):
        ImageDocument(doc.image, 1, [InstanceLayer(9, 1, np.zeros((5, 5), bool), palette_color(9))])
    with pytest.raises(ValueError, match="image must be"):
        ImageDocument(np.zeros((5, 5), np.uint8), 1, [])
    with pytest.raises(KeyError, match="unknown guidance"):
        doc.guidance("everything")
    with pytest.raises(KeyError, match="no instance 42"):
        doc.select(42)
