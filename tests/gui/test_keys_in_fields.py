"""Keys a text field uses (Return, Tab, Backspace, letters) go to the field with the focus, not to the window's
one-key shortcuts: typing a filter or a step count must not accept, skip or reject an instance."""
from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMenu, QWidget
from pytestqt.qtbot import QtBot

from app.gui.main_window import MainWindow

from .test_window import select_the_next_instance


def focus(qtbot: QtBot, window: MainWindow, field: QWidget) -> None:
    window.activateWindow()
    field.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is field or field.isAncestorOf(QApplication.focusWidget()))


def test_return_tab_and_letters_in_a_field_stay_in_the_field(window: MainWindow, qtbot: QtBot) -> None:
    doc, selected = select_the_next_instance(window)
    status = doc.layer(selected).status
    fields = [window.instance_panel.min_area, window.image_panel.filter_edit, window.refine_panel.steps_box,
              window.properties_panel.category_box]
    for field in fields:
        focus(qtbot, window, field)
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_A, Qt.Key.Key_X, Qt.Key.Key_Backspace):
            qtbot.keyClick(QApplication.focusWidget(), key)
        assert doc.selected_id == selected and doc.layer(selected).status == status, type(field).__name__
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        assert doc.selected_id == selected, type(field).__name__
        assert not field.isAncestorOf(QApplication.focusWidget()) and QApplication.focusWidget() is not field
    sort = window.instance_panel.sort_box  # a list one only picks from keeps the window's keys
    focus(qtbot, window, sort)
    qtbot.keyClick(sort, Qt.Key.Key_W)
    assert doc.layer(selected).status == "needs_work"
    focus(qtbot, window, window.refine_panel.steps_box)
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(2, 2))  # back to the image
    assert QApplication.focusWidget() is window.canvas
    doc.select(selected)  # the click on the background let go of it
    qtbot.keyClick(window.canvas, Qt.Key.Key_A)
    assert doc.layer(selected).status == "accepted"  # there a letter is its command again
    qtbot.keyClick(window.canvas, Qt.Key.Key_Tab)
    assert doc.selected_id != selected  # and Tab is Next Instance


def test_a_right_click_on_the_canvas_opens_its_menu(window: MainWindow, qtbot: QtBot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shown: list[QMenu] = []
    monkeypatch.setattr(QMenu, "popup", lambda menu, *args: shown.append(menu))
    viewport = window.canvas.viewport()
    # through the window, as a real click goes: Qt makes the context-menu event there
    at = viewport.mapTo(window, QPoint(viewport.width() // 2, viewport.height() // 2))
    QTest.mouseClick(window.windowHandle(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, at)
    qtbot.waitUntil(lambda: shown == [window.context_menus.canvas_menu])


def test_a_category_name_that_is_not_the_projects_goes_back_and_says_so(window: MainWindow, qtbot: QtBot) -> None:
    doc, selected = select_the_next_instance(window)
    category = doc.layer(selected).category_id
    box = window.properties_panel.category_box
    shown = box.currentText()
    focus(qtbot, window, box)
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "kitten")
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)
    assert doc.layer(selected).category_id == category and box.currentText() == shown
    assert 'No category is named "kitten"' in window.statusBar().currentMessage()


def test_the_open_image_stays_highlighted_after_the_file_filter_is_cleared(window: MainWindow, qtbot: QtBot) -> None:
    panel = window.image_panel
    doc = window.project.doc
    assert doc is not None
    panel.filter_edit.setText("no such name")
    assert panel.proxy.rowCount() == 0
    panel.filter_edit.clear()
    selected = panel.view.selectionModel().selectedRows()
    assert len(selected) == 1 and panel.proxy.data(selected[0], Qt.ItemDataRole.UserRole) == doc.image_id


def test_digits_typed_in_a_filter_showing_any_replace_it(window: MainWindow, qtbot: QtBot) -> None:
    panel = window.instance_panel
    for field, keys, value in ((panel.min_area, "500", 500), (panel.min_change, "20", 20),
                               (panel.min_score, "0.5", 0.5)):
        assert field.text() == "any"
        focus(qtbot, window, field)
        field.lineEdit().setCursorPosition(len(field.text()))  # where a click at the end of "any" leaves it
        qtbot.keyClicks(QApplication.focusWidget(), keys)
        assert field.value() == value, field.text()
