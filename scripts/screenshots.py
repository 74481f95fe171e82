"""A scripted walk through the whole workflow in the real window, with a screenshot of each state for the
README (docs/screenshots/): import a COCO file, review with the queue, brush, refine, stop, scrub, accept,
undo across images, revert from the edit history, export, reopen, a second (read-only) window; then the
bundled demo refined step by step (its coarse masks give the refiner visible work); then the prompt tools on
two bears: a box around one (its category popup shown), Find Similar from the other, and its proposal listed.

Needs a display (the lead runs it under Xvfb) and ``../shared/data/coco_tiny``. It answers the file
dialogs as a user would (the "save the project as" one is shown, then accepted at its default), works in
a scratch HOME (the user's own settings and documents are never touched), and fails if an error message
appears. Screenshots of the whole screen (dialogs included) when ImageMagick's ``import`` is there, else
of the window; scaled to ``--width``.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python scripts/screenshots.py --out docs/screenshots

Weights: ``--weights`` (a registry name or a checkpoint file); by default the app's default weights when installed.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QEvent, QEventLoop, QPoint, QPointF, QRect, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QDialog, QFileDialog, QMessageBox, QWidget

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.records import Category  # noqa: E402
from app.gui import popups  # noqa: E402
from app.gui.app import configure_application  # noqa: E402
from app.gui.main_window import MainWindow  # noqa: E402
from app.gui.similar_dialog import SimilarDialog  # noqa: E402
from scripts.weights_choice import scratch_settings  # noqa: E402

log = logging.getLogger("screenshots")
SIZE = (1360, 840)
COCO_TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_tiny"
SOURCE = COCO_TINY / "annotations" / "instances_val2017.json"
IMAGES = COCO_TINY / "val2017"
CROWD_IMAGE, CROWD_ID = 184324, 900100184324
FEW_IMAGE = 402433
"""Three instances: its Refine All of Image measures the time per instance the queue's estimate uses."""
BEARS_IMAGE = 318080
"""Two brown bears, both annotated: the right one's annotation is deleted, a box around that bear makes a mask
(its category popup is cancelled), then Find Similar from the left one proposes it."""


class Walk:
    """The window, the app and the screenshot folder, with waiting and shooting."""

    def __init__(self, app: QApplication, out: Path, width: int) -> None:
        self.app, self.out, self.width = app, out, width
        self.window: MainWindow | None = None
        self.taken: list[Path] = []

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        loop = QEventLoop()
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            QTimer.singleShot(30, loop.quit)
            loop.exec()

    def settle(self, seconds: float = 0.6) -> None:
        end = time.monotonic() + seconds
        self.wait(lambda: time.monotonic() >= end, seconds + 5, "the window to settle")

    def check(self) -> None:
        """No error was reported, and no warning box is on screen."""
        window = self.window
        assert window is not None
        if window.last_error is not None:
            raise RuntimeError(f"the window showed an error: {window.last_error}")
        boxes = [w for w in QApplication.topLevelWidgets()
                 if isinstance(w, QMessageBox) and w.isVisible() and w.icon() == QMessageBox.Icon.Warning]
        if boxes:
            raise RuntimeError(f"a warning is on screen: {boxes[0].text()}")

    def shoot(self, name: str, widget: QWidget | None = None) -> None:
        """The screen around the window and the dialogs it shows (also those beside it), or ``widget`` alone,
        scaled to ``width``."""
        self.check()
        self.settle(0.3)
        path = self.out / name
        target = widget or self.window
        assert target is not None
        frame = target.frameGeometry()
        if widget is None:
            for shown in QApplication.topLevelWidgets():
                if isinstance(shown, QDialog) and shown.isVisible():
                    frame = frame.united(shown.frameGeometry())
            frame = frame.intersected(QApplication.primaryScreen().geometry())
        if shutil.which("import") and os.environ.get("DISPLAY") and widget is None:
            crop = f"{frame.width()}x{frame.height()}+{max(0, frame.x())}+{max(0, frame.y())}"
            subprocess.run(["import", "-window", "root", "-crop", crop, "+repage", "-resize", f"{self.width}x>",
                            "-strip", "-depth", "8", "-define", "png:compression-level=9", str(path)], check=True)
        else:
            image = target.grab().toImage()
            if image.width() > self.width:
                image = image.scaledToWidth(self.width)
            image.save(str(path))
        self.taken.append(path)
        log.info("wrote %s", path)


def answer_file_dialogs(walk: Walk) -> None:
    """The import's file dialogs, answered as a user would; the "save as" one shown and screenshot first."""
    QFileDialog.getOpenFileName = staticmethod(lambda *_a, **_k: (str(SOURCE), ""))  # type: ignore[method-assign]
    QFileDialog.getExistingDirectory = staticmethod(lambda *_a, **_k: str(IMAGES))  # type: ignore[method-assign]

    def save_as(parent: QWidget, title: str, suggestion: str, filters: str, *_a: object, **_k: object) -> tuple[str, str]:
        dialog = QFileDialog(parent, title, str(Path(suggestion).parent), filters)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog)
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.selectFile(Path(suggestion).name)
        dialog.resize(900, 520)
        dialog.show()
        walk.settle(1.0)
        walk.shoot("01-import-save-as.png")
        dialog.close()
        return suggestion, ""

    QFileDialog.getSaveFileName = staticmethod(save_as)  # type: ignore[method-assign]


def run(walk: Walk, settings_of: Callable[[], object], scratch: Path) -> Path:
    app = walk.app
    window = walk.window = MainWindow(settings_of(), data_dir=scratch / "data")  # type: ignore[arg-type]
    window.resize(*SIZE)
    window.move(0, 0)
    window.show()
    answer_file_dialogs(walk)
    window.actions["file.import_coco"].trigger()
    walk.wait(lambda: window.project.doc is not None, 300, "the imported project")
    project = window.project.project_path
    assert project is not None and not str(project).startswith(str(COCO_TINY.parent))
    window.project.open_image(CROWD_IMAGE)
    walk.wait(lambda: window.project.doc is not None and window.project.doc.image_id == CROWD_IMAGE, 60, "the image")
    window._instance_activated(CROWD_ID)
    walk.wait(lambda: window.feedback.loaded is not None, 300, "the model")
    walk.shoot("02-project-opened.png")

    window.project.open_image(FEW_IMAGE)  # Refine All of Image on a small image: the queue's estimate comes from it
    walk.wait(lambda: window.project.doc is not None and window.project.doc.image_id == FEW_IMAGE, 60, "the image")
    window.actions["refine.image"].trigger()
    walk.wait(lambda: not window.refine.queue_active, 300, "Refine All of Image")
    window.project.open_image(CROWD_IMAGE)
    walk.wait(lambda: window.project.doc is not None and window.project.doc.image_id == CROWD_IMAGE, 60, "the image")
    window._instance_activated(CROWD_ID)
    window.actions["refine.dataset"].trigger()
    box = window.feedback.confirmation
    assert box is not None
    walk.shoot("03-queue-confirm.png")
    box.button(QMessageBox.StandardButton.Yes).click()
    walk.wait(lambda: window.refine.queue_done >= 12, 600, "the first instances of the queue")
    walk.shoot("04-queue-running.png")
    window.actions["refine.pause"].trigger()
    walk.wait(lambda: window.refine.queue_run is None, 120, "the pause")
    walk.shoot("05-queue-paused.png")
    window.actions["refine.pause"].trigger()
    walk.wait(lambda: window.refine.queue_done >= 30, 600, "more of the queue")
    window.actions["refine.stop"].trigger()  # Esc: cancel, keep what is done
    panel = window.instance_panel
    panel.scope_box.setCurrentIndex(1)
    panel.sort_box.setCurrentText("Largest change")
    walk.settle(0.5)
    first = panel.model.index(0, 0)
    panel.view.clicked.emit(first)  # review the biggest change first
    walk.wait(lambda: window.project.doc is not None and window.project.doc.selected_id is not None, 60, "review")
    walk.shoot("06-review-largest-change.png")
    window.actions["refine.accept_next"].trigger()
    walk.wait(lambda: window.project.doc is not None and window.project.doc.selected_id is not None, 60, "the next")

    doc = window.project.doc
    assert doc is not None
    target = max((layer for layer in doc.layers() if not layer.crowd and not layer.locked),
                 key=lambda layer: int(layer.mask.sum()))
    doc.select(target.id)
    window.canvas.zoom_to_instance(target.id)
    window.actions["tool.brush"].trigger()  # a quick, sloppy stroke past the edge, for the refiner
    window.brush_size_box.setValue(12)
    x, y = _edge_point(doc.layer(target.id).mask)
    _drag(window, [(x - 10, y + 2), (x + 5, y - 10), (x + 25, y - 14), (x + 40, y - 6)])
    walk.shoot("07-brush.png")
    window.actions["tool.select"].trigger()
    window.settings.min_frame_ms = 900
    window.refine_selected()
    walk.wait(lambda: window.refine.step_count >= 2, 300, "two refine steps")
    walk.shoot("08-refining.png")
    window.actions["refine.stop"].trigger()
    walk.shoot("09-stopped.png")
    window.actions["refine.reject"].trigger()
    window.settings.min_frame_ms = 0
    window.refine_selected()
    walk.wait(lambda: window.refine.reviewing, 300, "the whole run")
    window.actions["view.show_confidence"].setChecked(True)
    window.refine_panel.scrubber.setValue(max(1, window.refine.step_count - 1))
    walk.shoot("10-scrubber.png")
    window.actions["view.show_confidence"].setChecked(False)
    window.actions["refine.accept"].trigger()
    image_id = doc.image_id
    for step in ("image.next", "image.previous"):
        window.actions[step].trigger()
        walk.wait(lambda: window.project.doc is not None and window.project.doc is not doc, 60, "the image")
        doc = window.project.doc
    assert doc is not None and doc.image_id == image_id and window.actions["edit.undo"].isEnabled()
    doc.select(target.id)
    window.canvas.zoom_to_instance(target.id)
    window.history_dock.raise_()
    walk.shoot("11-undo-across-images.png")

    window.edits_dock.raise_()
    history = window.edit_history
    walk.wait(lambda: history.list.count() >= 2, 30, "the edit history")
    walk.wait(lambda: not history.list.item(1).icon().isNull(), 30, "the thumbnails")
    count = history.list.count()
    history.list.setCurrentRow(1)  # the sloppy brush stroke, before the refinement
    history.revert_button.click()
    walk.wait(lambda: history.list.count() > count and not history.list.item(0).icon().isNull(), 30, "the revert")
    walk.shoot("12-edit-history.png")

    window.actions["tool.select"].trigger()
    dialog = window.open_export_dialog()
    assert dialog is not None
    done: list[str] = []
    dialog.exported.connect(done.append)
    dialog.start()
    walk.wait(lambda: bool(done), 300, "the export")
    dialog.resize(760, 520)
    dialog.move(window.geometry().center() - QPoint(dialog.width() // 2, dialog.height() // 2))
    walk.shoot("13-export.png")
    dialog.accept()
    sheet = window.open_shortcuts()
    sheet.move(window.geometry().center() - QPoint(sheet.width() // 2, sheet.height() // 2))
    walk.shoot("14-shortcuts.png")
    sheet.close()
    selected = doc.selected_id
    window.close()
    app.processEvents()

    again = walk.window = MainWindow(settings_of(), data_dir=scratch / "data")  # type: ignore[arg-type]
    again.resize(*SIZE)
    again.move(0, 0)
    again.show()
    again.open_startup(project)
    walk.wait(lambda: again.project.doc is not None, 120, "the reopened project")
    assert again.project.doc.image_id == image_id and again.project.doc.selected_id == selected  # type: ignore[union-attr]
    walk.wait(lambda: again.feedback.loaded is not None, 300, "the model")
    walk.shoot("15-reopened.png")
    other = MainWindow(settings_of(), data_dir=scratch / "data")  # type: ignore[arg-type]
    other.resize(*SIZE)
    other.move(0, 0)
    other.show()
    other.open_startup(project)
    walk.wait(lambda: other.project.doc is not None, 120, "the second window")
    walk.window = other
    walk.shoot("16-read-only.png")
    other.close()
    walk.window = again
    demo_refinement(walk, again)
    prompt_tools(walk, again, project)
    again.close()
    return project


def demo_refinement(walk: Walk, window: MainWindow) -> None:
    """The bundled demo's cup refined step by step: its hand-drawn coarse mask gives the refiner (and the
    hatched diff) visible work; then the scrubber one step back, with the confidence heatmap."""
    window.project.open_demo()
    walk.wait(lambda: window.project.doc is not None and window.project.project_path is not None
              and window.project.project_path.name == "demo.srproj", 120, "the demo")
    doc = window.project.doc
    assert doc is not None
    cup = next(layer.id for layer in doc.layers() if window.project.categories[layer.category_id].name == "cup")
    doc.select(cup)
    window.canvas.zoom_to_instance(cup)
    window.settings.min_frame_ms = 900
    window.refine_selected()
    walk.wait(lambda: window.refine.step_count >= 4, 300, "four refine steps")  # band-v1 changes nothing before
    walk.shoot("17-demo-refining.png")
    walk.wait(lambda: window.refine.reviewing, 300, "the end of the run")
    window.actions["view.show_confidence"].setChecked(True)
    window.refine_panel.scrubber.setValue(max(1, window.refine.step_count - 1))
    walk.shoot("18-demo-scrubber.png")
    window.actions["view.show_confidence"].setChecked(False)
    window.actions["refine.reject"].trigger()


def prompt_tools(walk: Walk, window: MainWindow, project: Path) -> None:
    """Back in the COCO project, on the bears: the right bear's annotation deleted, a box dragged around that
    bear (Shift+B) makes a refined mask, shown with the category popup (then cancelled); Find Similar (Ctrl+F)
    from the left bear previews its similarity map, and its search lists the proposal under "Proposals"."""
    window.settings.min_frame_ms = 0
    window.project.open_project(project)
    walk.wait(lambda: window.project.project_path == project and window.project.doc is not None, 120, "the project")
    window.project.open_image(BEARS_IMAGE)
    walk.wait(lambda: window.project.doc is not None and window.project.doc.image_id == BEARS_IMAGE, 60, "the bears")
    doc = window.project.doc
    assert doc is not None
    bears = sorted((layer for layer in doc.layers() if window.project.categories[layer.category_id].name == "bear"),
                   key=lambda layer: float(np.nonzero(layer.mask)[1].mean()))
    left, right = bears[0].id, bears[-1].id
    truth = doc.layer(right).mask.copy()
    doc.select(right)
    window.actions["instance.delete"].trigger()  # as if this bear had not been annotated yet
    assert not doc.has_layer(right)
    window.actions["view.fit"].trigger()
    walk.settle(0.5)

    ys, xs = np.nonzero(truth)
    h, w = truth.shape
    x0, y0 = max(0, int(xs.min()) - 8), max(0, int(ys.min()) - 8)  # the deleted outline's box, a little wider
    x1, y1 = min(w - 1, int(xs.max()) + 8), min(h - 1, int(ys.max()) + 8)
    offered: list[str] = []

    def category_popup(parent: QWidget, categories: list[Category], current_id: int | None,
                       beside: QRect | None = None) -> None:
        """The popup as the window places it (beside the refined mask) with "bear" picked, shown without
        waiting, screenshot, then cancelled: the bear stays unannotated for Find Similar."""
        dialog = popups.category_dialog(parent, categories, current_id, beside)
        dialog.setTextValue("bear")
        dialog.show()
        walk.settle(1.0)
        walk.shoot("19-box-prompt.png")
        offered.append(dialog.textValue())
        dialog.close()
        assert window.canvas.prompt_item.isVisible()
        return None

    popups.pick_category = category_popup  # type: ignore[assignment]
    outcomes: list[object] = []
    window.prompt_service.worker.done.connect(outcomes.append)
    window.actions["tool.box"].trigger()
    _drag(window, [(x0, y0), ((x0 + x1) // 2, (y0 + y1) // 2), (x1, y1)])
    walk.wait(lambda: bool(offered) and bool(outcomes) and window.prompts.running is None, 600, "the box prompt")
    assert len(doc.layers()) == len(bears) - 1
    log.info("box prompt %s: IoU %.3f with the deleted annotation", (x0, y0, x1, y1),
             _iou(outcomes[0].full(), truth))  # type: ignore[attr-defined]

    window.actions["tool.select"].trigger()
    doc.select(left)
    window.actions["edit.find_similar"].trigger()
    dialog = window.findChild(SimilarDialog)
    assert dialog is not None  # placed beside the photo by the window
    walk.wait(lambda: dialog.similarity is not None and dialog._map_job is None, 600, "the similarity map")
    walk.shoot("20-find-similar.png")
    reports: list[object] = []
    dialog.searched.connect(reports.append)
    dialog.run_button.click()
    walk.wait(lambda: bool(reports), 900, "the search")
    created = reports[0].created  # type: ignore[attr-defined]
    assert created, "Find Similar proposed nothing"
    walk.wait(lambda: window.project.doc is not None and window.project.doc.has_layer(created[0]), 60, "the proposal")
    dialog.close()
    panel = window.instance_panel
    walk.wait(lambda: panel.model.rowCount() >= 1, 30, "the proposals listed")
    panel.view.clicked.emit(panel.model.index(0, 0))
    walk.wait(lambda: window.project.doc is not None and window.project.doc.selected_id in created, 60, "selection")
    found = window.project.doc.layer(window.project.doc.selected_id).mask  # type: ignore[union-attr]
    log.info("Find Similar: %d proposal(s); the first has IoU %.3f with the deleted annotation", len(created),
             _iou(found, truth))
    window.actions["view.fit"].trigger()  # both bears: the example and the proposal
    walk.shoot("21-proposals.png")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _edge_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) on the mask's top edge, a little left of its middle column: a stroke there visibly extends it."""
    ys, xs = np.nonzero(mask)
    column = int(np.median(xs))
    return column - 20, int(ys[xs == column].min())


def _drag(window: MainWindow, points: list[tuple[int, int]]) -> None:
    """A left-button drag through image points on the canvas."""
    viewport = window.canvas.viewport()
    left = Qt.MouseButton.LeftButton

    def send(kind: QEvent.Type, x: int, y: int, button: Qt.MouseButton, buttons: Qt.MouseButton) -> None:
        pos = QPointF(window.canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)))
        event = QMouseEvent(kind, pos, QPointF(viewport.mapToGlobal(pos.toPoint())), button, buttons,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)

    send(QEvent.Type.MouseButtonPress, *points[0], left, left)
    for x, y in points[1:]:
        send(QEvent.Type.MouseMove, x, y, Qt.MouseButton.NoButton, left)
    send(QEvent.Type.MouseButtonRelease, *points[-1], left, Qt.MouseButton.NoButton)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--weights", help="registry name or checkpoint file (default: the default weights if installed)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--width", type=int, default=1360, help="scale wider screenshots to this width")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not SOURCE.is_file():
        log.error("coco_tiny not found at %s (see ../shared/data/README.md)", COCO_TINY)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="segrefiner-walk-") as scratch_dir:
        scratch = Path(scratch_dir)
        os.environ["HOME"] = str(scratch)  # Documents/SegRefiner Studio goes here, not in the user's home
        os.environ.pop("XDG_DOCUMENTS_DIR", None)
        app = QApplication(sys.argv[:1])
        configure_application(app)
        settings = scratch_settings(args.weights, scratch)
        settings.steps = args.steps
        walk = Walk(app, args.out, args.width)
        project = run(walk, lambda: settings, scratch)
        log.info("walked through %s; %d screenshots in %s", project, len(walk.taken), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
