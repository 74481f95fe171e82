"""The canvas tools driven by real mouse events on the real Canvas (offscreen)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.gui.editor.canvas import Canvas
from app.gui.editor.document import ImageDocument
from app.gui.editor.tools import OPEN_BACKGROUND_TEXT

LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def view_pos(canvas: Canvas, x: float, y: float) -> QPointF:
    """Viewport position of the centre of image pixel (x, y)."""
    return QPointF(canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)))


def send(canvas: Canvas, kind: QEvent.Type, pos: QPointF, button: Qt.MouseButton, buttons: Qt.MouseButton, mods: Qt.KeyboardModifier = NO_MOD) -> None:
    global_pos = QPointF(canvas.viewport().mapToGlobal(pos.toPoint()))
    QApplication.sendEvent(canvas.viewport(), QMouseEvent(kind, pos, global_pos, button, buttons, mods))


def drag(canvas: Canvas, points: list[tuple[float, float]], mods: Qt.KeyboardModifier = NO_MOD, button: Qt.MouseButton = LEFT) -> None:
    """Press at the first image point, move through the rest, release at the last."""
    send(canvas, QEvent.Type.MouseButtonPress, view_pos(canvas, *points[0]), button, button, mods)
    for p in points[1:]:
        send(canvas, QEvent.Type.MouseMove, view_pos(canvas, *p), Qt.MouseButton.NoButton, button, mods)
    send(canvas, QEvent.Type.MouseButtonRelease, view_pos(canvas, *points[-1]), button, Qt.MouseButton.NoButton, mods)


def click(canvas: Canvas, x: float, y: float, mods: Qt.KeyboardModifier = NO_MOD) -> None:
    drag(canvas, [(x, y)], mods)


def test_click_selects_the_topmost_visible_instance(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    click(canvas, 180, 100)
    assert doc.selected_id == 2
    click(canvas, 45, 35)
    assert doc.selected_id == 1
    click(canvas, 70, 60)  # the hole of instance 1
    assert doc.selected_id is None
    over = np.zeros(doc.shape, dtype=bool)
    over[30:50, 40:60] = True
    top = doc.add_instance(5, over)
    click(canvas, 45, 35)
    assert doc.selected_id == top
    doc.set_visible(top, False)
    click(canvas, 45, 35)
    assert doc.selected_id == 1


def test_brush_stroke_paints_the_selected_instance_as_one_undo_step(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    doc.select(2)
    canvas.set_tool("brush")
    canvas.brush_size = 5
    before = doc.layer(2).mask.copy()
    drag(canvas, [(100, 160), (110, 160), (125, 160), (140, 160)])
    mask = doc.layer(2).mask
    assert mask[158:163, 100:141].all()
    changed = mask != before
    assert not changed[:150].any() and not changed[170:].any() and not changed[:, :97].any() and not changed[:, 144:].any()
    assert doc.undo_stack.count() == 1
    doc.undo()
    assert (doc.layer(2).mask == before).all()
    doc.redo()
    assert doc.layer(2).mask[158:163, 100:141].all()


def test_eraser_keeps_the_hole_and_ctrl_brush_erases(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    doc.select(1)
    canvas.set_tool("eraser")
    canvas.brush_size = 3
    drag(canvas, [(50, 40), (50, 100)])
    mask = doc.layer(1).mask
    assert not mask[40:101, 49:52].any()
    assert not mask[50:70, 60:80].any() and mask[30:110, 85:100].all()
    canvas.set_tool("brush")
    drag(canvas, [(90, 40), (90, 100)], CTRL)
    assert not doc.layer(1).mask[40:101, 89:92].any()
    assert doc.undo_stack.count() == 2


def test_brush_without_selection_or_on_a_locked_instance_does_nothing(canvas: Canvas, image_document: ImageDocument, qtbot: QtBot) -> None:
    doc = image_document
    canvas.set_tool("brush")
    with qtbot.waitSignal(canvas.message) as blocker:
        drag(canvas, [(10, 10), (20, 10)])
    assert blocker.args == ["Select an instance first"]
    doc.select(3)
    before = doc.layer(3).mask.copy()
    with qtbot.waitSignal(canvas.message) as blocker:
        drag(canvas, [(200, 150), (260, 150)])
    assert blocker.args == ["Instance 3 is locked"]
    assert (doc.layer(3).mask == before).all() and doc.undo_stack.count() == 0


def test_fill_fills_the_clicked_hole_and_ctrl_removes_the_part(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    doc.select(1)
    canvas.set_tool("fill")
    click(canvas, 70, 60)
    assert doc.layer(1).mask[30:110, 40:100].all()
    assert doc.layer(1).mask.sum() == 80 * 60
    click(canvas, 50, 50, CTRL)
    assert not doc.layer(1).mask.any()
    doc.undo()
    doc.undo()
    assert not doc.layer(1).mask[50:70, 60:80].any() and doc.layer(1).mask[30:50].any()


def test_fill_outside_the_instance_says_why_and_changes_nothing(canvas: Canvas, image_document: ImageDocument,
                                                               qtbot: QtBot) -> None:
    doc = image_document
    doc.select(1)
    before = doc.layer(1).mask.copy()
    canvas.set_tool("fill")
    with qtbot.waitSignal(canvas.message) as blocker:
        click(canvas, 5, 5)
    assert blocker.args == [OPEN_BACKGROUND_TEXT]
    assert (doc.layer(1).mask == before).all() and doc.undo_stack.count() == 0


def test_lasso_add_and_subtract(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    doc.select(2)
    canvas.set_tool("lasso_add")
    drag(canvas, [(10, 150), (40, 150), (40, 180), (10, 180)])
    assert doc.layer(2).mask[152:179, 12:39].all()
    assert canvas.lasso_item.path().isEmpty()  # the outline goes away on release
    canvas.set_tool("lasso_subtract")
    drag(canvas, [(150, 60), (210, 60), (210, 100), (150, 100)])
    assert not doc.layer(2).mask[62:99, 152:209].any()
    assert doc.layer(2).mask[105:125, 170:190].all()
    assert doc.undo_stack.count() == 2


def test_constraint_and_region_brushes_fill_the_guidance_masks(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    canvas.brush_size = 5
    canvas.set_tool("fg_brush")
    drag(canvas, [(20, 20), (60, 20)])
    canvas.set_tool("bg_brush")
    drag(canvas, [(20, 40), (60, 40)])
    canvas.set_tool("region_brush")
    drag(canvas, [(150, 150), (200, 150)])
    assert doc.foreground is not None and doc.foreground[18:23, 20:61].all()
    assert doc.background is not None and doc.background[38:43, 20:61].all()
    assert doc.region is not None and doc.region[148:153, 150:201].all()
    assert not doc.foreground[30:].any() and not doc.background[:30].any()
    assert all(doc.layer(i).mask[18:23, 20:61].sum() == 0 for i in (2, 3))
    guidance = canvas.guidance_overlay
    assert guidance is not None and guidance.pixels((150, 148, 201, 153))[..., 3].all()
    canvas.set_tool("region_brush")
    drag(canvas, [(150, 150), (200, 150)], CTRL)
    assert not doc.region.any()
    assert not guidance.pixels((150, 148, 201, 153))[..., 3].any()


def test_brush_size_keys_and_alt_drag(canvas: Canvas, qtbot: QtBot) -> None:
    canvas.set_tool("brush")
    canvas.brush_size = 10
    canvas.grow_brush()
    assert canvas.brush_size == 12
    canvas.shrink_brush()
    canvas.shrink_brush()
    assert canvas.brush_size == 8
    canvas.brush_size = 1
    canvas.shrink_brush()
    assert canvas.brush_size == 1
    canvas.grow_brush()
    assert canvas.brush_size == 2
    canvas.brush_size = 20
    alt = Qt.KeyboardModifier.AltModifier
    start = view_pos(canvas, 100, 100)
    send(canvas, QEvent.Type.MouseButtonPress, start, LEFT, LEFT, alt)
    send(canvas, QEvent.Type.MouseMove, start + QPointF(70, 0), Qt.MouseButton.NoButton, LEFT, alt)
    send(canvas, QEvent.Type.MouseButtonRelease, start + QPointF(70, 0), LEFT, Qt.MouseButton.NoButton, alt)
    assert canvas.brush_size == round(20 * 1.01**70)
    assert canvas.cursor_item.size == canvas.brush_size
    assert canvas.document is not None and canvas.document.undo_stack.count() == 0


def test_brush_cursor_follows_the_mouse_at_brush_size(canvas: Canvas) -> None:
    canvas.set_tool("brush")
    canvas.brush_size = 15
    send(canvas, QEvent.Type.MouseMove, view_pos(canvas, 120, 80), Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    assert canvas.cursor_item.isVisible()
    assert canvas.cursor_item.pos() == QPointF(120.5, 80.5)
    assert canvas.cursor_item.boundingRect().width() >= 15
    canvas.set_tool("select")
    send(canvas, QEvent.Type.MouseMove, view_pos(canvas, 121, 80), Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    assert not canvas.cursor_item.isVisible()


def test_unknown_tool_is_an_error(canvas: Canvas) -> None:
    with pytest.raises(ValueError, match="unknown tool 'smudge'"):
        canvas.set_tool("smudge")


def test_escape_cancels_a_lasso_in_progress(canvas: Canvas, image_document: ImageDocument, qtbot: QtBot) -> None:
    doc = image_document
    doc.select(2)
    canvas.set_tool("lasso_add")
    send(canvas, QEvent.Type.MouseButtonPress, view_pos(canvas, 10, 150), LEFT, LEFT)
    send(canvas, QEvent.Type.MouseMove, view_pos(canvas, 40, 150), Qt.MouseButton.NoButton, LEFT)
    send(canvas, QEvent.Type.MouseMove, view_pos(canvas, 40, 180), Qt.MouseButton.NoButton, LEFT)
    assert not canvas.lasso_item.path().isEmpty()
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    send(canvas, QEvent.Type.MouseButtonRelease, view_pos(canvas, 10, 180), LEFT, Qt.MouseButton.NoButton)
    assert canvas.lasso_item.path().isEmpty() and doc.undo_stack.count() == 0


def test_cursor_moved_reports_image_pixels(canvas: Canvas, qtbot: QtBot) -> None:
    with qtbot.waitSignal(canvas.cursor_moved) as blocker:
        send(canvas, QEvent.Type.MouseMove, view_pos(canvas, 123, 45), Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    assert blocker.args == [123, 45]


def test_middle_drag_and_space_drag_pan(canvas: Canvas, qtbot: QtBot) -> None:
    canvas.set_zoom(6.0)
    h0 = canvas.horizontalScrollBar().value()
    v0 = canvas.verticalScrollBar().value()
    middle = Qt.MouseButton.MiddleButton
    start = QPointF(300, 200)
    send(canvas, QEvent.Type.MouseButtonPress, start, middle, middle)
    send(canvas, QEvent.Type.MouseMove, start + QPointF(-50, -30), Qt.MouseButton.NoButton, middle)
    send(canvas, QEvent.Type.MouseButtonRelease, start + QPointF(-50, -30), middle, Qt.MouseButton.NoButton)
    assert canvas.horizontalScrollBar().value() == h0 + 50
    assert canvas.verticalScrollBar().value() == v0 + 30
    canvas.set_tool("brush")
    canvas.setFocus()
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    send(canvas, QEvent.Type.MouseButtonPress, start, LEFT, LEFT)
    send(canvas, QEvent.Type.MouseMove, start + QPointF(40, 0), Qt.MouseButton.NoButton, LEFT)
    send(canvas, QEvent.Type.MouseButtonRelease, start + QPointF(40, 0), LEFT, Qt.MouseButton.NoButton)
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert canvas.horizontalScrollBar().value() == h0 + 10
    assert canvas.document is not None and canvas.document.undo_stack.count() == 0  # panning painted nothing


def test_every_contract_tool_name_is_available(canvas: Canvas, qtbot: QtBot) -> None:
    canvas.set_tool("brush")
    for name in Canvas.TOOLS:
        if name == "brush":
            continue
        with qtbot.waitSignal(canvas.tool_changed) as blocker:
            canvas.set_tool(name)
        assert canvas.tool == name and blocker.args == [name]
