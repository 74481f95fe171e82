"""Ids past 32 bits (COCO's crowd annotations have ids like 900100184324) work everywhere in the window, and
crowd regions and locked instances are never refined, whichever way a refinement is started (issue 13)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.records import ChangeKind, ReviewStatus
from app.gui.main_window import MainWindow

from .conftest import BIG_ID, BIG_IMAGE_ID, CROWD_ID, open_project, start_dataset_queue, wait_saved

RUN_TIMEOUT_MS = 120_000


def list_rows(window: MainWindow) -> dict[int, int]:
    model = window.instance_panel.model
    return {model.data(model.index(r, 0), Qt.ItemDataRole.UserRole): r for r in range(model.rowCount())}


@pytest.mark.filterwarnings("error::RuntimeWarning")  # libshiboken's "Overflow" warning fails the test
def test_ids_past_32_bits_select_save_and_navigate(window: MainWindow, qtbot: QtBot, big_ids_project: Path) -> None:
    doc = open_project(qtbot, window, big_ids_project, BIG_IMAGE_ID)
    store = window.project.store
    assert doc is not None and store is not None and doc.image_id == BIG_IMAGE_ID
    rows = list_rows(window)
    assert {BIG_ID, CROWD_ID} <= set(rows)
    panel = window.instance_panel
    for target in (BIG_ID, CROWD_ID):  # a click on the row selects the instance (and frames it)
        panel.view.clicked.emit(panel.model.index(rows[target], 0))
        assert doc.selected_id == target
        assert window.properties_panel.instance_label.text().startswith(str(target))
        assert panel.view.currentIndex().row() == rows[target]
    window.actions["review.needs_work"].trigger()  # saved(id) comes back from the writer thread
    wait_saved(qtbot, window)
    assert store.instance(CROWD_ID).status is ReviewStatus.NEEDS_WORK
    qtbot.waitUntil(lambda: window.instance_panel.model.summary(rows[CROWD_ID]).status  # type: ignore[union-attr]
                    is ReviewStatus.NEEDS_WORK, timeout=5_000)
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        window.project.open_image(1)
    image_row = window.image_panel.model.row_of(BIG_IMAGE_ID)
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        window.image_panel.view.clicked.emit(window.image_panel.proxy.index(image_row, 0))
    assert window.project.doc is not None and window.project.doc.image_id == BIG_IMAGE_ID
    window.project.select_instance(BIG_ID)
    window.project.flush()
    assert store.session_state()["instance_id"] == BIG_ID
    assert window.last_error is None


def test_a_crowd_region_is_not_refined_even_when_selected(window: MainWindow, qtbot: QtBot,
                                                          big_ids_project: Path) -> None:
    doc = open_project(qtbot, window, big_ids_project, BIG_IMAGE_ID)
    assert doc is not None
    doc.select(CROWD_ID)
    assert not window.refine_selected()
    assert not window.refine.running and window.refine.session is None
    assert "crowd" in window.statusBar().currentMessage()
    doc.select(BIG_ID)
    doc.set_locked(BIG_ID, True)
    assert not window.refine_selected()
    assert "locked" in window.statusBar().currentMessage()


def test_the_queue_skips_crowd_and_locked_instances_reports_them_and_survives_navigation(
    window: MainWindow, qtbot: QtBot, big_ids_project: Path,
) -> None:
    doc = open_project(qtbot, window, big_ids_project, BIG_IMAGE_ID)
    store = window.project.store
    assert doc is not None and store is not None
    doc.set_locked(6, True)
    crowd_before = store.instance(CROWD_ID).mask()
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    messages: list[str] = []
    window.refine.message.connect(messages.append)
    start_dataset_queue(window)
    for _ in range(3):  # PgDown while it runs
        with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
            window.actions["image.next"].trigger()
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    wait_saved(qtbot, window)
    assert window.last_error is None
    crowd = store.instance(CROWD_ID)
    assert crowd.provenance.kind is ChangeKind.IMPORTED and np.array_equal(crowd.mask(), crowd_before)
    assert store.instance(6).provenance.kind is ChangeKind.IMPORTED
    assert store.instance(BIG_ID).provenance.kind is ChangeKind.REFINED
    assert "1 crowd" in messages[-1] and "1 locked" in messages[-1]


def test_an_instance_locked_while_refine_all_of_image_runs_is_left_alone(window: MainWindow, qtbot: QtBot) -> None:
    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    ids = sorted(layer.id for layer in doc.layers())
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    window.actions["refine.image"].trigger()
    doc.set_locked(ids[-1], True)  # while the first instance is being refined
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    wait_saved(qtbot, window)
    assert store.instance(ids[-1]).provenance.kind is ChangeKind.IMPORTED
    assert {store.instance(i).provenance.kind for i in ids[:-1]} == {ChangeKind.REFINED}
