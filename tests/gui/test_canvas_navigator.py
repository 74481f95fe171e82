"""The navigator: a thumbnail framing the visible part; clicking in it moves the canvas."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from pytestqt.qtbot import QtBot

from app.gui.editor.canvas import Canvas
from app.gui.editor.navigator import Navigator
from app.gui.editor.document import ImageDocument


@pytest.fixture
def pair(qtbot: QtBot, image_document: ImageDocument) -> tuple[Canvas, Navigator]:
    canvas = Canvas()
    navigator = Navigator(canvas)
    for widget in (canvas, navigator):
        qtbot.addWidget(widget)
    canvas.resize(640, 440)
    navigator.resize(300, 200)
    canvas.show()
    navigator.show()
    canvas.set_document(image_document)
    return canvas, navigator


def test_frame_covers_the_image_at_fit_and_shrinks_when_zoomed(pair: tuple[Canvas, Navigator]) -> None:
    canvas, navigator = pair
    image = navigator.image_rect()
    assert image.width() == pytest.approx(300) and image.height() == pytest.approx(200)
    assert navigator.visible_rect().width() == pytest.approx(300, abs=2)
    canvas.set_zoom(8.0)
    frame = navigator.visible_rect()
    assert frame.width() == pytest.approx(canvas.viewport().width() / 8, abs=1) and image.contains(frame)


def test_click_centres_the_canvas_there(pair: tuple[Canvas, Navigator], qtbot: QtBot) -> None:
    canvas, navigator = pair
    canvas.set_zoom(8.0)
    qtbot.mouseClick(navigator, Qt.MouseButton.LeftButton, pos=QPointF(225, 50).toPoint())  # image (225, 50)
    centre = canvas.mapToScene(canvas.viewport().rect().center())
    assert abs(centre.x() - 225) < 2 and abs(centre.y() - 50) < 2
    assert navigator.visible_rect().center().x() == pytest.approx(225, abs=2)


def test_navigator_without_a_document_is_empty(pair: tuple[Canvas, Navigator], qtbot: QtBot) -> None:
    canvas, navigator = pair
    canvas.set_document(None)
    assert navigator.image_rect().isEmpty() and navigator.visible_rect().isEmpty()
    qtbot.mouseClick(navigator, Qt.MouseButton.LeftButton)
    navigator.grab()  # paints without an image
