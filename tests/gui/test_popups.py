"""Popups placed beside what they must not hide: on the screen, clear of the target, on the side with room."""
from __future__ import annotations

from typing import Callable

import pytest
from PySide6.QtCore import QRect, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QComboBox, QDialog, QInputDialog, QWidget
from pytestqt.qtbot import QtBot

from app.core.records import Category
from app.gui import popups
from app.gui.popups import pick_category  # the real one: conftest makes popups.pick_category fail

CATEGORIES = [Category(1, "cup"), Category(2, "spoon"), Category(7, "saucer")]


@pytest.fixture
def room(qapp: QApplication) -> QRect:
    return QGuiApplication.primaryScreen().availableGeometry()


def sized(qtbot: QtBot, w: int = 200, h: int = 120) -> QWidget:
    widget = QWidget()
    qtbot.addWidget(widget)
    widget.resize(w, h)
    return widget


def test_goes_to_the_right_of_a_target_on_the_left(qtbot: QtBot, room: QRect) -> None:
    widget = sized(qtbot)
    target = QRect(room.left() + 10, room.top() + 10, room.width() // 3, room.height() // 2)
    popups.place_beside(widget, target)
    placed = widget.frameGeometry()
    assert room.contains(placed) and not placed.intersects(target)
    assert placed.left() == target.right() + 1 + popups.GAP


def test_takes_another_side_when_the_right_has_no_room(qtbot: QtBot, room: QRect) -> None:
    widget = sized(qtbot)
    right = QRect(room.right() - room.width() // 3, room.top() + 10, room.width() // 3, room.height() // 3)
    popups.place_beside(widget, right)
    assert widget.frameGeometry().right() < right.left()  # left of it
    across = QRect(room.left(), room.top(), room.width(), room.height() // 3)
    popups.place_beside(widget, across)
    assert widget.frameGeometry().top() > across.bottom()  # below it
    assert room.contains(widget.frameGeometry())


def test_a_target_covering_the_screen_sends_it_to_the_farthest_corner(qtbot: QtBot, room: QRect) -> None:
    widget = sized(qtbot)
    target = QRect(room.left(), room.top(), room.width() - 50, room.height() - 50)
    popups.place_beside(widget, target)
    assert widget.frameGeometry().bottomRight() == room.bottomRight()


def answer(dialog_action: Callable[[QInputDialog], None], seen: list[QRect]) -> None:
    """Once the modal popup shows, note where it is and answer it."""
    def act() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QInputDialog):
            QTimer.singleShot(10, act)
            return
        seen.append(dialog.frameGeometry())
        dialog_action(dialog)

    QTimer.singleShot(0, act)


def test_pick_category_offers_the_current_one_beside_the_target(qtbot: QtBot, room: QRect) -> None:
    parent = sized(qtbot)
    target = QRect(room.left() + 20, room.top() + 20, room.width() // 3, room.height() // 3)
    seen: list[QRect] = []
    offered: list[str] = []

    def choose_saucer(dialog: QInputDialog) -> None:
        offered.append(dialog.textValue())
        combo = dialog.findChild(QComboBox)
        assert combo is not None and [combo.itemText(k) for k in range(combo.count())] == ["cup", "spoon", "saucer"]
        dialog.setTextValue("saucer")
        dialog.accept()

    answer(choose_saucer, seen)
    assert pick_category(parent, CATEGORIES, 2, target) == CATEGORIES[2]
    assert offered == ["spoon"] and seen and not seen[0].intersects(target) and room.contains(seen[0])


def test_pick_category_cancelled_or_without_categories(qtbot: QtBot) -> None:
    parent = sized(qtbot)
    seen: list[QRect] = []
    answer(QDialog.reject, seen)
    assert pick_category(parent, CATEGORIES, None) is None and seen
    assert pick_category(parent, [], None) is None  # nothing to ask: no popup


def test_two_categories_of_one_name_are_told_apart_by_id(qtbot: QtBot) -> None:
    parent = sized(qtbot)
    twins = [Category(1, "person"), Category(5, "person"), Category(9, "dog")]
    offered: list[list[str]] = []

    def choose_second_person(dialog: QInputDialog) -> None:
        combo = dialog.findChild(QComboBox)
        assert combo is not None
        offered.append([combo.itemText(k) for k in range(combo.count())])
        dialog.setTextValue("person (id 5)")
        dialog.accept()

    answer(choose_second_person, [])
    assert pick_category(parent, twins, 1) == twins[1]
    assert offered == [["person (id 1)", "person (id 5)", "dog"]]


class Framed(QWidget):
    """A shown window with a 30-px title bar and 4-px borders, as a window manager frames it."""

    def frameGeometry(self) -> QRect:  # type: ignore[override]
        return self.geometry().adjusted(-4, -30, 4, 4)


def test_a_popup_not_shown_yet_is_placed_with_the_frame_it_will_get(qtbot: QtBot, room: QRect) -> None:
    owner = Framed()
    qtbot.addWidget(owner)
    owner.resize(300, 200)
    owner.show()
    popup = QDialog(owner)
    popup.resize(200, 120)
    assert popups.expected_frame(popup).size() == QRect(0, 0, 208, 154).size()
    above = QRect(room.left() + 10, room.bottom() - 200, room.width() - 20, 150)  # room only above it
    popups.place_beside(popup, above)
    assert popup.pos().y() + 154 - 1 < above.top()  # its frame, title bar included, clear of the target
    bare = QDialog()
    bare.resize(200, 120)
    assert popups.expected_frame(bare) == bare.frameGeometry()  # no owner: nothing to go by
