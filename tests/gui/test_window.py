"""The real main window, offscreen, on the demo project: opening, selecting, painting, undo, review,
export, session resume and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QColor, QKeySequence, QMouseEvent
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from app.core.records import ReviewStatus
from app.core.store.project import ProjectStore
from app.gui import popups
from app.gui.actions import ActionRegistry
from app.core.package_data import demo_dir
from app.services.demo import DEMO_JSON, demo_project_path
from app.gui.editor.document import ImageDocument
from app.gui.main_window import MainWindow
from app.gui.editor.preview import DiffColors
from app.gui.settings import MAX_FRAME_MS, MAX_SEED, AppSettings

from .conftest import open_window, wait_saved

LEFT = Qt.MouseButton.LeftButton


def drag(window: MainWindow, points: list[tuple[float, float]]) -> None:
    """A left-button drag through image points on the canvas."""
    canvas = window.canvas
    viewport = canvas.viewport()

    def send(kind: QEvent.Type, x: float, y: float, button: Qt.MouseButton, buttons: Qt.MouseButton) -> None:
        pos = QPointF(canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)))
        glob = QPointF(viewport.mapToGlobal(pos.toPoint()))
        QApplication.sendEvent(viewport, QMouseEvent(kind, pos, glob, button, buttons, Qt.KeyboardModifier.NoModifier))

    send(QEvent.Type.MouseButtonPress, *points[0], LEFT, LEFT)
    for x, y in points[1:]:
        send(QEvent.Type.MouseMove, x, y, Qt.MouseButton.NoButton, LEFT)
    send(QEvent.Type.MouseButtonRelease, *points[-1], LEFT, Qt.MouseButton.NoButton)


def stored_mask(window: MainWindow, instance_id: int) -> np.ndarray:
    store = window.project.store
    assert store is not None
    return store.instance(instance_id).mask()


def select_the_next_instance(window: MainWindow) -> tuple[ImageDocument, int]:
    """Select the next instance; the open document and the instance id."""
    doc = window.project.doc
    assert doc is not None
    window.actions["instance.next"].trigger()
    selected = doc.selected_id
    assert selected is not None
    return doc, selected


def paint_a_brush_stroke(window: MainWindow) -> None:
    """One brush stroke on the selected instance (saved by the writer thread, not at once)."""
    window.actions["tool.brush"].trigger()
    drag(window, [(20, 20), (60, 20)])


def brush_the_next_instance(window: MainWindow) -> tuple[ImageDocument, int]:
    """Select the next instance and paint one brush stroke on it; the open document and the instance id."""
    doc, selected = select_the_next_instance(window)
    paint_a_brush_stroke(window)
    return doc, selected


def test_demo_opens_with_images_instances_and_canvas(window: MainWindow) -> None:
    demo = json.loads((demo_dir() / DEMO_JSON).read_text())
    assert window.image_panel.model.rowCount() == len(demo["images"]) == 4
    doc = window.project.doc
    assert doc is not None and window.canvas.document is doc
    first = demo["images"][0]
    assert doc.shape == (first["height"], first["width"])
    on_first = [a for a in demo["annotations"] if a["image_id"] == first["id"]]
    assert len(doc.layers()) == len(on_first) == window.instance_panel.model.rowCount()
    assert not doc.image.min() == doc.image.max()  # the photo itself, not the grey placeholder
    assert doc.photo_levels is not None and window.canvas.image_item is not None
    assert window.canvas.image_item.levels is doc.photo_levels  # built by the loader thread
    assert window.navigator_dock.widget() is window.navigator and not window.navigator.image_rect().isEmpty()
    assert "demo.srproj" in window.windowTitle()
    assert window.last_error is None


def test_an_opened_project_is_kept_out_of_the_collectors_scans(window: MainWindow) -> None:
    import gc

    store = window.project.store
    assert store is not None and gc.get_freeze_count() > 0
    scanned = {id(o) for o in gc.get_objects()}
    assert id(window.project.images) not in scanned  # loaded with the project: a full collection skips it


def test_select_paint_erase_undo_redo_autosaves(window: MainWindow, qtbot: QtBot) -> None:
    doc = window.project.doc
    assert doc is not None
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Tab)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Tab)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    selected = doc.selected_id
    assert selected == min(layer.id for layer in doc.layers())
    assert selected is not None
    assert window.properties_panel.instance_label.text().startswith(str(selected))
    assert window.properties_panel.area_label.text() == f"{int(doc.layer(selected).mask.sum())} px"
    coarse = doc.layer(selected).mask.copy()
    window.actions["tool.brush"].trigger()
    assert window.canvas.tool == "brush"
    window.canvas.brush_size = 9
    drag(window, [(20, 20), (40, 22), (60, 24)])  # far from every demo polygon of this image
    painted = doc.layer(selected).mask.copy()
    assert painted[22, 40] and not coarse[22, 40]
    qtbot.waitUntil(lambda: np.array_equal(stored_mask(window, selected), painted), timeout=10_000)  # unasked

    window.actions["tool.eraser"].trigger()
    drag(window, [(40, 14), (40, 30)])
    erased = doc.layer(selected).mask.copy()
    assert not erased[22, 40] and erased[22, 60]
    wait_saved(qtbot, window)
    assert np.array_equal(stored_mask(window, selected), erased)

    window.actions["edit.undo"].trigger()
    assert np.array_equal(doc.layer(selected).mask, painted)
    window.actions["edit.undo"].trigger()
    assert np.array_equal(doc.layer(selected).mask, coarse)
    wait_saved(qtbot, window)
    assert np.array_equal(stored_mask(window, selected), coarse)
    window.actions["edit.redo"].trigger()
    wait_saved(qtbot, window)
    assert np.array_equal(stored_mask(window, selected), painted)
    assert window.undo_view.stack() is doc.undo_stack and doc.undo_stack.count() == 2
    history = window.project.store.history(selected)  # type: ignore[union-attr]
    assert len([e for e in history if e.mask_changed]) == 5  # paint, erase, two undos, one redo


def test_switching_image_right_after_a_stroke_keeps_the_stroke(window: MainWindow, qtbot: QtBot) -> None:
    doc, selected = brush_the_next_instance(window)
    painted = doc.layer(selected).mask.copy()
    with qtbot.waitSignal(window.project.document_changed, timeout=10_000):
        window.actions["image.next"].trigger()
    assert np.array_equal(stored_mask(window, selected), painted)


def test_review_keys_set_status_and_enter_moves_to_the_next_unreviewed(window: MainWindow, qtbot: QtBot) -> None:
    doc = window.project.doc
    assert doc is not None
    first = sorted(layer.id for layer in doc.layers())
    doc.select(first[0])
    qtbot.keyClick(window.canvas, Qt.Key.Key_X)
    store = window.project.store
    assert store is not None
    wait_saved(qtbot, window)
    assert store.instance(first[0]).status is ReviewStatus.REJECTED
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    wait_saved(qtbot, window)
    assert store.instance(first[0]).status is ReviewStatus.ACCEPTED
    assert doc.selected_id == first[1]
    for instance_id in first[1:-1]:
        window.accept_and_next()
    assert doc.selected_id == first[-1]
    with qtbot.waitSignal(window.project.document_changed, timeout=10_000):
        window.accept_and_next()  # the last one on this image: on to the next image with unreviewed ones
    new_doc = window.project.doc
    assert new_doc is not None and new_doc.image_id != doc.image_id
    assert new_doc.selected_id is not None
    assert new_doc.layer(new_doc.selected_id).status == ReviewStatus.UNREVIEWED.value
    wait_saved(qtbot, window)
    assert store.counts_by_status()[ReviewStatus.ACCEPTED] == len(first)


def test_new_delete_and_undo_keep_the_store_in_step(window: MainWindow, qtbot: QtBot,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    before = store.count_instances()
    monkeypatch.setattr(popups, "pick_category",
                        lambda _w, categories, *_a: next(c for c in categories if c.name == "flag"))
    window.actions["instance.new"].trigger()
    new_id = doc.selected_id
    assert new_id is not None and window.canvas.tool == "brush"
    drag(window, [(500, 40), (520, 40)])
    wait_saved(qtbot, window)
    assert store.instance(new_id).mask()[40, 510]
    assert store.count_instances() == before + 1
    window.actions["instance.delete"].trigger()
    wait_saved(qtbot, window)
    assert not doc.has_layer(new_id) and store.count_instances() == before
    window.actions["edit.undo"].trigger()
    wait_saved(qtbot, window)
    assert doc.has_layer(new_id) and store.instance(new_id).mask()[40, 510]
    assert store.instance(new_id).category_id == doc.layer(new_id).category_id


def test_instance_list_filters_and_sorts_from_the_store(window: MainWindow) -> None:
    panel = window.instance_panel
    panel.scope_box.setCurrentIndex(1)  # all images
    assert panel.model.rowCount() == 13
    panel.category_box.setCurrentIndex(panel.category_box.findText("eye"))
    panel.category_box.activated.emit(panel.category_box.currentIndex())
    assert panel.model.rowCount() == 2
    panel.category_box.setCurrentIndex(0)
    panel.category_box.activated.emit(0)
    panel.sort_box.setCurrentText("Largest area")
    areas = [panel.model.summary(r).area for r in range(panel.model.rowCount())]  # type: ignore[union-attr]
    assert areas == sorted(areas, reverse=True)
    panel.min_area.setValue(50_000)
    assert 0 < panel.model.rowCount() < 13


def test_export_coco_reads_back_with_pycocotools(window: MainWindow, qtbot: QtBot, tmp_path: Path) -> None:
    doc, selected = brush_the_next_instance(window)
    dialog = window.open_export_dialog()
    assert dialog is not None
    out = tmp_path / "export.json"
    dialog.path_edit.setText(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=20_000):
        dialog.start()
    coco = COCO(str(out))
    assert len(coco.anns) == 13
    exported = coco.annToMask(coco.anns[selected]).astype(bool)
    assert np.array_equal(exported, doc.layer(selected).mask)


def test_session_resumes_image_instance_and_filters(
    qtbot: QtBot, app_settings: AppSettings, data_dir: Path, window: MainWindow,
) -> None:
    window.project.step_image(2)
    qtbot.waitUntil(lambda: window.project.doc is not None and window.project.doc.image_id == 3, timeout=10_000)
    doc = window.project.doc
    assert doc is not None
    target = sorted(layer.id for layer in doc.layers())[1]
    doc.select(target)
    window.instance_panel.sort_box.setCurrentText("Lowest confidence")
    window.close()
    again = open_window(qtbot, app_settings, data_dir)
    doc = again.project.doc
    assert doc is not None and doc.image_id == 3 and doc.selected_id == target
    assert again.instance_panel.filters()["sort"] == "Lowest confidence"


def test_bad_project_file_shows_one_error_and_keeps_the_window(window: MainWindow, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.srproj"
    bogus.write_text("not a database")
    assert not window.project.open_project(bogus)
    assert window.last_error is not None and "notes.srproj" in window.last_error[1]
    assert window.project.doc is not None  # the demo is still open
    assert not window.project.open_project(tmp_path / "missing.srproj")
    assert "missing.srproj" in window.last_error[1]


def test_import_coco_creates_the_project_where_asked_and_opens_it(window: MainWindow, qtbot: QtBot,
                                                                   tmp_path: Path) -> None:
    source = tmp_path / "mini.json"
    demo = json.loads((demo_dir() / DEMO_JSON).read_text())
    demo["images"] = demo["images"][1:2]
    demo["annotations"] = [a for a in demo["annotations"] if a["image_id"] == demo["images"][0]["id"]]
    source.write_text(json.dumps(demo))
    with qtbot.waitSignal(window.project.project_changed, timeout=20_000):
        window.project.import_dataset(source, None, demo_dir(), project=tmp_path / "projects" / "mini.srproj")
    qtbot.waitUntil(lambda: window.project.doc is not None and window.project.doc.image_id == 2, timeout=10_000)
    assert window.project.project_path == tmp_path / "projects" / "mini.srproj"
    assert window.image_panel.model.rowCount() == 1
    assert (tmp_path / "projects" / "mini.import-report.json").is_file()
    assert "mini.srproj" in window.settings.recent_projects[0]


def test_import_of_a_broken_file_reports_it_and_keeps_the_open_project(
    window: MainWindow, qtbot: QtBot, tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    before = window.project.project_path
    window.project.import_dataset(broken, None, demo_dir(), project=tmp_path / "broken.srproj")
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=20_000)
    assert window.last_error is not None
    title, message = window.last_error
    assert title == "Import failed" and "broken.json" in message
    assert window.project.project_path == before and not (tmp_path / "broken.srproj").exists()


def test_a_second_window_opens_the_project_read_only_and_says_so(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(QMessageBox, "warning", lambda *_a, **_k: QMessageBox.StandardButton.Discard)
    settings = AppSettings(QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat))
    other = MainWindow(settings, data_dir=data_dir)
    qtbot.addWidget(other)
    messages: list[str] = []
    other.project.message.connect(messages.append)
    with qtbot.waitSignal(other.project.document_changed, timeout=20_000):
        other.open_startup()
    assert other.project.store is not None and other.project.store.read_only
    assert any("read-only" in m for m in messages)
    doc = other.project.doc
    assert doc is not None
    doc.set_status(doc.layers()[0].id, ReviewStatus.ACCEPTED.value)  # kept in the window, not saved
    assert other.last_error is not None and "read-only" in other.last_error[1]


def test_reopening_the_demo_uses_the_same_project_file(window: MainWindow, data_dir: Path) -> None:
    path = demo_project_path(data_dir)
    assert window.project.project_path == path and path.is_file()
    window.project.close_project()
    with ProjectStore.open(path) as store:
        assert store.count_instances() == 13


def test_a_damaged_settings_file_still_opens_the_window(qtbot: QtBot, app_settings: AppSettings,
                                                        data_dir: Path) -> None:
    """Values Qt cannot convert (once a traceback in the refine panel's constructor: the window never showed)
    fall back to their defaults, out-of-range numbers are clamped to what the panel's boxes hold."""
    for key, value in {"refine/seed": "nan", "refine/steps": "1e400", "overlay/opacity": "{}",
                       "refine/min_frame_ms": "99999999999999999999", "prompt/category": "[",
                       "refine/snap": "bogus", "files/recent_projects": "#zzz"}.items():
        app_settings.qsettings.setValue(key, value)
    assert app_settings.seed == 0 and app_settings.opacity == 0.45 and app_settings.prompt_category is None
    assert app_settings.min_frame_ms == MAX_FRAME_MS and app_settings.recent_projects == []
    app_settings.qsettings.setValue("refine/seed", "99999999999999999999")
    assert app_settings.seed == MAX_SEED
    window = open_window(qtbot, app_settings, data_dir)
    assert window.isVisible() and window.refine_panel.seed_box.value() == MAX_SEED
    window.open_settings().close()


def test_shortcuts_are_editable_and_remembered(window: MainWindow, app_settings: AppSettings) -> None:
    dialog = window.open_settings()
    editor = dialog.shortcut_editor("refine.run")
    editor.setKeySequence(QKeySequence("Ctrl+Alt+R"))
    dialog.shortcut_editor("tool.brush").setKeySequence(QKeySequence("Ctrl+Alt+R"))
    assert "Ctrl+Alt+R" in dialog.conflicts()
    assert "Ctrl+Alt+R: Brush, Refine Selected" in dialog.conflict_label.text()  # the commands' names
    dialog.shortcut_editor("tool.brush").setKeySequence(QKeySequence("B"))
    dialog.accept()
    assert window.actions["refine.run"].shortcut().toString() == "Ctrl+Alt+R"
    fresh = ActionRegistry(window, app_settings.qsettings)
    assert fresh.shortcut("refine.run").toString() == "Ctrl+Alt+R"
    assert fresh.shortcut("tool.brush").toString() == "B"


def test_redo_also_answers_ctrl_y_unless_another_command_takes_it(window: MainWindow) -> None:
    redo = window.actions["edit.redo"]
    assert [k.toString() for k in redo.shortcuts()] == ["Ctrl+Shift+Z", "Ctrl+Y"]
    window.actions.set_shortcut("tool.brush", "Ctrl+Y")
    assert [k.toString() for k in redo.shortcuts()] == ["Ctrl+Shift+Z"]  # never two commands on one key
    window.actions.set_shortcut("tool.brush", "B")
    window.actions.set_shortcut("edit.redo", "Ctrl+Alt+Z")
    assert [k.toString() for k in redo.shortcuts()] == ["Ctrl+Alt+Z"]  # the user's own choice alone


def test_the_open_settings_list_what_the_refiner_probe_found(window: MainWindow, qtbot: QtBot) -> None:
    dialog = window.open_settings()
    qtbot.waitUntil(lambda: window.environment is not None, timeout=60_000)
    names = {dialog.weights_box.itemData(i) for i in range(dialog.weights_box.count())}
    assert {"compact-v1", "segrefiner-lr", "segrefiner-hr"} <= names
    assert dialog.device_box.findText("cpu") >= 0 and dialog.device_box.currentText() == "auto"
    assert dialog.preload_box.isChecked()


def test_diff_colours_from_settings_reach_the_canvas_and_the_refiner(
    window: MainWindow, app_settings: AppSettings, data_dir: Path, qtbot: QtBot,
) -> None:
    assert window.canvas.diff_colors == DiffColors((0x28, 0xDC, 0x5A), (0xEB, 0x28, 0xC8))  # the settings' defaults
    dialog = window.open_settings()
    dialog.added_button.set_color(QColor("#0000ff"))
    dialog.removed_button.set_color(QColor("#ffff00"))
    dialog.apply()  # the Apply button: taken up at once, the dialog stays open
    chosen = DiffColors((0, 0, 255), (255, 255, 0))
    assert window.canvas.diff_colors == chosen and window.refine.diff_colors == chosen
    assert window.canvas.diff_overlay is not None and window.canvas.diff_overlay.colors == chosen
    dialog.reject()
    again = MainWindow(app_settings, data_dir=data_dir)  # remembered
    qtbot.addWidget(again)
    assert again.canvas.diff_colors == chosen


@pytest.mark.parametrize("image_file", ["coffee.png", "chelsea.png", "astronaut.jpg", "rocket.jpg"])
def test_demo_masks_are_coarse_but_inside_their_images(image_file: str) -> None:
    demo = json.loads((demo_dir() / DEMO_JSON).read_text())
    image = next(i for i in demo["images"] if i["file_name"] == image_file)
    anns = [a for a in demo["annotations"] if a["image_id"] == image["id"]]
    assert anns
    for ann in anns:
        rle = mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"])
        area = mask_utils.area(mask_utils.merge(rle))
        assert 500 < area < image["height"] * image["width"]
        assert all(len(poly) // 2 <= 24 for poly in ann["segmentation"])  # a few vertices: coarse


def test_change_category_tells_two_categories_of_one_name_apart(qtbot: QtBot, window, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QInputDialog

    from tests.gui.conftest import edited_demo_project, open_project

    def rename(data: dict) -> None:
        data["categories"][1]["name"] = "cup"  # categories 1 and 2 are both "cup" now (a COCO file may do that)

    path = edited_demo_project(tmp_path, "twins", rename)
    doc = open_project(qtbot, window, path, 1)
    doc.select(1)  # the saucer
    offered: list[list[str]] = []

    def answer(_parent, _title, _label, items, _current, _editable):  # type: ignore[no-untyped-def]
        offered.append(list(items))
        return "cup (id 2)", True

    monkeypatch.setattr(QInputDialog, "getItem", answer)
    window.actions["instance.category"].trigger()
    assert offered and offered[0][:3] == ["cup (id 1)", "cup (id 2)", "saucer"]
    assert doc.layer(1).category_id == 2
    assert doc.undo_stack.text(doc.undo_stack.count() - 1) == "Category cup (id 2) #1"  # its name, not its id
    box = window.properties_panel.category_box
    assert [box.itemText(k) for k in range(2)] == ["cup (id 1)", "cup (id 2)"] and box.currentData() == 2
    assert window.instance_panel.model.category_name(2) == "cup (id 2)"


def test_the_settings_name_the_refine_modes_as_the_panel_does(window: MainWindow, app_settings: AppSettings) -> None:
    dialog = window.open_settings()
    assert [dialog.mode_box.itemText(i) for i in range(dialog.mode_box.count())] == [
        window.refine_panel.mode_box.itemText(i) for i in range(window.refine_panel.mode_box.count())]
    dialog.mode_box.setCurrentIndex(dialog.mode_box.findData("hr"))
    dialog.accept()
    assert app_settings.mode == "hr"
