"""Canvas tools: what a left-button press, drag and release do, in image coordinates.

Tools edit only through the document (which calls app/core/mask_ops), so every edit is an undo step.
Holding Ctrl inverts a painting tool: the brush erases, the eraser paints, a constraint or region brush
removes its own strokes, fill removes the clicked part instead of filling the clicked hole.
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

from PySide6.QtCore import QPointF, Qt, SignalInstance

from app.gui.editor.document import ImageDocument
from app.gui.editor.layers import Target

Point = tuple[int, int]


class ToolHost(Protocol):
    """What a tool needs of the view it works in (the canvas, app/gui/editor/canvas.py, which makes the tools)."""

    message: SignalInstance

    @property
    def document(self) -> ImageDocument | None: ...

    @property
    def brush_size(self) -> int: ...

    def show_lasso(self, points: Sequence[tuple[float, float]] | None) -> None: ...


def pixel(pos: QPointF) -> Point:
    """The image pixel under a scene position."""
    return math.floor(pos.x()), math.floor(pos.y())


class Tool:
    """A tool does nothing by default; ``uses_brush`` shows the round cursor and allows Alt+drag sizing."""

    name = ""
    uses_brush = False
    uses_right_button = False
    cursor = Qt.CursorShape.ArrowCursor

    def __init__(self, canvas: ToolHost) -> None:
        self.canvas = canvas

    @property
    def doc(self) -> ImageDocument | None:
        return self.canvas.document

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        """Left button went down at ``pos`` (scene = image coordinates)."""

    def move(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        """The mouse moved with the left button held."""

    def release(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        """The left button went up."""

    def right_press(self, pos: QPointF) -> None:
        """The right button went down (only for tools with ``uses_right_button``, which replace the menu)."""

    def cancel(self) -> None:
        """Abandon what is in progress (Escape, tool or document change)."""

    def selected_target(self) -> int | None:
        """The selected instance if it may be edited; otherwise say why on the canvas and return None."""
        doc = self.doc
        if doc is None:
            return None
        if doc.selected_id is None:
            self.canvas.message.emit("Select an instance first")
            return None
        if not doc.editable(doc.selected_id):
            self.canvas.message.emit(f"Instance {doc.selected_id} is locked")
            return None
        return doc.selected_id


def ctrl(modifiers: Qt.KeyboardModifier) -> bool:
    return bool(modifiers & Qt.KeyboardModifier.ControlModifier)


class SelectTool(Tool):
    """Click selects the topmost visible instance under the cursor (empty space clears the selection)."""

    name = "select"

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if self.doc is not None:
            x, y = pixel(pos)
            self.doc.select(self.doc.instance_at(x, y))


class BrushTool(Tool):
    """A round brush painting ``value`` into the selected instance or into a guidance mask."""

    uses_brush = True
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: ToolHost, name: str, guidance: str | None, value: bool) -> None:
        super().__init__(canvas)
        self.name = name
        self.guidance = guidance
        self.value = value
        self._last: Point | None = None
        self._value = value

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        doc = self.doc
        target: Target | None = self.guidance if self.guidance is not None else self.selected_target()
        if doc is None or target is None or not doc.begin_stroke(target, self.name):
            return
        self._value = self.value != ctrl(modifiers)
        self._last = pixel(pos)
        doc.stroke_to([self._last], self.canvas.brush_size, self._value)

    def move(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if self._last is None or self.doc is None:
            return
        point = pixel(pos)
        if point != self._last:
            self.doc.stroke_to([self._last, point], self.canvas.brush_size, self._value)
            self._last = point

    def release(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if self._last is not None and self.doc is not None:
            self.move(pos, modifiers)
            self.doc.end_stroke()
        self._last = None

    def cancel(self) -> None:
        if self._last is not None and self.doc is not None:
            self.doc.end_stroke()
        self._last = None


OPEN_BACKGROUND_TEXT = ("Fill fills holes inside the instance; this is the background around it "
                        "(add it with the brush or the lasso)")


class FillTool(Tool):
    """Click fills the hole under the cursor in the selected instance (Ctrl: removes the part clicked)."""

    name = "fill"
    cursor = Qt.CursorShape.PointingHandCursor

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        target = self.selected_target()
        if target is None or self.doc is None:
            return
        point, value = pixel(pos), not ctrl(modifiers)
        if self.doc.fill(target, point, value) is None and value and self.doc.open_background(target, point):
            self.canvas.message.emit(OPEN_BACKGROUND_TEXT)


class LassoTool(Tool):
    """Drag a closed outline; on release it is added to (or cut from) the selected instance."""

    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: ToolHost, name: str, value: bool) -> None:
        super().__init__(canvas)
        self.name = name
        self.value = value
        self.points: list[tuple[float, float]] = []
        self._target: int | None = None

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self._target = self.selected_target()
        if self._target is not None:
            self.points = [(pos.x(), pos.y())]
            self.canvas.show_lasso(self.points)

    def move(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if not self.points:
            return
        last = self.points[-1]
        if abs(pos.x() - last[0]) + abs(pos.y() - last[1]) >= 1.0:
            self.points.append((pos.x(), pos.y()))
            self.canvas.show_lasso(self.points)

    def release(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if self.points and self._target is not None and self.doc is not None:
            self.move(pos, modifiers)
            self.doc.lasso(self._target, [(math.floor(x), math.floor(y)) for x, y in self.points], self.value)
        self.cancel()

    def cancel(self) -> None:
        self.points = []
        self._target = None
        self.canvas.show_lasso(None)


def make_tools(canvas: ToolHost) -> dict[str, Tool]:
    """One instance of every tool, by the names ``Canvas.set_tool`` takes."""
    tools: list[Tool] = [
        SelectTool(canvas),
        BrushTool(canvas, "brush", None, True),
        BrushTool(canvas, "eraser", None, False),
        FillTool(canvas),
        LassoTool(canvas, "lasso_add", True),
        LassoTool(canvas, "lasso_subtract", False),
        BrushTool(canvas, "fg_brush", "foreground", True),
        BrushTool(canvas, "bg_brush", "background", True),
        BrushTool(canvas, "region_brush", "region", True),
    ]
    return {tool.name: tool for tool in tools}
