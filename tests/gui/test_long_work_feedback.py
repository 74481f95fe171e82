"""Feedback on long work (issue 13): the model loads in the background as soon as the window shows its
first image and the panel says so; Refine All of Image moves instance by instance; the dataset queue asks
first with an estimate and what it leaves out, and shows the time left."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from app.gui.main_window import MainWindow
from app.gui.refine.queue import QueueStats, duration_text, estimate_text, skipped_text
from app.gui.settings import AppSettings, timing_key
from app.services.selection import CROWD, LOCKED

from .conftest import BIG_IMAGE_ID, open_project, open_window, wait_saved

RUN_TIMEOUT_MS = 120_000


def test_the_model_loads_after_the_first_image_and_a_click_then_starts_at_once(
    qtbot: QtBot, app_settings: AppSettings, data_dir: Path, random_weights: Path, one_torch_thread: None,
) -> None:
    app_settings.add_weights_file(random_weights)
    app_settings.steps, app_settings.min_frame_ms = 3, 0
    window = open_window(qtbot, app_settings, data_dir)
    panel = window.refine_panel
    window.service.worker.loading.emit("random-compact.safetensors")  # what the refine thread says first
    assert panel.step_label.text() == "Loading model random-compact.safetensors…"
    assert "loading" in window.device_label.text()
    qtbot.waitUntil(lambda: window.feedback.loaded == "random-compact.safetensors", timeout=60_000)
    assert panel.step_label.text().startswith("Model random-compact.safetensors ready on cpu")
    loads: list[str] = []
    window.service.worker.loading.connect(loads.append)
    started: list[float] = []
    window.service.worker.started.connect(lambda _job: started.append(time.monotonic()))
    doc = window.project.doc
    assert doc is not None
    doc.select(max(doc.layers(), key=lambda layer: int(layer.mask.sum())).id)
    clicked = time.monotonic()
    window.actions["refine.run"].trigger()
    qtbot.waitUntil(lambda: bool(started), timeout=10_000)
    assert started[0] - clicked < 2.0 and not loads  # the model was ready: nothing loads after the click
    qtbot.waitUntil(lambda: not window.refine.running, timeout=RUN_TIMEOUT_MS)


def test_refine_all_of_image_moves_instance_by_instance(window: MainWindow, qtbot: QtBot) -> None:
    doc = window.project.doc
    assert doc is not None
    count = len(doc.layers())
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    progress: list[tuple[int, int]] = []
    window.refine.queue_progress.connect(lambda done, total: progress.append((done, total)))
    labels: list[str] = []
    window.refine.queue_progress.connect(lambda *_: labels.append(window.refine_panel.queue_label.text()))
    window.actions["refine.image"].trigger()
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    assert [done for done, _total in progress] == list(range(count + 1)) + [count]  # the last: finished
    assert labels[0] == f"Refining 0/{count}" and "left" in labels[1]
    wait_saved(qtbot, window)
    assert doc.undo_stack.count() == 1 and doc.undo_stack.text(0) == f"Accept refinement ({count} instances)"
    measured = window.settings.seconds_per_instance(timing_key(str(window.settings.weights), "auto", "instance", 1))
    assert measured is not None and measured > 0


def test_the_dataset_queue_asks_first_with_an_estimate_and_what_it_leaves_out(
    window: MainWindow, qtbot: QtBot, big_ids_project: Path,
) -> None:
    open_project(qtbot, window, big_ids_project, BIG_IMAGE_ID)
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    options = window.refine_panel.options()
    window.actions["refine.dataset"].trigger()
    box = window.feedback.confirmation
    assert box is not None and box.isVisible() and not window.refine.queue_active
    assert box.text() == "Refine 12 unreviewed instances on 4 images?"
    assert "not been measured" in box.informativeText() and "1 crowd region" in box.informativeText()
    box.button(QMessageBox.StandardButton.No).click()
    assert not window.refine.queue_active
    window.settings.remember_seconds_per_instance(
        timing_key(options.weights, options.device, options.mode, options.steps), 2.5)
    window.actions["refine.dataset"].trigger()
    box = window.feedback.confirmation
    assert box is not None and "About 30 s (12 × 2.5 s" in box.informativeText()
    box.button(QMessageBox.StandardButton.Yes).click()
    assert window.refine.queue_active and window.progress_bar.isVisible()
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=RUN_TIMEOUT_MS)
    assert not window.progress_bar.isVisible()


def test_queue_stats_count_time_and_say_it_in_words() -> None:
    stats = QueueStats("the project", total=10, min_area=512, skipped=Counter({CROWD: 2, LOCKED: 1}))
    stats.run(now=100.0)
    assert stats.progress_text(False, now=101.0) == "Refining 0/10"
    stats.finished(True)
    stats.finished(False)
    assert stats.seconds_per_instance(now=104.0) == 2.0
    assert stats.progress_text(False, now=104.0) == "Refining 2/10 · about 16 s left"
    stats.hold(now=104.0)
    assert stats.seconds_per_instance(now=500.0) == 2.0  # paused time does not count
    assert stats.progress_text(True) == "Paused at 2/10 · P resumes"
    report = stats.report()
    assert report.startswith("Refined 1 instance of the project in 4 s")
    assert "1 instance under 512 px left as they were" in report
    assert "skipped 2 crowd regions and 1 locked instance" in report
    assert skipped_text(Counter()) == "" and duration_text(4000) == "1 h 07 min"
    assert estimate_text(3, None).startswith("The time per instance has not been measured")


def test_the_dataset_queue_leaves_out_masks_too_small_to_refine_and_says_so(
    window: MainWindow, qtbot: QtBot, big_ids_project: Path,
) -> None:
    from app.core.store.project import ProjectStore
    from tests.core.store_samples import shrink_first_instance

    with ProjectStore.open(big_ids_project) as store:
        shrink_first_instance(store)
    open_project(qtbot, window, big_ids_project, BIG_IMAGE_ID)
    window.actions["refine.dataset"].trigger()
    box = window.feedback.confirmation
    assert box is not None and box.text() == "Refine 11 unreviewed instances on 4 images?"
    assert "1 instance too small to refine" in box.informativeText()
    box.button(QMessageBox.StandardButton.No).click()
