"""Controlling refinements: Pause holds the queue after the current instance and says so; Stop is
authoritative (a frame or a "finished" that was on its way when Esc was pressed changes nothing); the
messages count steps in words (issue 13)."""
from __future__ import annotations

import time
from dataclasses import replace

from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.gui.main_window import MainWindow
from app.gui.refine.frames import RefineFrame

from .conftest import start_dataset_queue, wait_saved

RUN_TIMEOUT_MS = 120_000


def settle(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def test_pause_holds_the_queue_after_the_current_instance_and_shows_it(window: MainWindow, qtbot: QtBot) -> None:
    store = window.project.store
    assert store is not None
    total = store.count_instances()
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    start_dataset_queue(window)
    window.actions["refine.pause"].trigger()  # P while the first instance is being refined
    qtbot.waitUntil(lambda: window.refine.queue_run is None, timeout=RUN_TIMEOUT_MS)
    settle(0.5)
    assert window.refine.queue_done == 1 and window.refine.queue_active and window.refine.queue_paused
    assert window.actions["refine.pause"].isChecked() and window.actions["refine.pause"].text() == "Resume Queue"
    assert "Paused" in window.refine_panel.queue_label.text() and "1/" in window.refine_panel.queue_label.text()
    assert window.progress_bar.format().startswith("Paused")
    window.actions["refine.pause"].trigger()
    assert window.actions["refine.pause"].text() == "Pause Queue"
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    wait_saved(qtbot, window)
    assert window.refine.queue_done == total


def test_stop_is_authoritative_and_the_message_counts_in_words(window: MainWindow, qtbot: QtBot) -> None:
    doc = window.project.doc
    assert doc is not None
    window.settings.min_frame_ms = 10_000  # the worker waits between steps, so Stop lands after step 1
    window.refine_panel.reload_settings()
    doc.select(max(doc.layers(), key=lambda layer: int(layer.mask.sum())).id)
    frames: list[RefineFrame] = []
    window.service.worker.frame.connect(frames.append)
    messages: list[str] = []
    window.refine.message.connect(messages.append)
    window.refine_selected()
    qtbot.waitUntil(lambda: window.refine.step_count == 1 and bool(frames), timeout=RUN_TIMEOUT_MS)
    window.actions["refine.stop"].trigger()
    job_id = frames[0].job_id
    late = RefineFrame(job_id, replace(frames[0].step, step=3, final=True), frames[0].instances)
    window.service.worker.frame.emit(late)  # what was already on its way when Esc was pressed
    window.service.worker.finished.emit(job_id, False)
    qtbot.waitUntil(lambda: not window.refine.running, timeout=5_000)
    settle(0.3)
    run = window.refine.session
    assert run is not None and run.stopped and window.refine.step_count == 1
    assert window.refine_panel.scrubber.maximum() == 1
    assert [m for m in messages if m.startswith("Refinement ")] == [
        "Refinement stopped after 1 step; Accept (Shift+Enter) or Reject (Backspace); the scrubber shows every step"]


def test_the_queue_ends_when_its_last_write_reports_back(window: MainWindow, qtbot: QtBot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The writer may call back before its future is marked done: the queue must not wait for the future."""
    from concurrent.futures import Future

    from PySide6.QtCore import QTimer

    real = window.project.save_refinement

    def racing(image_id, instance_id, mask, provenance, on_done=None):  # type: ignore[no-untyped-def]
        real(image_id, instance_id, mask, provenance)
        if on_done is not None:
            QTimer.singleShot(0, on_done)  # the "written" callback, queued ahead of the future
        return Future()  # never done

    monkeypatch.setattr(window.project, "save_refinement", racing)
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    start_dataset_queue(window)
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    assert window.refine.queue_done == window.refine.queue_total


def test_snap_to_edges_is_a_remembered_choice_the_refiner_and_prompts_get(window: MainWindow, qtbot: QtBot) -> None:
    from PySide6.QtCore import QPoint, Qt

    from app.gui.prompt_controller import refine_options

    panel = window.refine_panel
    assert panel.snap_box.isChecked() and panel.options().snap and refine_options(window.settings).snap
    qtbot.mouseClick(panel.snap_box, Qt.MouseButton.LeftButton, pos=QPoint(8, panel.snap_box.height() // 2))
    assert not panel.snap_box.isChecked() and not panel.options().snap
    assert window.settings.snap is False and not refine_options(window.settings).snap
    panel.reload_settings()
    assert not panel.snap_box.isChecked()
