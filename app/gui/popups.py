"""Small popups placed where they hide nothing the user must see.

A new instance's category is asked while its mask is still shown; a dialog centred on the window covers the
middle of the canvas, which is where the mask usually is. ``place_beside`` puts a top-level widget next to a
rectangle of the screen (right, left, below or above it, whichever fits on that screen), and
``pick_category`` is the one category popup of the window (Ctrl+N and the prompt tools).
"""
from __future__ import annotations

from typing import Sequence

from PySide6.QtCore import QMargins, QPoint, QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QInputDialog, QWidget

from app.core.records import Category, category_labels

GAP = 12
"""Screen pixels between the rectangle and the widget placed beside it."""


def place_beside(widget: QWidget, target: QRect, gap: int = GAP) -> None:
    """Move ``widget`` (top-level, sized) next to ``target`` (global coordinates), on the screen that shows the
    target: to its right, else left, below or above, centred along that side and kept on the screen. Where no
    side has room, the widget goes to the screen's corner farthest from the target."""
    screen = QGuiApplication.screenAt(target.center()) or QGuiApplication.primaryScreen()
    room = screen.availableGeometry()
    frame = expected_frame(widget)
    w, h = frame.width(), frame.height()
    middle = target.center()
    sides = [
        QPoint(target.right() + 1 + gap, middle.y() - h // 2),
        QPoint(target.left() - gap - w, middle.y() - h // 2),
        QPoint(middle.x() - w // 2, target.bottom() + 1 + gap),
        QPoint(middle.x() - w // 2, target.top() - gap - h),
    ]
    for corner in sides:
        spot = _kept_on(QRect(corner, frame.size()), room)
        if room.contains(spot) and not spot.intersects(target):
            widget.move(spot.topLeft())  # a window's position is its frame's
            return
    corners = [room.topLeft(), QPoint(room.right() - w + 1, room.top()), QPoint(room.left(), room.bottom() - h + 1),
               QPoint(room.right() - w + 1, room.bottom() - h + 1)]
    farthest = max(corners, key=lambda p: (QRect(p, frame.size()).center() - middle).manhattanLength())
    widget.move(farthest)


def expected_frame(widget: QWidget) -> QRect:
    """The window's frame as it will be once shown. A window's position is its frame's (Qt's ``pos``), but before
    its first show the window manager has not framed it, so its title bar and borders are taken to be those of the
    window that owns it."""
    owner = widget.parentWidget().window() if widget.parentWidget() is not None else None
    if widget.isVisible() or owner is None or not owner.isVisible():
        return widget.frameGeometry()
    outer, inner = owner.frameGeometry(), owner.geometry()
    return QRect(widget.pos(), widget.size().grownBy(QMargins(inner.left() - outer.left(), inner.top() - outer.top(),
                                                               outer.right() - inner.right(),
                                                               outer.bottom() - inner.bottom())))


def _kept_on(rect: QRect, room: QRect) -> QRect:
    """``rect`` slid along both axes until it lies on ``room`` (as far as it fits)."""
    x = min(max(rect.x(), room.left()), room.right() - rect.width() + 1)
    y = min(max(rect.y(), room.top()), room.bottom() - rect.height() + 1)
    return QRect(x, y, rect.width(), rect.height())


def category_dialog(parent: QWidget, categories: Sequence[Category], current_id: int | None,
                    beside: QRect | None = None) -> QInputDialog:
    """The category popup, not shown yet: ``categories`` by name, ``current_id`` chosen, placed ``beside``
    (global coordinates) what must stay in view while the user chooses, e.g. the new mask."""
    labels = category_labels(categories)
    names = [labels[c.id] for c in categories]
    current = next((k for k, c in enumerate(categories) if c.id == current_id), 0)
    dialog = QInputDialog(parent)
    dialog.setWindowTitle("New instance")
    dialog.setLabelText("Category of the new instance:")
    dialog.setComboBoxItems(names)
    dialog.setComboBoxEditable(False)
    dialog.setTextValue(names[current])
    if beside is not None:
        dialog.adjustSize()
        place_beside(dialog, beside)
    return dialog


def pick_category(parent: QWidget, categories: Sequence[Category], current_id: int | None,
                  beside: QRect | None = None) -> Category | None:
    """Ask which of ``categories`` a new instance gets (``category_dialog``); None on Cancel or without any."""
    if not categories:
        return None
    dialog = category_dialog(parent, categories, current_id, beside)
    names = dialog.comboBoxItems()  # one per category, in order
    try:
        if dialog.exec() != QDialog.DialogCode.Accepted or dialog.textValue() not in names:
            return None
        return categories[names.index(dialog.textValue())]
    finally:
        dialog.deleteLater()
