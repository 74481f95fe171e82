"""The export dialog on the real window: the export runs off the GUI thread with progress, reads back with
pycocotools, shows its report, and Cancel leaves nothing behind."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np
from pycocotools.coco import COCO
from pytestqt.qtbot import QtBot

from app.core.records import ReviewStatus
from app.gui import export_dialog
from app.gui.main_window import MainWindow

from .conftest import wait_saved


def test_export_runs_off_the_gui_thread_with_progress_and_shows_its_report(
    window: MainWindow, qtbot: QtBot, tmp_path: Path,
) -> None:
    doc = window.project.doc
    assert doc is not None
    first = min(layer.id for layer in doc.layers())
    doc.set_status(first, ReviewStatus.ACCEPTED.value)
    dialog = window.open_export_dialog()
    assert dialog is not None
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("lvis"))
    dialog.polygon_button.setChecked(True)
    out = tmp_path / "export.json"
    dialog.path_edit.setText(str(out))
    threads: list[threading.Thread] = []
    progress: list[tuple[int, int]] = []
    real_run = export_dialog.ExportChoice.run

    def spy(self: export_dialog.ExportChoice, project: Path, report: Callable[[int, int], None]):  # type: ignore[no-untyped-def]
        def recorded(done: int, total: int) -> None:
            threads.append(threading.current_thread())
            progress.append((done, total))
            report(done, total)

        return real_run(self, project, recorded)

    export_dialog.ExportChoice.run = spy  # type: ignore[method-assign]
    try:
        with qtbot.waitSignal(dialog.exported, timeout=20_000):
            dialog.start()
    finally:
        export_dialog.ExportChoice.run = real_run  # type: ignore[method-assign]
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert progress == [(k, 13) for k in range(14)]
    assert dialog.progress.maximum() == 13 and dialog.progress.value() == 13
    assert dialog.report is not None and dialog.report.source == str(out)
    assert dialog.report_view.isVisibleTo(dialog) and str(out) in dialog.report_view.toPlainText()
    assert f"Exported to {out}" in dialog.status.text()
    coco = COCO(str(out))
    assert len(coco.anns) == 13
    assert np.array_equal(coco.annToMask(coco.anns[first]).astype(bool), doc.layer(first).mask)

    dialog.accepted_only.setChecked(True)  # again, only what was accepted
    accepted = tmp_path / "accepted.json"
    dialog.path_edit.setText(str(accepted))
    with qtbot.waitSignal(dialog.exported, timeout=20_000):
        dialog.start()
    assert sorted(COCO(str(accepted)).anns) == [first]
    assert dialog.report is not None and dialog.report.counts["excluded by status"] == 12


def test_cancel_stops_the_export_and_writes_nothing(window: MainWindow, qtbot: QtBot, tmp_path: Path) -> None:
    wait_saved(qtbot, window)
    dialog = window.open_export_dialog()
    assert dialog is not None
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "cancelled.json"
    dialog.path_edit.setText(str(out))
    real_run = export_dialog.ExportChoice.run
    rejected = threading.Event()

    def slow(self: export_dialog.ExportChoice, project: Path, report: Callable[[int, int], None]):  # type: ignore[no-untyped-def]
        def paced(done: int, total: int) -> None:  # the export waits for the Cancel, however the threads are scheduled
            report(done, total)
            rejected.wait(20)

        return real_run(self, project, paced)

    export_dialog.ExportChoice.run = slow  # type: ignore[method-assign]
    try:
        dialog.start()
        task = dialog.task
        assert task is not None
        dialog.reject()
        rejected.set()
        qtbot.waitUntil(lambda: dialog.task is None, timeout=20_000)
    finally:
        export_dialog.ExportChoice.run = real_run  # type: ignore[method-assign]
    assert task.cancelled and dialog.report is None
    assert "cancelled" in dialog.status.text() and window.last_error is None
    assert list(folder.iterdir()) == []  # not even a temporary file


def test_export_defaults_to_a_visible_folder_and_explains_source_format(
    window: MainWindow, qtbot: QtBot, data_dir: Path, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    dialog = window.open_export_dialog()
    assert dialog is not None
    default = Path(dialog.path_edit.text())
    assert default == data_dir / "exports" / "demo-coco.json"  # the project's folder is a visible one
    with qtbot.waitSignal(dialog.exported, timeout=20_000):
        dialog.start()  # the exports folder is made on the way
    assert default.is_file()
    text = dialog.report_view.toPlainText()
    assert '"Source format" is how each annotation was stored in the file you imported: 13 as polygons' in text
    dialog.reject()

    documents = tmp_path / "Documents" / "SegRefiner Studio"
    monkeypatch.setattr(export_dialog.import_dialogs, "default_projects_dir", lambda: documents)
    hidden = tmp_path / ".local" / "share" / "p.srproj"
    assert export_dialog.default_export_dir(hidden) == documents / "exports"
