"""The canvas's prompt tools: a box dragged around an object, and clicks on or off an instance.

They only say where the user pointed (the canvas's ``box_drawn`` and ``prompt_clicked`` signals); the prompt
controller (app/gui/prompt_controller.py) checks the box or click, and the prompt thread makes the mask.
"""
from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QPointF, Qt, SignalInstance

from app.gui.editor.tools import Tool, ToolHost


class PromptHost(ToolHost, Protocol):
    """What the prompt tools need of the canvas besides a tool's usual: the signals they report on."""

    box_drawn: SignalInstance
    prompt_clicked: SignalInstance


class BoxTool(Tool):
    """Drag a rectangle (shown while dragging); on release the canvas reports it in image coordinates."""

    name = "box"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: PromptHost) -> None:
        super().__init__(canvas)
        self.host = canvas
        self._start: QPointF | None = None

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if self.doc is not None:
            self._start = QPointF(pos)
            self._show(pos)

    def move(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if self._start is not None:
            self._show(pos)

    def release(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        start, self._start = self._start, None
        if start is not None:
            self._show(pos, start)
            self.host.box_drawn.emit(start.x(), start.y(), pos.x(), pos.y())

    def cancel(self) -> None:
        self._start = None
        self.canvas.show_lasso(None)

    def _show(self, pos: QPointF, start: QPointF | None = None) -> None:
        a = start or self._start
        assert a is not None
        self.canvas.show_lasso([(a.x(), a.y()), (pos.x(), a.y()), (pos.x(), pos.y()), (a.x(), pos.y())])


class ClickTool(Tool):
    """Left click: the object is here (positive); right click or Shift+click: it is not (negative)."""

    name = "clicks"
    cursor = Qt.CursorShape.PointingHandCursor
    uses_right_button = True

    def __init__(self, canvas: PromptHost) -> None:
        super().__init__(canvas)
        self.host = canvas

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if self.doc is not None:
            negative = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
            self.host.prompt_clicked.emit(pos.x(), pos.y(), not negative)

    def right_press(self, pos: QPointF) -> None:
        if self.doc is not None:
            self.host.prompt_clicked.emit(pos.x(), pos.y(), False)


def make_prompt_tools(canvas: PromptHost) -> dict[str, Tool]:
    """The prompt tools by the names ``Canvas.set_tool`` takes."""
    return {tool.name: tool for tool in (BoxTool(canvas), ClickTool(canvas))}
