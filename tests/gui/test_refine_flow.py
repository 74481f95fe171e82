"""Refinement driven through the real window: animate, scrub, accept (store and provenance), stop, errors,
and the queue. The refiner is real: an untrained network saved to a temporary safetensors file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pytestqt.qtbot import QtBot

from app.core.store.history import EditAction
from app.core.records import ChangeKind
from app.gui.main_window import MainWindow
from app.refiner.unet import PRESETS, DenoiseUNet

from .conftest import TEST_STEPS, start_dataset_queue, wait_saved

RUN_TIMEOUT_MS = 60_000


def select_largest(window: MainWindow) -> int:
    doc = window.project.doc
    assert doc is not None
    instance_id = max(doc.layers(), key=lambda layer: int(layer.mask.sum())).id
    doc.select(instance_id)
    return instance_id


def test_refine_to_completion_scrub_and_accept_records_provenance(window: MainWindow, qtbot: QtBot) -> None:
    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    instance_id = select_largest(window)
    coarse = doc.layer(instance_id).mask.copy()
    steps_seen: list[int] = []
    window.service.worker.frame.connect(lambda frame: steps_seen.append(frame.step.step))
    window.actions["refine.run"].trigger()
    assert window.refine.running and not window.actions["refine.run"].isEnabled()
    qtbot.waitUntil(lambda: not window.refine.running, timeout=RUN_TIMEOUT_MS)
    assert window.refine.session is not None and not window.refine.session.stopped
    assert steps_seen == list(range(1, TEST_STEPS + 1))
    assert window.refine.reviewing and window.actions["refine.accept"].isEnabled()
    scrubber = window.refine_panel.scrubber
    assert (scrubber.minimum(), scrubber.maximum(), scrubber.value()) == (1, TEST_STEPS, TEST_STEPS)
    assert doc.preview_instance_id == instance_id
    diff = window.canvas.diff_overlay
    assert diff is not None and doc.preview is not None and doc.preview.diff is not None
    assert diff.image is doc.preview.diff and diff.pixels_drawn == 0  # every step came drawn by the refine thread
    scrubber.setValue(1)
    assert diff.pixels_drawn > 0  # an earlier step is drawn here, inside its box
    assert window.refine.shown == 0
    assert doc.preview is not None
    first_preview = doc.preview.full_mask(coarse)
    scrubber.setValue(TEST_STEPS)
    final_preview = doc.preview.full_mask(coarse)
    assert np.array_equal(doc.layer(instance_id).mask, coarse)  # nothing applied before Accept
    assert np.array_equal(store.instance(instance_id).mask(), coarse)
    assert not np.array_equal(final_preview, coarse) or not np.array_equal(first_preview, coarse)

    window.actions["refine.accept"].trigger()
    wait_saved(qtbot, window)
    assert doc.preview_instance_id is None and not window.refine.reviewing
    assert np.array_equal(doc.layer(instance_id).mask, final_preview)
    stored = store.instance(instance_id)
    assert np.array_equal(stored.mask(), final_preview)
    assert stored.provenance.kind is ChangeKind.REFINED
    assert stored.provenance.weights == "random-compact.safetensors"
    assert (stored.provenance.mode, stored.provenance.steps) == ("instance", TEST_STEPS)
    assert stored.changed_pixels == int((final_preview != coarse).sum())
    assert stored.mean_confidence is not None and 0.0 <= stored.mean_confidence <= 1.0
    assert store.history(instance_id)[-1].action is EditAction.REFINE
    assert window.instance_panel.model.rowCount() > 0

    window.actions["edit.undo"].trigger()  # the accepted refinement is one undo step
    wait_saved(qtbot, window)
    assert np.array_equal(store.instance(instance_id).mask(), coarse)


def test_stop_after_the_first_step_leaves_the_instance_unchanged(window: MainWindow, qtbot: QtBot) -> None:
    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    window.settings.min_frame_ms = 10_000  # the worker waits between steps, so Stop lands after step 1
    window.refine_panel.reload_settings()
    instance_id = select_largest(window)
    coarse = doc.layer(instance_id).mask.copy()
    edits_before = len(store.history(instance_id))
    window.refine_selected()
    qtbot.waitUntil(lambda: window.refine.step_count == 1, timeout=RUN_TIMEOUT_MS)
    window.actions["refine.stop"].trigger()
    qtbot.waitUntil(lambda: not window.refine.running, timeout=5_000)
    assert window.refine.session is not None and window.refine.session.stopped
    assert window.refine.step_count == 1 and window.refine.reviewing
    assert np.array_equal(doc.layer(instance_id).mask, coarse)
    assert np.array_equal(store.instance(instance_id).mask(), coarse)
    window.actions["refine.reject"].trigger()
    assert doc.preview_instance_id is None and not window.refine.reviewing
    assert np.array_equal(doc.layer(instance_id).mask, coarse)
    assert len(store.history(instance_id)) == edits_before


def test_weights_of_another_architecture_show_an_error_and_change_nothing(
    window: MainWindow, qtbot: QtBot, tmp_path: Path,
) -> None:
    doc = window.project.doc
    assert doc is not None
    wrong = tmp_path / "compact-as-official.pth"
    torch.save(DenoiseUNet(PRESETS["compact"]).state_dict(), wrong)
    window.refine_panel.use_weights_file(wrong)
    instance_id = select_largest(window)
    coarse = doc.layer(instance_id).mask.copy()
    window.refine_selected()
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=RUN_TIMEOUT_MS)
    assert window.last_error is not None
    title, message = window.last_error
    assert title == "Refinement failed" and "compact-as-official.pth" in message and "official" in message
    assert not window.refine.running and not window.refine.reviewing
    assert np.array_equal(doc.layer(instance_id).mask, coarse)
    assert window.actions["refine.run"].isEnabled()  # the window carries on


def test_refine_all_of_image_applies_every_instance_as_one_undo_step(window: MainWindow, qtbot: QtBot) -> None:
    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    ids = [layer.id for layer in doc.layers()]
    coarse = {i: doc.layer(i).mask.copy() for i in ids}
    window.actions["refine.image"].trigger()
    assert window.refine.queue_active
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    assert window.refine.queue_done == len(ids)
    wait_saved(qtbot, window)
    for i in ids:
        stored = store.instance(i)
        assert stored.provenance.kind is ChangeKind.REFINED and stored.provenance.steps == 1
        assert np.array_equal(stored.mask(), doc.layer(i).mask)
    assert doc.undo_stack.count() == 1
    window.actions["edit.undo"].trigger()
    wait_saved(qtbot, window)
    for i in ids:
        assert np.array_equal(store.instance(i).mask(), coarse[i])


def test_refine_all_unreviewed_covers_other_images_through_the_store(window: MainWindow, qtbot: QtBot) -> None:
    store = window.project.store
    assert store is not None
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    total = store.count_instances()
    start_dataset_queue(window)
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    assert window.refine.queue_done == total
    kinds = {inst.provenance.kind for inst in store.iter_instances()}
    assert kinds == {ChangeKind.REFINED}
    changed = [s.changed_pixels for s in store.list_instances()]
    assert all(c is not None for c in changed)


def test_undo_and_redo_put_back_the_refinement_figures_and_record_reverts(window: MainWindow, qtbot: QtBot) -> None:
    from .test_window import paint_a_brush_stroke

    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    instance_id = select_largest(window)
    coarse = store.instance(instance_id)

    def figures() -> tuple[object, ...]:
        stored = store.instance(instance_id)
        return stored.changed_pixels, stored.mean_confidence, stored.provenance.kind

    def refinements() -> int:
        return sum(edit.action is EditAction.REFINE for edit in store.history(instance_id))

    before = figures()
    window.actions["refine.run"].trigger()
    qtbot.waitUntil(lambda: not window.refine.running, timeout=RUN_TIMEOUT_MS)
    window.actions["refine.accept"].trigger()
    wait_saved(qtbot, window)
    refined, refined_mask = figures(), store.instance(instance_id).mask()
    assert refined[2] is ChangeKind.REFINED and refinements() == 1
    paint_a_brush_stroke(window)
    wait_saved(qtbot, window)
    brushed, brushed_mask = figures(), store.instance(instance_id).mask()
    assert brushed[:2] == refined[:2]  # a hand edit keeps the figures of the last refinement

    window.actions["edit.undo"].trigger()  # the stroke
    wait_saved(qtbot, window)
    assert np.array_equal(store.instance(instance_id).mask(), refined_mask)
    assert figures() == refined and refinements() == 1
    assert store.history(instance_id)[-1].action is EditAction.REVERT
    window.actions["edit.undo"].trigger()  # the refinement
    wait_saved(qtbot, window)
    assert np.array_equal(store.instance(instance_id).mask(), coarse.mask()) and figures() == before
    window.actions["edit.redo"].trigger()
    wait_saved(qtbot, window)
    assert np.array_equal(store.instance(instance_id).mask(), refined_mask)
    assert figures() == refined and refinements() == 1
    window.actions["edit.redo"].trigger()  # the stroke again
    wait_saved(qtbot, window)
    assert np.array_equal(store.instance(instance_id).mask(), brushed_mask) and figures() == brushed
    assert refinements() == 1 and store.history(instance_id)[-1].action is EditAction.REVERT


def test_accept_and_next_is_one_undo_step(window: MainWindow, qtbot: QtBot) -> None:
    doc = window.project.doc
    assert doc is not None
    instance_id = select_largest(window)
    coarse, status, steps = doc.layer(instance_id).mask.copy(), doc.layer(instance_id).status, doc.undo_stack.count()
    window.actions["refine.run"].trigger()
    qtbot.waitUntil(lambda: not window.refine.running, timeout=RUN_TIMEOUT_MS)
    window.actions["refine.accept_next"].trigger()
    assert doc.layer(instance_id).status == "accepted" and doc.undo_stack.count() == steps + 1
    assert doc.undo_stack.text(steps) == f"Accept and next #{instance_id}"
    window.actions["edit.undo"].trigger()  # the refinement and the status together
    assert doc.layer(instance_id).status == status and np.array_equal(doc.layer(instance_id).mask, coarse)
    wait_saved(qtbot, window)


def test_reverting_a_refinement_in_the_edit_history_takes_its_figures_back(window: MainWindow, qtbot: QtBot) -> None:
    from PySide6.QtCore import Qt

    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    instance_id = select_largest(window)
    before = store.instance(instance_id)
    window.actions["refine.run"].trigger()
    qtbot.waitUntil(lambda: not window.refine.running, timeout=RUN_TIMEOUT_MS)
    window.actions["refine.accept"].trigger()
    wait_saved(qtbot, window)
    assert store.instance(instance_id).provenance.kind is ChangeKind.REFINED
    panel = window.edit_history
    window.edits_dock.raise_()
    qtbot.waitUntil(lambda: panel.list.count() >= 1, timeout=5_000)
    refine_edit = panel.list.item(0).data(Qt.ItemDataRole.UserRole)
    assert refine_edit.action is EditAction.REFINE and panel.select_edit(refine_edit.id)
    panel.revert_button.click()
    wait_saved(qtbot, window)
    after = store.instance(instance_id)
    assert np.array_equal(after.mask(), before.mask())
    assert (after.changed_pixels, after.mean_confidence, after.provenance.kind) == (
        before.changed_pixels, before.mean_confidence, before.provenance.kind)


def test_a_refinement_with_guidance_strokes_on_the_image_says_so(window: MainWindow, qtbot: QtBot) -> None:
    from .test_window import drag

    select_largest(window)
    window.actions["refine.run"].trigger()
    assert "guidance" not in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.refine.running, timeout=RUN_TIMEOUT_MS)
    window.refine.reject()
    window.actions["tool.region_brush"].trigger()
    drag(window, [(20, 20), (60, 20)])
    window.actions["tool.select"].trigger()
    select_largest(window)
    window.actions["refine.run"].trigger()
    assert "with this image's guidance strokes" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.refine.running, timeout=RUN_TIMEOUT_MS)
