"""A thumbnail of the whole image with the visible part framed; click or drag in it to move the view.

It paints the smallest level of the canvas' photo pyramid, so it costs nothing extra on 8K photos.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.gui.editor.canvas import Canvas


class Navigator(QWidget):
    """Overview of ``canvas``' image; the frame is the viewport, dragging it pans the canvas."""

    def __init__(self, canvas: Canvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.setMinimumSize(120, 90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        canvas.document_changed.connect(self.update)
        canvas.zoom_changed.connect(self.update)
        canvas.horizontalScrollBar().valueChanged.connect(self.update)
        canvas.verticalScrollBar().valueChanged.connect(self.update)

    def sizeHint(self) -> QSize:
        return QSize(240, 160)

    def image_rect(self) -> QRectF:
        """Where the thumbnail sits in the widget (aspect kept, centred); empty without a document."""
        doc = self.canvas.document
        if doc is None:
            return QRectF()
        h, w = doc.shape
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def visible_rect(self) -> QRectF:
        """The canvas' visible part of the image, in widget coordinates."""
        doc = self.canvas.document
        if doc is None:
            return QRectF()
        target = self.image_rect()
        scale = target.width() / doc.shape[1]
        seen = self.canvas.mapToScene(self.canvas.viewport().rect()).boundingRect().intersected(self.canvas.scene().sceneRect())
        return QRectF(target.x() + seen.x() * scale, target.y() + seen.y() * scale, seen.width() * scale, seen.height() * scale)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(48, 48, 52))
        item = self.canvas.image_item
        if item is None:
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(self.image_rect(), item.levels[-1])
        frame = self.visible_rect()
        for color, width in ((QColor(0, 0, 0), 3), (QColor(255, 230, 40), 1)):
            painter.setPen(QPen(color, width))
            painter.drawRect(frame)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._center_on(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._center_on(event.position())

    def _center_on(self, pos: QPointF) -> None:
        doc = self.canvas.document
        target = self.image_rect()
        if doc is None or target.isEmpty():
            return
        scale = target.width() / doc.shape[1]
        self.canvas.centerOn(QPointF((pos.x() - target.x()) / scale, (pos.y() - target.y()) / scale))
        self.update()
