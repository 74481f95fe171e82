"""The image canvas: the photo at full resolution, mask and preview overlays, zoom, pan and tools.

Scene coordinates are image pixels (pixel (x, y) covers [x, x+1) x [y, y+1)). The canvas draws; it never
computes masks: tools edit through the document, and the overlays redraw only the rectangle each
document signal names.
"""
from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor, QFocusEvent, QImage, QKeyEvent, QMouseEvent, QPainter, QPainterPath, QPen, QPixmap, QResizeEvent,
    QTransform, QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from app.core import mask_ops
from app.core.mask_ops import Rect
from app.gui.editor.document import ImageDocument
from app.gui.editor.overlays import (
    BrushCursor,
    ConfidenceOverlay,
    DiffOverlay,
    GuidanceOverlay,
    ImageItem,
    InstanceOverlay,
    PreviewImage,
    RasterItem,
    SelectionOverlay,
)
from app.gui.editor.preview import DiffColors
from app.gui.editor.prompt_tools import make_prompt_tools
from app.gui.editor.tools import Tool, make_tools


MIN_ZOOM = 0.01
MAX_ZOOM = 64.0
MAX_BRUSH = 2000
INSTANCE_ZOOM_MAX = 4.0
"""Zoom to Instance (and selecting from the list) never goes past 400 %."""
WHEEL_STEP = 1.0015  # zoom factor per 1/8 degree of wheel: one notch (120) zooms by 1.2


def rect_of(qrect: QRect) -> Rect:
    return (qrect.x(), qrect.y(), qrect.x() + qrect.width(), qrect.y() + qrect.height())


def _overlay_option(name: str, doc: str, choices: tuple[str, ...] | None = None) -> property:
    """A Canvas property stored in ``_options`` that re-applies the overlay options when it changes."""

    def getter(self: Canvas) -> Any:
        return self._options[name]

    def setter(self: Canvas, value: Any) -> None:
        if choices is not None and value not in choices:
            raise ValueError(f"{name} must be one of {choices}, not {value!r}")
        if value != self._options[name]:
            self._options[name] = value
            self._apply_options(changed=name)

    return property(getter, setter, doc=doc)


class Canvas(QGraphicsView):
    """QGraphicsView over one ``ImageDocument``; tools by name, overlay options as properties."""

    cursor_moved = Signal(int, int)
    zoom_changed = Signal(float)
    document_changed = Signal()
    brush_size_changed = Signal(int)
    tool_changed = Signal(str)
    message = Signal(str)
    box_drawn = Signal(float, float, float, float)  # the box tool's rectangle: x0, y0, x1, y1 (image pixels)
    prompt_clicked = Signal(float, float, bool)     # the click tool: x, y, positive

    TOOLS = ("select", "brush", "eraser", "fill", "lasso_add", "lasso_subtract", "fg_brush", "bg_brush", "region_brush",
             "box", "clicks")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.scene().setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setBackgroundBrush(QColor(48, 48, 52))
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.document: ImageDocument | None = None
        self.fitted = False  # the whole image is in view by Fit (or on opening): a resize fits it again
        self.image_item: ImageItem | None = None
        self.instance_overlay: InstanceOverlay | None = None
        self.selection_overlay: SelectionOverlay | None = None
        self.guidance_overlay: GuidanceOverlay | None = None
        self.diff_overlay: DiffOverlay | None = None
        self.confidence_overlay: ConfidenceOverlay | None = None
        self._options = {"opacity": 0.5, "contour_only": False, "selected_only": False, "color_by": "instance",
                         "show_diff": True, "show_confidence": False, "show_guidance": True}
        self._diff_colors = DiffColors()
        self._brush_size = 20
        self._tools = make_tools(self) | make_prompt_tools(self)
        self._tool: Tool = self._tools["select"]
        self._space = False
        self._pan_from: QPoint | None = None
        self._size_drag: tuple[float, int] | None = None
        self._contour_width = 2
        self._contour_timer = QTimer(self)
        self._contour_timer.setSingleShot(True)
        self._contour_timer.setInterval(150)
        self._contour_timer.timeout.connect(self._update_contour_width)
        self.cursor_item = BrushCursor()
        self.lasso_item = QGraphicsPathItem()
        self.prompt_item = QGraphicsPixmapItem()
        self._setup_scene_decorations()

    # ----- document
    def set_document(self, doc: ImageDocument | None) -> None:
        """Show ``doc`` (or nothing); the view is fitted to the new image."""
        self._tool.cancel()
        if self.document is not None:
            for signal, slot in self._connections():
                signal.disconnect(slot)
            for item in self.overlays():
                item.stop()
        scene = self.scene()
        scene.removeItem(self.cursor_item)
        scene.removeItem(self.lasso_item)
        scene.removeItem(self.prompt_item)
        self.show_prompt_preview(None)  # it belonged to the image going away
        scene.clear()
        self.document = doc
        self.image_item = self.instance_overlay = self.selection_overlay = None
        self.guidance_overlay = self.diff_overlay = self.confidence_overlay = None
        self._setup_scene_decorations()
        if doc is None:
            scene.setSceneRect(QRectF())
            self.document_changed.emit()
            return
        h, w = doc.shape
        scene.setSceneRect(QRectF(0, 0, w, h))
        self.image_item = ImageItem(doc.image, doc.photo_levels)
        self.instance_overlay = InstanceOverlay(doc)
        self.guidance_overlay = GuidanceOverlay(doc)
        self.confidence_overlay = ConfidenceOverlay(doc)
        self.diff_overlay = DiffOverlay(doc, self._diff_colors)
        self.selection_overlay = SelectionOverlay(doc)
        for z, item in enumerate(self.overlays(), start=1):
            item.setZValue(z)
            scene.addItem(item)
        self.image_item.setZValue(0)
        scene.addItem(self.image_item)
        for signal, slot in self._connections():
            signal.connect(slot)
        self.instance_overlay.contour_width = self.selection_overlay.contour_width = self._contour_width
        self._apply_options()
        self.instance_overlay.rebuild()
        self.guidance_overlay.rebuild()
        self.selection_overlay.follow_selection()
        self.diff_overlay.preview_changed()
        self.confidence_overlay.preview_changed()
        self.zoom_fit()
        self.document_changed.emit()

    def overlays(self) -> list[RasterItem | PreviewImage]:
        """Overlay items bottom to top (empty without a document)."""
        items = [self.instance_overlay, self.guidance_overlay, self.confidence_overlay, self.diff_overlay, self.selection_overlay]
        return [item for item in items if item is not None]

    # ----- tools and brush
    @property
    def tool(self) -> str:
        return self._tool.name

    @property
    def takes_right_button(self) -> bool:
        """The current tool uses right clicks itself (the click tool): no context menu then."""
        return self._tool.uses_right_button

    def set_tool(self, name: str) -> None:
        if name not in self._tools:
            raise ValueError(f"unknown tool {name!r}; expected one of {', '.join(self.TOOLS)}")
        if name == self._tool.name:
            return
        self._tool.cancel()
        self._tool = self._tools[name]
        self.viewport().setCursor(self._tool.cursor)
        self.cursor_item.setVisible(False)
        self.tool_changed.emit(name)

    @property
    def brush_size(self) -> int:
        """Brush diameter in image pixels."""
        return self._brush_size

    @brush_size.setter
    def brush_size(self, size: int) -> None:
        size = max(1, min(int(size), MAX_BRUSH))
        if size != self._brush_size:
            self._brush_size = size
            self.cursor_item.set_size(size)
            self.brush_size_changed.emit(size)

    def grow_brush(self) -> None:
        """Bigger brush (the ] key): 20% larger, at least one pixel."""
        self.brush_size = max(self._brush_size + 1, round(self._brush_size * 1.2))

    def shrink_brush(self) -> None:
        """Smaller brush (the [ key)."""
        self.brush_size = min(self._brush_size - 1, round(self._brush_size / 1.2))

    def show_lasso(self, points: Sequence[tuple[float, float]] | None) -> None:
        """Draw (or hide, with None) the lasso outline being dragged."""
        path = QPainterPath()
        if points:
            path.moveTo(*points[0])
            for p in points[1:]:
                path.lineTo(*p)
            path.closeSubpath()
        self.lasso_item.setPath(path)

    def show_prompt_preview(self, image: QImage | None, rect: Rect | None = None) -> None:
        """Show a prompt's mask (``image``, drawn by the prompt thread, possibly smaller) over ``rect`` of the
        image, or hide it with None."""
        if image is None or rect is None:
            self.prompt_item.setPixmap(QPixmap())
            self.prompt_item.setVisible(False)
            return
        x0, y0, x1, y1 = rect
        self.prompt_item.setPixmap(QPixmap.fromImage(image))
        self.prompt_item.setPos(x0, y0)
        self.prompt_item.setTransform(QTransform.fromScale((x1 - x0) / max(1, image.width()),
                                                           (y1 - y0) / max(1, image.height())))
        self.prompt_item.setVisible(True)

    def global_rect(self, rect: Rect) -> QRect:
        """Where ``rect`` of the image is on the screen (global coordinates), cut to the visible canvas: what a
        popup must not cover."""
        x0, y0, x1, y1 = rect
        shown = self.mapFromScene(QRectF(x0, y0, x1 - x0, y1 - y0)).boundingRect() & self.viewport().rect()
        return QRect(self.viewport().mapToGlobal(shown.topLeft()), shown.size())

    # ----- zoom
    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self.transform().m11()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under ``anchor`` (viewport coordinates; default the centre) still."""
        zoom = max(MIN_ZOOM, min(zoom, MAX_ZOOM))
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        before = self._to_scene(anchor)
        factor = zoom / self.zoom
        self.fitted = False
        self.scale(factor, factor)
        after = self._to_scene(anchor)
        self.translate(after.x() - before.x(), after.y() - before.y())
        self._zoomed()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.set_zoom(self.zoom * factor, anchor)

    def zoom_fit(self) -> None:
        """Whole image in view."""
        if self.document is not None:
            self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
            self.fitted = True
            self._zoomed()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        """A fitted image stays fitted as the window or its docks change size; a chosen zoom is kept."""
        super().resizeEvent(event)
        if self.fitted:
            self.zoom_fit()

    def zoom_100(self) -> None:
        """One image pixel per screen pixel, keeping the centre."""
        self.set_zoom(1.0)

    def zoom_to_instance(self, instance_id: int) -> None:
        """Frame an instance with context around it (half its size on each side, at least 32 pixels, within the
        image), never closer than ``INSTANCE_ZOOM_MAX``: a 10-pixel instance is shown with its neighbourhood,
        not blown up, and a large one fills the view."""
        doc = self.document
        if doc is None or not doc.has_layer(instance_id):
            return
        box = mask_ops.mask_bbox(doc.layer(instance_id).mask)
        if box is None:
            return
        x0, y0, x1, y1 = box
        margin = max(max(x1 - x0, y1 - y0) * 0.5, 32)
        frame = QRectF(x0 - margin, y0 - margin, x1 - x0 + 2 * margin, y1 - y0 + 2 * margin)
        self.fitInView(frame.intersected(self.scene().sceneRect()), Qt.AspectRatioMode.KeepAspectRatio)
        self.fitted = False
        if self.zoom > INSTANCE_ZOOM_MAX:
            self.set_zoom(INSTANCE_ZOOM_MAX)
        self.centerOn(QPointF((x0 + x1) / 2, (y0 + y1) / 2))
        self._zoomed()

    # ----- overlay options (properties; the set_* methods suit signal connections)
    opacity = _overlay_option("opacity", "Opacity of the instance overlay, 0..1 (redraws nothing).")
    contour_only = _overlay_option("contour_only", "Draw instance outlines instead of fills.")
    selected_only = _overlay_option("selected_only", "Draw only the selected instance.")
    color_by = _overlay_option("color_by", 'Colour instances by "instance" or by "category".', ("instance", "category"))
    show_diff = _overlay_option("show_diff", "Show pixels the refine preview adds and removes (see set_diff_colors).")
    show_confidence = _overlay_option("show_confidence", "Show the refine preview's uncertainty heatmap.")
    show_guidance = _overlay_option("show_guidance", "Show constraint and region strokes.")

    def set_contour_only(self, on: bool) -> None:
        self.contour_only = bool(on)

    def set_selected_only(self, on: bool) -> None:
        self.selected_only = bool(on)

    def set_color_by(self, mode: str) -> None:
        self.color_by = mode

    def set_show_diff(self, on: bool) -> None:
        self.show_diff = bool(on)

    def set_show_confidence(self, on: bool) -> None:
        self.show_confidence = bool(on)

    @property
    def diff_colors(self) -> DiffColors:
        """The refine preview's added / removed colours."""
        return self._diff_colors

    def set_diff_colors(self, added: QColor, removed: QColor) -> None:
        """Colour the pixels a refinement adds and removes (the preview is redrawn in them)."""
        self._diff_colors = DiffColors((added.red(), added.green(), added.blue()),
                                       (removed.red(), removed.green(), removed.blue()))
        if self.diff_overlay is not None:
            self.diff_overlay.set_colors(self._diff_colors)

    # ----- events
    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y() or event.pixelDelta().y()
        if delta:
            self.zoom_by(WHEEL_STEP**delta, event.position())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space):
            self._pan_from = event.position().toPoint()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        elif button == Qt.MouseButton.LeftButton and self.document is not None:
            if event.modifiers() & Qt.KeyboardModifier.AltModifier and self._tool.uses_brush:
                self._size_drag = (event.position().x(), self._brush_size)
            else:
                self._tool.press(self._to_scene(event.position()), event.modifiers())
        elif button == Qt.MouseButton.RightButton and self._tool.uses_right_button and self.document is not None:
            self._tool.right_press(self._to_scene(event.position()))
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        scene_pos = self._to_scene(pos)
        if self._pan_from is not None:
            delta = pos.toPoint() - self._pan_from
            self._pan_from = pos.toPoint()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
        elif self._size_drag is not None:
            x0, size0 = self._size_drag
            self.brush_size = round(size0 * 1.01 ** (pos.x() - x0))
        else:
            if event.buttons() & Qt.MouseButton.LeftButton:
                self._tool.move(scene_pos, event.modifiers())
            self._place_cursor(scene_pos)
        if self.document is not None:
            self.cursor_moved.emit(int(scene_pos.x() // 1), int(scene_pos.y() // 1))
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if self._space else self._tool.cursor)
        elif self._size_drag is not None:
            self._size_drag = None
        elif event.button() == Qt.MouseButton.LeftButton and self.document is not None:
            self._tool.release(self._to_scene(event.position()), event.modifiers())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif event.key() == Qt.Key.Key_Escape:
            self._tool.cancel()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().setCursor(self._tool.cursor)
        else:
            super().keyReleaseEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        self.cursor_item.setVisible(False)
        super().leaveEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self._space = False
        super().focusOutEvent(event)

    # ----- internals
    def _setup_scene_decorations(self) -> None:
        pen = QPen(QColor(255, 255, 255), 0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.lasso_item.setPen(pen)
        self.lasso_item.setBrush(QColor(255, 255, 255, 40))
        self.lasso_item.setZValue(100)
        self.prompt_item.setZValue(99)
        self.prompt_item.setVisible(False)
        self.prompt_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.cursor_item.setZValue(101)
        self.cursor_item.set_size(self._brush_size)
        self.cursor_item.setVisible(False)
        self.scene().addItem(self.lasso_item)
        self.scene().addItem(self.prompt_item)
        self.scene().addItem(self.cursor_item)

    def _connections(self) -> list[tuple[Any, Any]]:
        doc = self.document
        assert doc is not None
        return [
            (doc.mask_changed, self._on_mask_changed),
            (doc.guidance_changed, self._on_guidance_changed),
            (doc.layer_changed, self._on_layer_changed),
            (doc.selection_changed, self._on_selection_changed),
            (doc.preview_changed, self._on_preview_changed),
        ]

    def _to_scene(self, pos: QPointF) -> QPointF:
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(QPointF(pos))

    def _place_cursor(self, scene_pos: QPointF) -> None:
        show = self._tool.uses_brush and self.document is not None
        if show:
            self.cursor_item.setPos(QPointF(int(scene_pos.x() // 1) + 0.5, int(scene_pos.y() // 1) + 0.5))
        self.cursor_item.setVisible(show)

    def _zoomed(self) -> None:
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 1.0)
        self._contour_timer.start()
        self.zoom_changed.emit(self.zoom)

    def _update_contour_width(self) -> None:
        """Keep outlines about 1.5 screen pixels wide: redraw them when the zoom changes that width."""
        width = max(1, min(12, round(1.5 / max(self.zoom, 1e-6))))
        if width == self._contour_width or self.document is None:
            return
        self._contour_width = width
        assert self.instance_overlay is not None and self.selection_overlay is not None
        self.selection_overlay.contour_width = width
        self.selection_overlay.follow_selection()
        self.instance_overlay.contour_width = width
        if self._options["contour_only"]:
            self.instance_overlay.rebuild()

    def _apply_options(self, changed: str | None = None) -> None:
        if self.document is None:
            return
        assert self.instance_overlay and self.diff_overlay and self.confidence_overlay and self.guidance_overlay
        o = self._options
        self.instance_overlay.setOpacity(float(o["opacity"]))
        self.diff_overlay.setVisible(bool(o["show_diff"]))
        self.confidence_overlay.setVisible(bool(o["show_confidence"]))
        self.diff_overlay.catch_up()
        self.confidence_overlay.catch_up()
        self.guidance_overlay.setVisible(bool(o["show_guidance"]))
        overlay = self.instance_overlay
        overlay.contour_only = bool(o["contour_only"])
        overlay.selected_only = bool(o["selected_only"])
        overlay.color_by = str(o["color_by"])
        if changed in ("contour_only", "selected_only", "color_by"):
            overlay.rebuild()

    def _on_mask_changed(self, instance_id: int, qrect: QRect) -> None:
        rect = rect_of(qrect)
        assert self.instance_overlay and self.selection_overlay and self.diff_overlay and self.confidence_overlay
        self.instance_overlay.mask_changed(instance_id, rect)
        self.selection_overlay.mask_changed(instance_id, rect)
        self.diff_overlay.mask_changed(instance_id, rect)

    def _on_guidance_changed(self, kind: str, qrect: QRect) -> None:
        assert self.guidance_overlay is not None
        self.guidance_overlay.refresh(rect_of(qrect))

    def _on_layer_changed(self, instance_id: int, field: str) -> None:
        assert self.instance_overlay is not None and self.selection_overlay is not None
        if field in ("status", "locked"):
            return
        self.instance_overlay.layer_changed(instance_id)
        if instance_id == self.selection_overlay.shown_id or field == "added":
            self.selection_overlay.follow_selection()

    def _on_selection_changed(self, instance_id: int) -> None:
        assert self.instance_overlay is not None and self.selection_overlay is not None
        previous = self.selection_overlay.shown_id
        self.selection_overlay.follow_selection()
        if self._options["selected_only"]:
            for i in (previous, None if instance_id < 0 else instance_id):
                if i is not None and self.document is not None and self.document.has_layer(i):
                    self.instance_overlay.layer_changed(i)

    def _on_preview_changed(self) -> None:
        assert self.diff_overlay is not None and self.confidence_overlay is not None
        self.diff_overlay.preview_changed()
        self.confidence_overlay.preview_changed()
