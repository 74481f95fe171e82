"""Scene items that draw the photo and the overlays at full image resolution.

Overlays live in lazily allocated 512-pixel ARGB32 tiles whose pixels are numpy views of the QImages, so
a brush segment rewrites only the tiles under its rectangle and the view repaints only that rectangle;
tiles that never hold a pixel are never allocated. A redraw larger than one tile (opening an image,
accepting a refinement of a big instance, selecting one) is spread over event-loop turns, a few
milliseconds of tiles per turn, so the window keeps answering while it catches up; ``flush`` finishes it.
The refine preview is one image over the instance's crop box (``PreviewImage``), usually drawn by the
refine thread already. The photo keeps a pyramid of halved copies and paints from the level nearest the
zoom, so a zoomed-out 8K photo costs about as much as the viewport; ``build_pyramid`` may run on any thread.
Colours in the buffers are premultiplied BGRA (QImage's ARGB32 byte order on little-endian machines).
"""
from __future__ import annotations

import time
from typing import Iterator

import cv2
import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.core import mask_ops
from app.core.mask_ops import Rect
from app.gui.editor.document import ImageDocument
from app.gui.editor.layers import palette_color
from app.gui.editor.preview import DiffColors, Preview, premultiplied, qimage_view, render_diff, render_heat

TILE = 512
SYNC_PIXELS = TILE * TILE  # redraws up to this size happen at once (a brush segment); larger ones in turns
TURN_BUDGET_S = 0.006  # drawing time per event-loop turn while catching up
PYRAMID_TOP = 1024
SELECTED_RGB = (255, 230, 40)
GUIDANCE_RGB = {"foreground": (40, 230, 80), "background": (240, 50, 50), "region": (80, 200, 255)}


def fill_where(out: np.ndarray, where: np.ndarray, bgra: np.ndarray) -> None:
    """Set ``out`` (H, W, 4) to one BGRA colour where ``where`` is True, a 32-bit word at a time."""
    np.copyto(out.view(np.uint32)[..., 0], bgra.view(np.uint32)[0], where=where)


def boundary(mask: np.ndarray, rect: Rect, width: int) -> np.ndarray:
    """Pixels of ``mask`` inside ``rect`` that lie within ``width`` pixels of its edge (holes included).

    Wide outlines (zoomed out) erode with a square, which OpenCV does in two cheap 1-D passes; a disc
    costs its area per pixel and is no different on screen at that zoom.
    """
    grown = mask_ops.grow_rect(rect, width, mask.shape)
    assert grown is not None
    gx0, gy0, gx1, gy1 = grown
    sub = mask[gy0:gy1, gx0:gx1].view(np.uint8)
    shape = cv2.MORPH_ELLIPSE if width <= 2 else cv2.MORPH_RECT
    kernel = cv2.getStructuringElement(shape, (2 * width + 1, 2 * width + 1))
    edge = (sub > 0) & (cv2.erode(sub, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) == 0)
    x0, y0, x1, y1 = rect
    return edge[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]


def build_pyramid(image: np.ndarray) -> list[QImage]:
    """The photo as RGB32 QImages, each level half the previous, down to about the screen size."""
    levels = []
    level = image
    while True:
        qimg = QImage(level.shape[1], level.shape[0], QImage.Format.Format_RGB32)
        cv2.cvtColor(level, cv2.COLOR_RGB2BGRA, dst=qimage_view(qimg))
        levels.append(qimg)
        if max(level.shape[:2]) <= PYRAMID_TOP:
            return levels
        level = cv2.resize(level, ((level.shape[1] + 1) // 2, (level.shape[0] + 1) // 2), interpolation=cv2.INTER_AREA)


class ImageItem(QGraphicsItem):
    """The photo, painted from a pyramid level chosen by the zoom (only the exposed part is drawn).

    ``levels`` (from ``build_pyramid``, e.g. made by the image loader's thread) spares the GUI thread
    building them; without it they are built from ``image`` here.
    """

    def __init__(self, image: np.ndarray, levels: list[QImage] | None = None) -> None:
        super().__init__()
        h, w = image.shape[:2]
        self._rect = QRectF(0, 0, w, h)
        if levels is not None and (levels[0].width(), levels[0].height()) != (w, h):
            raise ValueError(f"pyramid is {levels[0].width()}x{levels[0].height()}, the image {w}x{h}")
        self.levels = levels if levels is not None else build_pyramid(image)
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

    A redraw of at most ``SYNC_PIXELS`` happens at once; a larger one queues its tiles and draws them
    over the next event-loop turns (``TURN_BUDGET_S`` each). ``pixels_drawn`` counts the pixels recomputed,
    so tests can check a brush segment redraws its own rectangle and not the image.
    """

    def __init__(self, doc: ImageDocument) -> None:
        super().__init__()
        self.doc = doc
        h, w = doc.shape
        self._shape = (h, w)
        self._rect = QRectF(0, 0, w, h)
        self._tiles: dict[tuple[int, int], tuple[QImage, np.ndarray]] = {}
        self._pending: dict[tuple[int, int], Rect] = {}
        self._timer: QTimer | None = None
        self.pixels_drawn = 0
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    def boundingRect(self) -> QRectF:
        return self._rect

    @property
    def tile_count(self) -> int:
        return len(self._tiles)

    @property
    def pending(self) -> bool:
        """Whether a large redraw is still being caught up with."""
        return bool(self._pending)

    def draw(self, out: np.ndarray, rect: Rect) -> None:
        """Write premultiplied BGRA pixels for ``rect`` into ``out`` (zeroed, shape of ``rect``)."""
        raise NotImplementedError

    def refresh(self, rect: Rect | None = None) -> None:
        """Recompute the overlay inside ``rect`` (the whole image when None) and schedule a repaint."""
        rect = (0, 0, self._shape[1], self._shape[0]) if rect is None else mask_ops.clip_rect(rect, self._shape)
        if rect is not None:
            self._redraw(dict(self._tiles_in(rect)))

    def refresh_areas(self, rects: list[Rect | None]) -> None:
        """Recompute every tile that meets one of ``rects``, each tile once however many rects meet it."""
        h, w = self._shape
        keys = {key for rect in rects if rect is not None for key, _ in self._tiles_in(rect)}
        self._redraw({(ty, tx): (tx * TILE, ty * TILE, min((tx + 1) * TILE, w), min((ty + 1) * TILE, h)) for ty, tx in keys})

    def flush(self) -> None:
        """Finish a redraw in progress now."""
        if self._timer is not None:
            self._timer.stop()
        pending, self._pending = self._pending, {}
        for key in sorted(pending):
            self._draw_tile(key, pending[key])

    def stop(self) -> None:
        """Forget work in progress (the item is leaving the scene)."""
        self._pending.clear()
        if self._timer is not None:
            self._timer.stop()
            self._timer.deleteLater()
            self._timer = None

    def clear(self) -> None:
        """Drop every tile (nothing is drawn until the next ``refresh``)."""
        self.stop()
        self._tiles.clear()
        self.update()

    def pixels(self, rect: Rect) -> np.ndarray:
        """The overlay's BGRA pixels in ``rect`` (transparent where no tile exists), for tests and tools."""
        self.flush()
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

    def _redraw(self, parts: dict[tuple[int, int], Rect]) -> None:
        """Draw small redraws now; queue large ones (merged with what is queued) for the next turns.
        An item in no scene has no event loop turns to wait for and draws at once."""
        scene = self.scene()
        if scene is None or sum((r[2] - r[0]) * (r[3] - r[1]) for r in parts.values()) <= SYNC_PIXELS:
            for key, rect in parts.items():
                self._draw_tile(key, rect)
            return
        for key, rect in parts.items():
            self._pending[key] = mask_ops.union_rect(self._pending.get(key), rect) or rect
        if self._timer is None:
            self._timer = QTimer(scene)  # goes with the scene, so it never fires for a deleted item
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self._draw_pending)
        self._timer.start(0)

    def _draw_pending(self) -> None:
        deadline = time.perf_counter() + TURN_BUDGET_S
        while self._pending and time.perf_counter() < deadline:
            key = min(self._pending)
            self._draw_tile(key, self._pending.pop(key))
        if self._pending and self._timer is not None:
            self._timer.start(0)

    def _draw_tile(self, key: tuple[int, int], sub: Rect) -> None:
        """Recompute ``sub`` (inside tile ``key``) and schedule its repaint."""
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
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))

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
        self._bbox = {layer.id: self.doc.layer_bbox(layer.id) for layer in self.doc.layers()}
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
        new = None if layer is None else self.doc.layer_bbox(instance_id)
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
        self._bbox = None if layer is None or not layer.visible else self.doc.layer_bbox(layer.id)
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


class PreviewImage(QGraphicsItem):
    """One image over the refine preview's box; subclasses say which ready image fits and how to draw one.

    A hidden item only notes that it went stale and catches up when shown (``catch_up``), so a refinement
    animating with the heatmap switched off pays nothing for it. ``pixels_drawn`` counts pixels this item
    drew on the GUI thread (zero when every step came with its image drawn).
    """

    def __init__(self, doc: ImageDocument) -> None:
        super().__init__()
        self.doc = doc
        h, w = doc.shape
        self._shape = (h, w)
        self._rect = QRectF(0, 0, w, h)
        self.image: QImage | None = None
        self.box: Rect | None = None
        self._stale = True
        self.pixels_drawn = 0
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    def boundingRect(self) -> QRectF:
        return self._rect

    def ready(self, preview: Preview) -> QImage | None:
        """The preview's own image when it shows what this item would draw now."""
        raise NotImplementedError

    def render(self, preview: Preview) -> QImage | None:
        """Draw the image for ``preview`` (its box only)."""
        raise NotImplementedError

    def preview_changed(self) -> None:
        self._stale = True
        self.catch_up()

    def mask_changed(self, instance_id: int, rect: Rect) -> None:
        """The previewed instance's pixels changed: what it would add or remove may have too."""

    def stop(self) -> None:
        """Nothing runs in the background here (the same call as on the raster overlays)."""

    def catch_up(self) -> None:
        """Show what the document's preview needs (call after showing the item)."""
        if not self.isVisible() or not self._stale:
            return
        self._stale = False
        preview = self.doc.preview
        image = None
        if preview is not None and self.doc.has_layer(preview.instance_id):
            image = self.ready(preview)
            if image is None:
                image = self.render(preview)
                y, x = preview.box_shape
                self.pixels_drawn += y * x
        self._show(image, preview.box if image is not None and preview is not None else None)

    def pixels(self, rect: Rect) -> np.ndarray:
        """The item's BGRA pixels in ``rect`` (transparent outside the box), for tests and tools."""
        x0, y0, x1, y1 = rect
        out = np.zeros((y1 - y0, x1 - x0, 4), dtype=np.uint8)
        sub = mask_ops.intersect_rect(rect, self.box)
        if sub is not None and self.image is not None:
            bx0, by0 = self.box[0], self.box[1]  # type: ignore[index]
            sx0, sy0, sx1, sy1 = sub
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = qimage_view(self.image)[sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0]
        return out

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if self.image is None or self.box is None:
            return
        x0, y0, x1, y1 = self.box
        target = option.exposedRect.intersected(QRectF(x0, y0, x1 - x0, y1 - y0))
        if target.isEmpty():
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.drawImage(target, self.image, target.translated(-x0, -y0))
        painter.restore()

    def _show(self, image: QImage | None, box: Rect | None) -> None:
        old = self.box
        self.image, self.box = image, box
        rect = mask_ops.union_rect(old, box)
        if rect is not None:
            self.update(QRectF(rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1]))


class DiffOverlay(PreviewImage):
    """Pixels the refiner would add and remove compared to the instance's current mask (two hatched colours)."""

    def __init__(self, doc: ImageDocument, colors: DiffColors | None = None) -> None:
        super().__init__(doc)
        self.colors = colors or DiffColors()

    def set_colors(self, colors: DiffColors) -> None:
        if colors != self.colors:
            self.colors = colors
            self.preview_changed()

    def mask_changed(self, instance_id: int, rect: Rect) -> None:
        preview = self.doc.preview
        if preview is not None and preview.instance_id == instance_id and mask_ops.intersect_rect(rect, preview.box):
            self.preview_changed()

    def ready(self, preview: Preview) -> QImage | None:
        fits = preview.colors == self.colors and preview.base_version == self.doc.mask_version(preview.instance_id)
        return preview.diff if fits else None

    def render(self, preview: Preview) -> QImage | None:
        if not preview.mask.size:
            return None
        x0, y0, x1, y1 = preview.box
        return render_diff(self.doc.layer(preview.instance_id).mask[y0:y1, x0:x1], preview.mask, self.colors, (x0, y0))


class ConfidenceOverlay(PreviewImage):
    """Where the refiner is unsure: a heatmap of 1 - confidence, transparent where it is sure."""

    def ready(self, preview: Preview) -> QImage | None:
        return preview.heat

    def render(self, preview: Preview) -> QImage | None:
        conf = preview.confidence
        return None if conf is None or not conf.size else render_heat(conf)


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
