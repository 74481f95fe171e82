"""Scene items that draw the photo and the overlays at full image resolution.

Overlays live in lazily allocated 512-pixel ARGB32 tiles whose pixels are numpy views of the QImages, so
a brush segment rewrites only the tiles under its rectangle and the view repaints only that rectangle;
tiles that never hold a pixel are never allocated. The photo keeps a pyramid of halved copies and paints
from the level nearest the zoom, so a zoomed-out 8K photo costs about as much as the viewport.
Colours in the buffers are premultiplied BGRA (QImage's ARGB32 byte order on little-endian machines).
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.core import mask_ops
from app.core.mask_ops import Rect
from app.gui.document import ImageDocument, palette_color

TILE = 512
ADDED_RGB = (40, 220, 90)
REMOVED_RGB = (235, 40, 200)
SELECTED_RGB = (255, 230, 40)
GUIDANCE_RGB = {"foreground": (40, 230, 80), "background": (240, 50, 50), "region": (80, 200, 255)}


def premultiplied(rgb: tuple[int, int, int], alpha: int = 255) -> np.ndarray:
    """An RGB colour as a premultiplied BGRA pixel."""
    r, g, b = (c * alpha // 255 for c in rgb)
    return np.array([b, g, r, alpha], dtype=np.uint8)


def _lut(colours: list[np.ndarray]) -> np.ndarray:
    """Premultiplied BGRA pixels as a uint32 lookup table (index with codes to paint many at once)."""
    return np.stack(colours).view(np.uint32)[:, 0]


def _heat_lut() -> np.ndarray:
    """Uncertainty 0..255 to the inferno colour map, more opaque the less sure (transparent when sure)."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), cv2.COLORMAP_INFERNO)[:, 0]
    return _lut([premultiplied((int(r), int(g), int(b)), u * 200 // 255) for u, (b, g, r) in enumerate(bgr)])


DIFF_LUT = _lut([premultiplied((0, 0, 0), 0), premultiplied(REMOVED_RGB, 220), premultiplied(ADDED_RGB, 220), premultiplied((0, 0, 0), 0)])
"""Indexed by ``preview * 2 + current``: only pixels that differ are coloured."""
HEAT_LUT = _heat_lut()


def fill_where(out: np.ndarray, where: np.ndarray, bgra: np.ndarray) -> None:
    """Set ``out`` (H, W, 4) to one BGRA colour where ``where`` is True, a 32-bit word at a time."""
    np.copyto(out.view(np.uint32)[..., 0], bgra.view(np.uint32)[0], where=where)


def qimage_view(image: QImage) -> np.ndarray:
    """(H, W, 4) uint8 numpy view of a 32-bit QImage's own pixels (writes show up in the image)."""
    h, w = image.height(), image.width()
    rows = np.frombuffer(image.bits(), dtype=np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, : w * 4].reshape(h, w, 4)


def boundary(mask: np.ndarray, rect: Rect, width: int) -> np.ndarray:
    """Pixels of ``mask`` inside ``rect`` that lie within ``width`` pixels of its edge (holes included)."""
    grown = mask_ops.grow_rect(rect, width, mask.shape)
    assert grown is not None
    gx0, gy0, gx1, gy1 = grown
    sub = mask[gy0:gy1, gx0:gx1].view(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    edge = (sub > 0) & (cv2.erode(sub, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) == 0)
    x0, y0, x1, y1 = rect
    return edge[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]


class ImageItem(QGraphicsItem):
    """The photo, painted from a pyramid level chosen by the zoom (only the exposed part is drawn)."""

    def __init__(self, image: np.ndarray) -> None:
        super().__init__()
        h, w = image.shape[:2]
        self._rect = QRectF(0, 0, w, h)
        self.levels: list[QImage] = []
        level = image
        while True:
            qimg = QImage(level.shape[1], level.shape[0], QImage.Format.Format_RGB32)
            cv2.cvtColor(level, cv2.COLOR_RGB2BGRA, dst=qimage_view(qimg))
            self.levels.append(qimg)
            if max(level.shape[:2]) <= 1024:
                break
            level = cv2.resize(level, ((level.shape[1] + 1) // 2, (level.shape[0] + 1) // 2), interpolation=cv2.INTER_AREA)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        k = 0
        while k + 1 < len(self.levels) and lod * 2 ** (k + 1) <= 1.0:
            k += 1
        level = self.levels[k]
        target = option.exposedRect.intersected(self._rect)
        sx = level.width() / self._rect.width()
        sy = level.height() / self._rect.height()
        source = QRectF(target.x() * sx, target.y() * sy, target.width() * sx, target.height() * sy)
        painter.drawImage(target, level, source)


class RasterItem(QGraphicsItem):
    """A full-image overlay kept in lazily allocated tiles; subclasses say what to draw in a rectangle.

    ``pixels_drawn`` counts the pixels ``refresh`` recomputed, so tests can check a brush segment redraws
    its own rectangle and not the image.
    """

    def __init__(self, doc: ImageDocument) -> None:
        super().__init__()
        self.doc = doc
        h, w = doc.shape
        self._shape = (h, w)
        self._rect = QRectF(0, 0, w, h)
        self._tiles: dict[tuple[int, int], tuple[QImage, np.ndarray]] = {}
        self.pixels_drawn = 0
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    def boundingRect(self) -> QRectF:
        return self._rect

    @property
    def tile_count(self) -> int:
        return len(self._tiles)

    def draw(self, out: np.ndarray, rect: Rect) -> None:
        """Write premultiplied BGRA pixels for ``rect`` into ``out`` (zeroed, shape of ``rect``)."""
        raise NotImplementedError

    def refresh(self, rect: Rect | None = None) -> None:
        """Recompute the overlay inside ``rect`` (the whole image when None) and schedule a repaint."""
        rect = (0, 0, self._shape[1], self._shape[0]) if rect is None else mask_ops.clip_rect(rect, self._shape)
        if rect is None:
            return
        for key, sub in self._tiles_in(rect):
            tile = self._tiles.get(key)
            tx0, ty0 = key[1] * TILE, key[0] * TILE
            x0, y0, x1, y1 = sub
            if tile is not None:
                out = tile[1][y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
                out[...] = 0
                self.draw(out, sub)
            else:
                scratch = np.zeros((y1 - y0, x1 - x0, 4), dtype=np.uint8)
                self.draw(scratch, sub)
                if scratch[..., 3].any():
                    self._tile(key)[1][y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0] = scratch
            self.pixels_drawn += (x1 - x0) * (y1 - y0)
        self.update(QRectF(rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1]))

    def refresh_areas(self, rects: list[Rect | None]) -> None:
        """Recompute every tile that meets one of ``rects``, each tile once however many rects meet it."""
        keys = {key for rect in rects if rect is not None for key, _ in self._tiles_in(rect)}
        h, w = self._shape
        for ty, tx in sorted(keys):
            self.refresh((tx * TILE, ty * TILE, min((tx + 1) * TILE, w), min((ty + 1) * TILE, h)))

    def clear(self) -> None:
        """Drop every tile (nothing is drawn until the next ``refresh``)."""
        self._tiles.clear()
        self.update()

    def pixels(self, rect: Rect) -> np.ndarray:
        """The overlay's BGRA pixels in ``rect`` (transparent where no tile exists), for tests and tools."""
        x0, y0, x1, y1 = rect
        out = np.zeros((y1 - y0, x1 - x0, 4), dtype=np.uint8)
        for key, (sx0, sy0, sx1, sy1) in self._tiles_in(rect):
            tile = self._tiles.get(key)
            if tile is not None:
                tx0, ty0 = key[1] * TILE, key[0] * TILE
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[1][sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0]
        return out

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        exposed = option.exposedRect
        x0, y0 = max(int(exposed.left()), 0), max(int(exposed.top()), 0)
        x1 = min(int(np.ceil(exposed.right())) + 1, self._shape[1])
        y1 = min(int(np.ceil(exposed.bottom())) + 1, self._shape[0])
        if x0 >= x1 or y0 >= y1:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)  # antialiased tile edges show seams
        for key, (sx0, sy0, sx1, sy1) in self._tiles_in((x0, y0, x1, y1)):
            tile = self._tiles.get(key)
            if tile is not None:
                tx0, ty0 = key[1] * TILE, key[0] * TILE
                painter.drawImage(QRectF(sx0, sy0, sx1 - sx0, sy1 - sy0), tile[0], QRectF(sx0 - tx0, sy0 - ty0, sx1 - sx0, sy1 - sy0))
        painter.restore()

    def _tiles_in(self, rect: Rect) -> Iterator[tuple[tuple[int, int], Rect]]:
        x0, y0, x1, y1 = rect
        for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                sub = mask_ops.intersect_rect(rect, (tx * TILE, ty * TILE, (tx + 1) * TILE, (ty + 1) * TILE))
                assert sub is not None
                yield (ty, tx), sub

    def _tile(self, key: tuple[int, int]) -> tuple[QImage, np.ndarray]:
        ty, tx = key
        w = min(TILE, self._shape[1] - tx * TILE)
        h = min(TILE, self._shape[0] - ty * TILE)
        image = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(0)
        tile = (image, qimage_view(image))
        self._tiles[key] = tile
        return tile


class InstanceOverlay(RasterItem):
    """Every visible instance in its colour, in z order (filled or contour only, all or selected only).

    Drawn opaque; the item's opacity is the overlay opacity, so changing it redraws nothing.
    """

    def __init__(self, doc: ImageDocument) -> None:
        super().__init__(doc)
        self.contour_only = False
        self.selected_only = False
        self.color_by = "instance"
        self.contour_width = 2
        self._bbox: dict[int, Rect | None] = {}

    def rebuild(self) -> None:
        """Forget cached bounding boxes and redraw everything (after an option or z-order change)."""
        self._bbox = {layer.id: mask_ops.mask_bbox(layer.mask) for layer in self.doc.layers()}
        self.clear()
        self.refresh_areas(list(self._bbox.values()))

    def mask_changed(self, instance_id: int, rect: Rect) -> None:
        """Redraw after pixels of one instance changed in ``rect`` (its contour may move one width further)."""
        self._bbox[instance_id] = mask_ops.union_rect(self._bbox.get(instance_id), rect)
        margin = self.contour_width if self.contour_only else 0
        grown = mask_ops.grow_rect(rect, margin, self._shape)
        if grown is not None:
            self.refresh(grown)

    def layer_changed(self, instance_id: int) -> None:
        """Redraw one instance's area after its visibility, colour, z-order, presence or selection changed."""
        layer = self.doc.layer(instance_id) if self.doc.has_layer(instance_id) else None
        old = self._bbox.pop(instance_id, None)
        new = None if layer is None else mask_ops.mask_bbox(layer.mask)
        if layer is not None:
            self._bbox[instance_id] = new
        rect = mask_ops.union_rect(old, new)
        if rect is not None:
            self.refresh(rect)

    def color(self, instance_id: int) -> tuple[int, int, int]:
        layer = self.doc.layer(instance_id)
        return palette_color(layer.category_id * 7 + 3) if self.color_by == "category" else layer.color

    def draw(self, out: np.ndarray, rect: Rect) -> None:
        x0, y0, x1, y1 = rect
        for layer in self.doc.layers():
            if not layer.visible or (self.selected_only and layer.id != self.doc.selected_id):
                continue
            if mask_ops.intersect_rect(self._bbox.get(layer.id), rect) is None:
                continue
            if self.contour_only:
                pixels = boundary(layer.mask, rect, self.contour_width)
            else:
                pixels = layer.mask[y0:y1, x0:x1]
            fill_where(out, pixels, premultiplied(self.color(layer.id)))


class SelectionOverlay(RasterItem):
    """The selected instance's outline, drawn opaque above the instance overlay."""

    def __init__(self, doc: ImageDocument) -> None:
        super().__init__(doc)
        self.contour_width = 2
        self.shown_id: int | None = None
        self._bbox: Rect | None = None

    def follow_selection(self) -> None:
        """Move the outline to the document's selected instance."""
        old = self._bbox
        self.shown_id = self.doc.selected_id
        layer = self.doc.layer(self.shown_id) if self.shown_id is not None else None
        self._bbox = None if layer is None or not layer.visible else mask_ops.mask_bbox(layer.mask)
        for rect in (old, self._bbox):
            if rect is not None:
                grown = mask_ops.grow_rect(rect, self.contour_width, self._shape)
                self.refresh(grown)

    def mask_changed(self, instance_id: int, rect: Rect) -> None:
        if instance_id != self.shown_id:
            return
        self._bbox = mask_ops.union_rect(self._bbox, rect)
        grown = mask_ops.grow_rect(rect, self.contour_width, self._shape)
        if grown is not None:
            self.refresh(grown)

    def draw(self, out: np.ndarray, rect: Rect) -> None:
        if self.shown_id is None or self._bbox is None or not self.doc.has_layer(self.shown_id):
            return
        layer = self.doc.layer(self.shown_id)
        if layer.visible:
            fill_where(out, boundary(layer.mask, rect, self.contour_width), premultiplied(SELECTED_RGB))


class GuidanceOverlay(RasterItem):
    """Constraint strokes hatched diagonally (green: must stay foreground, red: must stay background) and
    the refine region as a blue grid, so they read apart from instance fills and from each other."""

    def rebuild(self) -> None:
        """Redraw wherever guidance is painted (after a document change)."""
        self.clear()
        masks = [self.doc.guidance(kind) for kind in ("foreground", "background", "region")]
        self.refresh_areas([mask_ops.mask_bbox(m) for m in masks if m is not None])

    def draw(self, out: np.ndarray, rect: Rect) -> None:
        x0, y0, x1, y1 = rect
        region = self.doc.region
        if region is not None:
            yy, xx = np.ogrid[y0:y1, x0:x1]
            grid = (xx % 6 == 0) | (yy % 6 == 0)
            sub = region[y0:y1, x0:x1]
            fill_where(out, sub & ~grid, premultiplied(GUIDANCE_RGB["region"], 60))
            fill_where(out, sub & grid, premultiplied(GUIDANCE_RGB["region"], 220))
        stripes: np.ndarray | None = None
        for kind in ("foreground", "background"):
            mask = self.doc.guidance(kind)
            if mask is None:
                continue
            if stripes is None:
                yy, xx = np.ogrid[y0:y1, x0:x1]
                stripes = ((xx + yy) // 4) % 2 == 0
            sub = mask[y0:y1, x0:x1]
            fill_where(out, sub & stripes, premultiplied(GUIDANCE_RGB[kind], 235))
            fill_where(out, sub & ~stripes, premultiplied(GUIDANCE_RGB[kind], 90))


class PreviewOverlay(RasterItem):
    """Base of the refine preview overlays: redraws the union of the old and the new preview box.

    A hidden preview overlay only notes what went stale and redraws it when shown (``catch_up``), so a
    refinement animating with the heatmap switched off pays nothing for it.
    """

    def __init__(self, doc: ImageDocument) -> None:
        super().__init__(doc)
        self._shown: Rect | None = None
        self._stale: Rect | None = None

    def preview_box(self) -> Rect | None:
        doc = self.doc
        if doc.preview_mask is None or doc.preview_instance_id is None or not doc.has_layer(doc.preview_instance_id):
            return None
        if doc.preview_box is not None:
            return mask_ops.clip_rect(doc.preview_box, self._shape)
        return self.guess_box()

    def guess_box(self) -> Rect | None:
        raise NotImplementedError

    def preview_changed(self) -> None:
        new = self.preview_box()
        self._invalidate(mask_ops.union_rect(self._shown, new))
        self._shown = new
        self.catch_up()

    def mask_changed(self, instance_id: int, rect: Rect) -> None:
        if instance_id == self.doc.preview_instance_id and self._shown is not None:
            self._invalidate(rect)
            self.catch_up()

    def catch_up(self) -> None:
        """Redraw what changed while hidden (call after showing the item)."""
        if self.isVisible() and self._stale is not None:
            rect, self._stale = self._stale, None
            self.refresh(rect)

    def _invalidate(self, rect: Rect | None) -> None:
        self._stale = mask_ops.union_rect(self._stale, rect)


class DiffOverlay(PreviewOverlay):
    """Pixels the refiner would add (green) and remove (magenta) compared to the current mask."""

    def guess_box(self) -> Rect | None:
        doc = self.doc
        assert doc.preview_mask is not None and doc.preview_instance_id is not None
        return mask_ops.changed_rect(doc.layer(doc.preview_instance_id).mask, doc.preview_mask)

    def draw(self, out: np.ndarray, rect: Rect) -> None:
        if self._shown is None:
            return
        doc = self.doc
        assert doc.preview_mask is not None and doc.preview_instance_id is not None
        x0, y0, x1, y1 = rect
        current = doc.layer(doc.preview_instance_id).mask[y0:y1, x0:x1].view(np.uint8)
        preview = doc.preview_mask[y0:y1, x0:x1].view(np.uint8)
        out.view(np.uint32)[..., 0] = DIFF_LUT[preview * 2 + current]


class ConfidenceOverlay(PreviewOverlay):
    """Where the refiner is unsure: a heatmap of 1 - confidence, transparent where it is sure."""

    def guess_box(self) -> Rect | None:
        conf = self.doc.preview_confidence
        return None if conf is None else mask_ops.mask_bbox(conf > 0)

    def draw(self, out: np.ndarray, rect: Rect) -> None:
        conf = self.doc.preview_confidence
        box = mask_ops.intersect_rect(rect, self._shown)
        if box is None or conf is None:
            return
        x0, y0, x1, y1 = box
        unsure = cv2.convertScaleAbs(conf[y0:y1, x0:x1], alpha=-255.0, beta=255.0)  # (1 - conf) as uint8
        sub = out[y0 - rect[1] : y1 - rect[1], x0 - rect[0] : x1 - rect[0]]
        sub.view(np.uint32)[..., 0] = HEAT_LUT[unsure]


class BrushCursor(QGraphicsItem):
    """The round brush outline at its true size in image pixels (white over black, visible on any photo)."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 1
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_size(self, size: int) -> None:
        self.prepareGeometryChange()
        self.size = size

    def boundingRect(self) -> QRectF:
        r = self.size / 2 + 1
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        r = self.size / 2
        circle = QRectF(-r, -r, 2 * r, 2 * r)
        for color, style in ((QColor(0, 0, 0), Qt.PenStyle.SolidLine), (QColor(255, 255, 255), Qt.PenStyle.DashLine)):
            pen = QPen(color, 0, style)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.drawEllipse(circle)
