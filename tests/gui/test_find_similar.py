"""Find Similar in the real window on a small synthetic project (red discs, one annotated): the threshold
slider previews on the image, the search adds proposals with scores on the prompt thread, the list shows them
by score, accepting one keeps it and undo takes the acceptance back, rejecting one marks it, and the rest of an
image's proposals are rejected in one undoable step."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QRect
from pytestqt.qtbot import QtBot

from app.core.records import ChangeKind, Provenance, ReviewStatus
from app.gui import popups
from app.gui.docks.instance_list import ALL_IMAGES, IMAGE, SCORE
from app.gui.main_window import MainWindow
from app.gui.similar_dialog import SimilarDialog
from app.services import similar as similar_service
from tests.services.prompt_samples import make_project

from .conftest import open_project, wait_saved

THRESHOLD = 0.35  # the synthetic discs score about 0.55, the rest of the photos under 0.3 (services' test)
TIMEOUT_MS = 120_000


def test_find_similar_adds_proposals_to_review_by_score(window: MainWindow, qtbot: QtBot, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sample = make_project(tmp_path / "sample")
    doc = open_project(qtbot, window, sample.path, sample.image_ids[0])
    doc.select(sample.example_id)
    kept_clear: list[QRect] = []
    place = popups.place_beside
    monkeypatch.setattr(popups, "place_beside",
                        lambda widget, target: kept_clear.append(target) or place(widget, target))
    window.actions["edit.find_similar"].trigger()
    dialog = window.findChild(SimilarDialog)
    assert dialog is not None and dialog.isVisible()
    height, width = doc.shape
    assert kept_clear == [window.canvas.global_rect((0, 0, width, height))]  # placed beside the image, not over it
    qtbot.waitUntil(lambda: dialog.similarity is not None, timeout=TIMEOUT_MS)
    assert window.canvas.prompt_item.isVisible()  # the map above the threshold, over the image
    dialog.slider.setValue(round(THRESHOLD * 100))
    high = dialog.threshold_label.text()
    dialog.slider.setValue(-20)
    assert dialog.threshold_label.text() != high and "of this image above it" in high

    dialog.slider.setValue(round(THRESHOLD * 100))
    dialog.refine_box.setChecked(False)
    dialog.scope_box.setCurrentIndex(dialog.scope_box.findData("project"))
    with qtbot.waitSignal(dialog.searched, timeout=TIMEOUT_MS) as blocker:
        dialog.run_button.click()
    report = blocker.args[0]
    assert len(report.created) == 4 and report.searched == 3 and not report.problems
    assert "4 proposals added on 3 images" in dialog.status.text()
    store = window.project.store
    assert store is not None
    made = [store.instance(i) for i in report.created]
    assert all(m.provenance.kind == ChangeKind.PROPOSED and m.score >= THRESHOLD for m in made)

    on_image = [m.id for m in made if m.image_id == sample.image_ids[0]]
    assert on_image
    qtbot.waitUntil(lambda: window.project.doc is not None and window.project.doc.has_layer(on_image[0]),
                    timeout=20_000)
    doc = window.project.doc
    assert doc.selected_id == sample.example_id
    panel = window.instance_panel
    assert panel.filters()["sort"] == "Highest score" and not panel.view.isColumnHidden(SCORE)
    assert panel.filters()["status"] == "proposals"
    assert panel.filters()["scope"] == ALL_IMAGES  # proposals on other images too: all of them listed
    assert not panel.view.isColumnHidden(IMAGE)  # with the photo each is on
    qtbot.waitUntil(lambda: panel.model.rowCount() == len(report.created), timeout=5_000)  # the example is not one
    assert "proposed, to review" in panel.count_label.text()

    proposal = on_image[0]
    doc.select(proposal)
    window.actions["review.accepted"].trigger()
    assert doc.layer(proposal).status == ReviewStatus.ACCEPTED.value
    wait_saved(qtbot, window)
    assert store.instance(proposal).status == ReviewStatus.ACCEPTED
    qtbot.waitUntil(lambda: panel.model.rowCount() == len(report.created) - 1, timeout=5_000)  # reviewed: off the list
    window.actions["edit.undo"].trigger()
    wait_saved(qtbot, window)
    assert store.instance(proposal).status == ReviewStatus.UNREVIEWED
    window.actions["review.rejected"].trigger()
    wait_saved(qtbot, window)
    assert store.instance(proposal).status == ReviewStatus.REJECTED  # kept, marked: not proposed again

    assert dialog.examples_box.count() == 1  # the only disc annotated: no "every disc" choice then
    dialog.close()
    assert not window.canvas.prompt_item.isVisible()
    assert window.last_error is None
    window.actions["review.accepted"].trigger()  # an accepted proposal is an example like any other
    doc.select(sample.example_id)
    again = window.open_find_similar()
    assert again is not None and again.examples_box.count() == 2
    again.examples_box.setCurrentIndex(1)
    assert again.instance_ids == (sample.example_id, proposal)
    qtbot.waitUntil(lambda: again.similarity is not None and again._map_job is None, timeout=TIMEOUT_MS)
    assert window.last_error is None
    again.close()


def test_find_similar_needs_a_selected_example(window: MainWindow) -> None:
    doc = window.project.doc
    assert doc is not None
    doc.select(None)
    assert not window.actions["edit.find_similar"].isEnabled()
    assert window.open_find_similar() is None
    assert window.statusBar().currentMessage() == "Select an example instance first"


def test_closing_the_dialog_stops_the_search_and_takes_the_preview_away(
        window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = threading.Event()
    listed = similar_service.target_images

    def after_close(*args, **kwargs):  # the search waits for the close, however the threads are scheduled
        closed.wait(TIMEOUT_MS / 1000)
        return listed(*args, **kwargs)

    monkeypatch.setattr(similar_service, "target_images", after_close)
    sample = make_project(tmp_path / "sample")
    doc = open_project(qtbot, window, sample.path, sample.image_ids[0])
    doc.select(sample.example_id)
    dialog = window.open_find_similar()
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.similarity is not None, timeout=TIMEOUT_MS)
    assert window.canvas.prompt_item.isVisible()
    store = window.project.store
    assert store is not None
    count = store.count_instances()
    dialog.refine_box.setChecked(False)
    dialog.scope_box.setCurrentIndex(dialog.scope_box.findData("project"))
    with qtbot.waitSignal(dialog.searched, timeout=TIMEOUT_MS) as blocker:
        dialog.run_button.click()
        dialog.close()  # before the search had its turn: it stops at once
        closed.set()
        assert not window.canvas.prompt_item.isVisible()
    assert blocker.args[0].stopped and not blocker.args[0].created
    assert store.count_instances() == count and window.last_error is None


def test_reject_remaining_proposals_marks_the_images_unreviewed_ones_as_one_undo_step(
        window: MainWindow, qtbot: QtBot) -> None:
    store = window.project.store
    doc = window.project.doc
    assert store is not None and doc is not None
    image_id = doc.image_id
    window.actions["review.reject_proposals"].trigger()
    assert window.statusBar().currentMessage() == "No proposals on this image are waiting for review"

    height, width = doc.shape
    category = doc.layers()[0].category_id

    def square(x: int) -> np.ndarray:
        mask = np.zeros((height, width), bool)
        mask[10:40, x:x + 30] = True
        return mask

    proposed = Provenance.proposed("encoder", None, 0)
    made = [store.create_instance(image_id, category, square(x), score=0.5, provenance=proposed).instance_id
            for x in (10, 60, 110)]
    store.set_status(made[2], ReviewStatus.NEEDS_WORK)  # the annotator's own verdict: left as it is
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        window.project.open_image(image_id)
    doc = window.project.doc
    doc.select(made[0])
    window.actions["review.accepted"].trigger()  # the good one kept first
    others = [layer.id for layer in doc.layers() if layer.id not in made]
    before = {i: doc.layer(i).status for i in others}

    window.actions["review.reject_proposals"].trigger()
    assert window.statusBar().currentMessage() == "Rejected 1 proposal (Ctrl+Z takes it back)"
    assert [doc.layer(i).status for i in made] == ["accepted", "rejected", "needs_work"]
    assert {i: doc.layer(i).status for i in others} == before  # imported instances are not proposals
    wait_saved(qtbot, window)
    assert store.instance(made[1]).status == ReviewStatus.REJECTED

    window.actions["edit.undo"].trigger()  # the rejection, one step
    assert [doc.layer(i).status for i in made] == ["accepted", "unreviewed", "needs_work"]
    window.actions["edit.undo"].trigger()  # then the acceptance
    assert doc.layer(made[0]).status == "unreviewed"
    window.actions["review.reject_proposals"].trigger()
    assert window.statusBar().currentMessage() == "Rejected 2 proposals (Ctrl+Z takes it back)"
    wait_saved(qtbot, window)
    assert [store.instance(i).status for i in made] == [ReviewStatus.REJECTED, ReviewStatus.REJECTED,
                                                        ReviewStatus.NEEDS_WORK]
    assert window.last_error is None
