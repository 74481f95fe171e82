"""What annotators expect of a window they spend the day in (issue 13): per-instance edit history with
revert, a Help menu, right-click menus, readable lists, a stable layout, a capped auto-zoom, a numeric
brush size and clearly checked View items."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QToolButton
from pytestqt.qtbot import QtBot

from app.core.store.history import EditAction
from app.gui.autosave import AUTHOR
from app.gui.docks.instance_list import ALL_IMAGES, AREA, CATEGORY, FLAGS, ID, IMAGE, SCORE, TO_REVIEW_KEY
from app.gui.help import shortcut_rows
from app.gui.main_window import MainWindow

from .conftest import wait_saved
from .test_window import drag, paint_a_brush_stroke, select_the_next_instance

RUN_TIMEOUT_MS = 120_000


def dock_widths(window: MainWindow) -> dict[str, int]:
    return {dock.objectName(): dock.width() for dock in window.docks if dock.isVisible()}


def test_docks_keep_their_width_across_accept_and_navigation(window: MainWindow, qtbot: QtBot) -> None:
    QApplication.processEvents()
    before = dock_widths(window)
    doc = window.project.doc
    assert doc is not None
    doc.select(max(doc.layers(), key=lambda layer: int(layer.mask.sum())).id)
    window.refine_selected()
    qtbot.waitUntil(lambda: window.refine.reviewing, timeout=RUN_TIMEOUT_MS)
    QApplication.processEvents()
    window.actions["refine.accept"].trigger()
    wait_saved(qtbot, window)
    qtbot.wait(300)  # the lists refresh after a save
    assert dock_widths(window) == before
    for _ in range(3):
        with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
            window.actions["image.next"].trigger()
        window.actions["instance.next"].trigger()
        QApplication.processEvents()
        assert dock_widths(window) == before


def test_the_edit_history_lists_saved_edits_with_thumbnails_and_reverts_one(window: MainWindow, qtbot: QtBot) -> None:
    doc, selected = select_the_next_instance(window)
    before_brush = window.project.store.instance(selected).mask()  # type: ignore[union-attr]
    paint_a_brush_stroke(window)  # read first: the writer thread may save the stroke at any moment
    wait_saved(qtbot, window)
    painted = doc.layer(selected).mask.copy()
    window.actions["review.needs_work"].trigger()
    wait_saved(qtbot, window)
    panel = window.edit_history
    assert panel.visibleRegion().isEmpty() and panel.list.count() == 0  # tabbed behind Properties: nothing read
    window.edits_dock.raise_()  # the annotator opens the Edit History tab
    qtbot.waitUntil(lambda: panel.list.count() == 2, timeout=5_000)
    texts = [panel.list.item(row).text() for row in range(panel.list.count())]
    assert texts[0].startswith("Status unreviewed → needs work") and texts[1].startswith("Brush")
    qtbot.waitUntil(lambda: not panel.list.item(1).icon().isNull(), timeout=10_000)  # the mask it left
    assert panel.list.item(0).icon().isNull()  # a status change has no mask to show
    brush_edit = panel.list.item(1).data(Qt.ItemDataRole.UserRole)
    assert brush_edit.action is EditAction.MANUAL and brush_edit.params["author"]
    assert panel.select_edit(brush_edit.id) and panel.revert_button.isEnabled()
    panel.revert_button.click()
    assert np.array_equal(doc.layer(selected).mask, before_brush)
    assert doc.layer(selected).status == "needs_work"  # what the brush edit did not change stays
    wait_saved(qtbot, window)
    assert np.array_equal(window.project.store.instance(selected).mask(), before_brush)  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: panel.list.count() == 3, timeout=5_000)
    assert panel.list.item(0).text().startswith("Revert")
    window.actions["edit.undo"].trigger()  # the revert is one undo step
    assert np.array_equal(doc.layer(selected).mask, painted)
    wait_saved(qtbot, window)
    undone = window.project.store.history(selected)[-1]  # type: ignore[union-attr]
    assert undone.action is EditAction.REVERT and undone.params["author"] == AUTHOR  # saved as a revert, by whom


def test_help_lists_every_shortcut_from_the_registry_and_about_names_versions_model_and_licences(
    window: MainWindow,
) -> None:
    window.actions.set_shortcut("refine.run", QKeySequence("Ctrl+Alt+R"))
    sections = dict(shortcut_rows(window.actions))
    assert ("Refine Selected", "Ctrl+Alt+R") in sections["Refine"]
    assert ("Brush", "B") in sections["Tools"] and "Help" in sections
    assert ("Redo", "Ctrl+Shift+Z or Ctrl+Y") in sections["Edit"]
    sheet = window.open_shortcuts()
    text = sheet.browser.toPlainText()
    assert "Refine Selected" in text and "Ctrl+Alt+R" in text and "Space + drag" in text
    box = window.open_about()
    about = box.text()
    assert "PySide6" in about and "torch" in about and "random-compact.safetensors" in about
    assert "LGPL-3.0" in about and "Apache-2.0" in about and "Model:" in about
    box.close()


def test_right_click_on_the_canvas_selects_the_instance_and_offers_its_actions(window: MainWindow) -> None:
    doc = window.project.doc
    assert doc is not None
    target = max(doc.layers(), key=lambda layer: int(layer.mask.sum()))
    ys, xs = np.nonzero(target.mask)
    x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    on_top = doc.instance_at(x, y)
    assert on_top is not None and doc.selected_id != on_top
    menu = window.context_menus.on_canvas(window.canvas.mapFromScene(x + 0.5, y + 0.5))
    assert doc.selected_id == on_top
    names = [action.objectName() for action in menu.actions() if action.objectName()]
    assert {"refine.run", "review.accepted", "instance.lock", "instance.delete"} <= set(names)
    assert window.actions["instance.lock"].isEnabled()
    menu.close()
    rows = window.instance_panel.model.rowCount()
    view = window.instance_panel.view
    last = view.visualRect(window.instance_panel.model.index(rows - 1, CATEGORY)).center()
    menu = window.context_menus.on_instances(last)
    assert menu is not None and doc.selected_id == window.instance_panel.model.data(
        window.instance_panel.model.index(rows - 1, 0), Qt.ItemDataRole.UserRole)
    menu.close()
    assert rows * view.rowHeight(0) < view.viewport().height()  # a click below the rows offers nothing
    assert window.context_menus.on_instances(QPoint(5, view.viewport().height() - 2)) is None


def test_lists_read_well_and_say_what_they_count(window: MainWindow, qtbot: QtBot) -> None:
    doc, store = window.project.doc, window.project.store
    assert doc is not None and store is not None
    ids = sorted(layer.id for layer in doc.layers())
    doc.set_status(ids[0], "accepted")
    doc.set_status(ids[1], "rejected")
    wait_saved(qtbot, window)
    window._refresh_lists()
    images = window.image_panel
    assert images.view.textElideMode() == Qt.TextElideMode.ElideMiddle
    row = images.model.row_of(doc.image_id)
    assert images.model.data(images.model.index(row, 3)) == len(ids) - 1  # rejected is still to review
    assert "not accepted" in images.model.headerData(3, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    panel = window.instance_panel
    model = panel.model
    assert model.headerData(CATEGORY, Qt.Orientation.Horizontal) == "Category"
    assert panel.view.isColumnHidden(SCORE)  # the demo is ground truth: no scores, no empty column
    assert panel.view.columnWidth(CATEGORY) >= 100
    first = model.index(0, AREA)
    instance_id = model.data(first, Qt.ItemDataRole.UserRole)
    assert model.data(first) == int(store.instance(instance_id).mask().sum())
    tip = model.data(first, Qt.ItemDataRole.ToolTipRole)
    assert "px in the mask" in tip and "area in the annotation file" in tip
    panel.status_box.setCurrentIndex(panel.status_box.findData(TO_REVIEW_KEY))
    assert model.rowCount() == len(ids) - 1 and "to review (not accepted)" in panel.count_label.text()
    assert panel.view.isColumnHidden(IMAGE)  # this image's instances: the open image
    panel.scope_box.setCurrentIndex(ALL_IMAGES)
    qtbot.waitUntil(lambda: not panel.view.isColumnHidden(IMAGE))
    names = {r.id: r.file_name for r in store.images()}
    rows = [model.summary(r) for r in range(model.rowCount())]
    assert len({s.image_id for s in rows}) > 1  # rows of several images: each names its own
    assert all(model.data(model.index(r, IMAGE)) == names[s.image_id] for r, s in enumerate(rows))
    assert panel.view.columnWidth(IMAGE) >= panel.view.fontMetrics().horizontalAdvance("astronaut.jpg")


def test_the_brush_size_is_a_number_and_checked_view_items_show_a_check_mark(window: MainWindow) -> None:
    box = window.brush_size_box
    box.setValue(37)
    assert window.canvas.brush_size == 37
    window.actions["brush.larger"].trigger()
    assert box.value() == window.canvas.brush_size > 37
    window.actions["tool.brush"].trigger()
    drag(window, [(20, 20), (21, 20)])
    for name in ("view.contour_only", "view.show_diff", "tool.brush"):
        action = window.actions[name]
        assert action.isCheckable() and not action.isIconVisibleInMenu()
    assert not window.actions["file.save"].isCheckable() and window.actions["file.save"].isIconVisibleInMenu()


@pytest.mark.parametrize("scope", [0, 1])
def test_selecting_a_tiny_instance_from_the_list_zooms_at_most_400_percent(
    window: MainWindow, qtbot: QtBot, scope: int,
) -> None:
    doc = window.project.doc
    assert doc is not None
    window.instance_panel.scope_box.setCurrentIndex(scope)
    tiny = np.zeros(doc.shape, dtype=bool)
    tiny[5:8, 5:9] = True
    doc.select(min(layer.id for layer in doc.layers()))
    doc.apply_mask(doc.selected_id, tiny, "brush")
    wait_saved(qtbot, window)
    doc.select(None)
    window._instance_activated(min(layer.id for layer in doc.layers()))
    assert 1.0 < window.canvas.zoom <= 4.0



def test_the_instance_list_reads_mask_areas_for_the_rows_on_screen_only(
    qtbot: QtBot, tmp_path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from app.core.records import Category, Dataset, ImageRecord, Instance, encode_mask
    from app.core.store.project import ProjectStore
    from app.gui.docks import instance_list

    mask = np.zeros((40, 60), bool)
    mask[5:20, 5:30] = True
    dataset = Dataset({1: ImageRecord(1, "a.jpg", 60, 40)}, {1: Category(1, "thing")},
                      [Instance(i, 1, 1, encode_mask(mask)) for i in range(1, 501)])
    reads: list[int] = []
    real = instance_list.pixel_area
    monkeypatch.setattr(instance_list, "pixel_area", lambda store, i: reads.append(i) or real(store, i))
    with ProjectStore.create(tmp_path / "many.srproj", dataset) as store:
        panel = instance_list.InstanceListPanel([])
        qtbot.addWidget(panel)
        panel.resize(380, 500)
        panel.show()
        panel.set_store(store)
        panel.apply(None)
        qtbot.wait(50)
        panel.refresh({1, 2})
        qtbot.wait(50)
        assert panel.model.data(panel.model.index(0, AREA)) == 375
        assert 0 < len(set(reads)) <= 40 and reads.count(3) <= 1  # a screenful; a row not saved is read once


def test_a_long_id_further_down_the_list_is_not_cut(window: MainWindow, qtbot: QtBot, big_ids_project) -> None:  # type: ignore[no-untyped-def]
    from .conftest import BIG_IMAGE_ID, CROWD_ID, open_project

    open_project(qtbot, window, big_ids_project, BIG_IMAGE_ID)
    panel = window.instance_panel
    panel.scope_box.setCurrentIndex(1)
    width = panel.view.columnWidth(ID)
    assert width >= panel.view.fontMetrics().horizontalAdvance(str(CROWD_ID))
    model = panel.model
    flags = {model.data(model.index(r, 0), Qt.ItemDataRole.UserRole): model.data(model.index(r, FLAGS),
                                                                                   Qt.ItemDataRole.DecorationRole)
             for r in range(model.rowCount())}
    assert flags[CROWD_ID] is not None  # a crowd region is marked (it is never refined)
    assert "crowd" in model.headerData(FLAGS, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)


def test_an_area_that_grows_a_digit_is_not_cut(qtbot: QtBot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.core.records import Category, Dataset, ImageRecord, Instance, encode_mask
    from app.core.store.project import ProjectStore
    from app.gui.docks.instance_list import InstanceListPanel

    mask = np.zeros((400, 600), bool)
    mask[:90, :100] = True  # 9000 pixels: four digits
    dataset = Dataset({1: ImageRecord(1, "a.jpg", 600, 400)}, {1: Category(1, "thing")}, [Instance(1, 1, 1, encode_mask(mask))])
    with ProjectStore.create(tmp_path / "grow.srproj", dataset) as store:
        panel = InstanceListPanel([])
        qtbot.addWidget(panel)
        panel.show()
        panel.set_store(store)
        panel.apply(None)
        mask[:, :300] = True  # 120,000 pixels: six digits
        store.set_mask(1, mask)
        panel.refresh({1})
        qtbot.wait(20)
        shown = str(panel.model.data(panel.model.index(0, AREA)))
        assert shown == "120000"
        assert panel.view.columnWidth(AREA) >= panel.view.fontMetrics().horizontalAdvance(shown) + 8


def test_the_settings_file_choosers_start_where_the_last_file_was_chosen(
        window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.gui import settings as settings_module
    from app.gui.import_dialogs import remember_folder

    (tmp_path / "models").mkdir()
    (tmp_path / "sam").mkdir()
    remember_folder(window.settings.qsettings, tmp_path / "models" / "earlier.json")
    started: list[str] = []

    def choose(_parent, _title, folder, _filter):  # type: ignore[no-untyped-def]
        started.append(folder)
        return str(tmp_path / "sam" / "sam_vit_b.pth"), ""

    monkeypatch.setattr(settings_module.QFileDialog, "getOpenFileName", choose)
    dialog = window.open_settings()
    dialog._choose_sam()
    dialog._add_weights()
    assert started == [str(tmp_path / "models"), str(tmp_path / "sam")]
    dialog.reject()


def test_a_narrowed_window_takes_width_from_widened_docks_not_only_from_the_canvas(window: MainWindow) -> None:
    window.resize(1800, 900)
    QApplication.processEvents()
    window.resizeDocks([window.image_dock, window.refine_dock], [600, 500], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    wide = window.image_dock.width(), window.refine_dock.width()
    window.resize(1200, 800)
    QApplication.processEvents()
    assert window.image_dock.width() < wide[0] and window.refine_dock.width() < wide[1]
    assert window.canvas.width() > 300  # Qt alone left it 70 px wide


def test_a_small_window_leaves_the_photo_room_and_widening_it_again_gives_the_panels_back(window: MainWindow) -> None:
    window.resize(1500, 920)
    QApplication.processEvents()
    panels = window.image_dock.width(), window.refine_dock.width()
    window.resize(1024, 700)
    QApplication.processEvents()
    assert window.canvas.width() >= 330  # the filters and the refine buttons left it 244 px
    assert window.image_dock.width() < panels[0] and window.refine_dock.width() < panels[1]
    window.resize(1500, 920)
    QApplication.processEvents()
    assert abs(window.image_dock.width() - panels[0]) <= 2 and abs(window.refine_dock.width() - panels[1]) <= 2
    assert window.actions["refine.dataset"].text() == "Refine All Unreviewed"  # menus keep the whole name
    assert window.refine_panel.findChild(QToolButton, "refine_dataset_button").text() == "All Unreviewed"
