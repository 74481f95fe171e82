"""The canvas view: zoom and fit, overlays redrawn only where a signal says, preview and options."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.gui.editor.canvas import Canvas
from app.gui.editor.document import ImageDocument
from app.gui.editor.layers import InstanceLayer, palette_color
from app.gui.editor.overlays import SELECTED_RGB, TILE, ImageItem, build_pyramid
from app.gui.editor.preview import (
    ADDED_RGB, HATCH_RGB, REMOVED_RGB, DiffColors, Preview, premultiplied, prepare_preview,
)


def overlay_pixel(canvas: Canvas, x: int, y: int) -> tuple[int, ...]:
    assert canvas.instance_overlay is not None
    return tuple(int(v) for v in canvas.instance_overlay.pixels((x, y, x + 1, y + 1))[0, 0])


def colour(rgb: tuple[int, int, int], alpha: int = 255) -> tuple[int, ...]:
    return tuple(int(v) for v in premultiplied(rgb, alpha))


ADDED_STRIP, REMOVED_STRIP = (172, 132, 188, 140), (172, 72, 188, 80)
"""Where ``box_preview`` adds and removes pixels."""


def hatched(overlay, rect: tuple[int, int, int, int]) -> set[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    """The colours of an overlay's pixels in ``rect``."""
    return {tuple(int(v) for v in px) for px in overlay.pixels(rect).reshape(-1, 4)}


def hatch_of(rgb: tuple[int, int, int]) -> set[tuple[int, ...]]:
    """A diff colour as drawn: its stripes and the dark ones between them (never a flat fill)."""
    return {colour(rgb, 220), colour(HATCH_RGB, 220)}


def wheel(canvas: Canvas, pos: QPointF, delta: int) -> None:
    global_pos = QPointF(canvas.viewport().mapToGlobal(pos.toPoint()))
    event = QWheelEvent(pos, global_pos, QPoint(0, 0), QPoint(0, delta), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas.viewport(), event)


def visible_scene_rect(canvas: Canvas) -> tuple[float, float, float, float]:
    r = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
    return r.left(), r.top(), r.right(), r.bottom()


def test_fit_shows_the_whole_image(canvas: Canvas) -> None:
    x0, y0, x1, y1 = visible_scene_rect(canvas)
    assert x0 <= 0 and y0 <= 0 and x1 >= 299 and y1 >= 199
    assert 1.5 < canvas.zoom < 2.2  # 640x440 around a 300x200 image


def test_a_fitted_image_stays_fitted_when_the_view_resizes_and_a_chosen_zoom_stays(canvas: Canvas) -> None:
    fitted = canvas.zoom
    canvas.resize(320, 220)  # the window made smaller, or a dock made wider
    assert canvas.zoom == pytest.approx(fitted / 2, rel=0.1)
    x0, y0, x1, y1 = visible_scene_rect(canvas)
    assert x0 <= 0 and y0 <= 0 and x1 >= 299 and y1 >= 199
    canvas.set_zoom(3.0)
    canvas.resize(640, 440)
    assert canvas.zoom == pytest.approx(3.0)
    canvas.zoom_fit()
    canvas.resize(1000, 700)
    assert canvas.zoom > fitted * 1.3


def test_wheel_zooms_smoothly_around_the_mouse(canvas: Canvas, qtbot: QtBot) -> None:
    canvas.set_zoom(4.0)
    anchor = QPointF(200, 150)
    before = canvas.mapToScene(anchor.toPoint())
    with qtbot.waitSignal(canvas.zoom_changed) as blocker:
        wheel(canvas, anchor, 120)
    assert canvas.zoom == pytest.approx(4.0 * 1.0015**120)
    assert blocker.args == [pytest.approx(canvas.zoom)]
    after = canvas.mapToScene(anchor.toPoint())
    assert abs(after.x() - before.x()) < 0.5 and abs(after.y() - before.y()) < 0.5
    wheel(canvas, anchor, -60)  # half a notch: zoom follows the wheel delta, not fixed steps
    assert canvas.zoom == pytest.approx(4.0 * 1.0015**60)


def test_zoom_100_and_limits(canvas: Canvas) -> None:
    canvas.zoom_100()
    assert canvas.zoom == pytest.approx(1.0)
    canvas.set_zoom(1e6)
    assert canvas.zoom == pytest.approx(64.0)
    canvas.set_zoom(0.0)
    assert canvas.zoom == pytest.approx(0.01)


def test_zoom_to_instance_frames_it(canvas: Canvas) -> None:
    fit = canvas.zoom
    canvas.zoom_to_instance(2)  # the disc of radius 30 around (180, 100)
    assert canvas.zoom > fit
    x0, y0, x1, y1 = visible_scene_rect(canvas)
    assert x0 <= 150 and y0 <= 70 and x1 >= 210 and y1 >= 130


def test_zoom_to_a_tiny_instance_stops_at_400_percent_with_its_surroundings(
    canvas: Canvas, image_document: ImageDocument,
) -> None:
    tiny = np.zeros(image_document.shape, dtype=bool)
    tiny[100:103, 20:24] = True  # 4x3 pixels
    image_document.add_instance(1, tiny, instance_id=9)
    canvas.zoom_to_instance(9)
    assert canvas.zoom == pytest.approx(4.0)
    x0, y0, x1, y1 = visible_scene_rect(canvas)
    assert x0 < 1  # the image edge: it is 20 pixels away
    assert x1 >= 24 + 32 and y0 <= 100 - 32 and y1 >= 103 + 32


def test_overlay_shows_instances_in_their_colours_with_holes(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    assert overlay_pixel(canvas, 180, 100) == colour(doc.layer(2).color)
    assert overlay_pixel(canvas, 45, 35) == colour(doc.layer(1).color)
    assert overlay_pixel(canvas, 70, 60)[3] == 0  # the hole
    assert overlay_pixel(canvas, 5, 5)[3] == 0


def test_brush_segment_redraws_only_its_rectangle(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    overlays = canvas.overlays()
    drawn = [item.pixels_drawn for item in overlays]
    assert doc.begin_stroke(2, "brush")
    rect = doc.stroke_to([(100, 160), (110, 160)], 5)
    assert rect == (98, 158, 113, 163)
    area = 15 * 5
    assert canvas.instance_overlay is not None
    assert canvas.instance_overlay.pixels_drawn - drawn[0] == area  # not the 300x200 image
    assert sum(item.pixels_drawn for item in overlays) - sum(drawn) == area  # the others had nothing to do
    assert overlay_pixel(canvas, 105, 160) == colour(doc.layer(2).color)
    doc.end_stroke()
    doc.undo()
    assert overlay_pixel(canvas, 105, 160)[3] == 0


def canvas_with_one_square(qtbot: QtBot, shape: tuple[int, int], start: int, stop: int) -> tuple[ImageDocument, Canvas]:
    """A canvas showing a black image of ``shape`` with one instance: the square [start, stop) on both axes."""
    mask = np.zeros(shape, dtype=bool)
    mask[start:stop, start:stop] = True
    doc = ImageDocument(np.zeros((*shape, 3), dtype=np.uint8), 1, [InstanceLayer(1, 1, mask, palette_color(1))])
    view = Canvas()
    qtbot.addWidget(view)
    view.set_document(doc)
    return doc, view


def test_overlay_tiles_are_allocated_only_where_masks_are(qtbot: QtBot) -> None:
    doc, view = canvas_with_one_square(qtbot, (2 * TILE + 10, 3 * TILE), 10, 50)
    assert view.instance_overlay is not None and view.instance_overlay.tile_count == 1
    assert view.guidance_overlay is not None and view.guidance_overlay.tile_count == 0
    doc.select(1)
    doc.begin_stroke(1, "brush")
    doc.stroke_to([(2 * TILE + 5, TILE + 5)], 9)
    doc.end_stroke()
    assert view.instance_overlay.tile_count == 2


def test_contour_only_selected_only_and_colour_by_category(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    canvas.contour_only = True
    assert overlay_pixel(canvas, 40, 60) == colour(doc.layer(1).color)  # on the outer edge
    assert overlay_pixel(canvas, 50, 40)[3] == 0  # inside: not drawn
    assert overlay_pixel(canvas, 59, 60) == colour(doc.layer(1).color)  # edge of the hole
    assert overlay_pixel(canvas, 60, 60)[3] == 0  # the hole itself
    canvas.contour_only = False
    canvas.selected_only = True
    assert overlay_pixel(canvas, 50, 40)[3] == 0 and overlay_pixel(canvas, 180, 100)[3] == 0
    doc.select(2)
    assert overlay_pixel(canvas, 180, 100) == colour(doc.layer(2).color)
    assert overlay_pixel(canvas, 50, 40)[3] == 0
    canvas.selected_only = False
    canvas.color_by = "category"
    assert overlay_pixel(canvas, 50, 40) == overlay_pixel(canvas, 230, 150)  # both category 1
    assert overlay_pixel(canvas, 50, 40) != overlay_pixel(canvas, 180, 100)
    with pytest.raises(ValueError, match="color_by must be one of"):
        canvas.color_by = "mood"


def test_opacity_changes_the_item_not_the_pixels(canvas: Canvas) -> None:
    assert canvas.instance_overlay is not None
    drawn = canvas.instance_overlay.pixels_drawn
    canvas.opacity = 0.8
    assert canvas.instance_overlay.opacity() == pytest.approx(0.8)
    assert canvas.instance_overlay.pixels_drawn == drawn


def test_hide_delete_and_z_order_update_the_overlay(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    doc.set_visible(2, False)
    assert overlay_pixel(canvas, 180, 100)[3] == 0
    doc.undo()
    assert overlay_pixel(canvas, 180, 100) == colour(doc.layer(2).color)
    over = np.zeros(doc.shape, dtype=bool)
    over[90:110, 170:190] = True
    new = doc.add_instance(4, over)
    assert overlay_pixel(canvas, 180, 100) == colour(doc.layer(new).color)
    doc.send_to_back(new)
    assert overlay_pixel(canvas, 180, 100) == colour(doc.layer(2).color)
    doc.delete_instance(2)
    assert overlay_pixel(canvas, 180, 100) == colour(doc.layer(new).color)
    assert overlay_pixel(canvas, 160, 100)[3] == 0


def test_selection_outline_follows_the_selection(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    outline = canvas.selection_overlay
    assert outline is not None
    doc.select(2)
    edge = outline.pixels((150, 100, 151, 101))[0, 0]
    assert tuple(int(v) for v in edge) == colour(SELECTED_RGB)
    assert outline.pixels((180, 100, 181, 101))[0, 0, 3] == 0  # not inside
    doc.select(None)
    assert not outline.pixels((140, 60, 221, 141))[..., 3].any()


def box_preview(doc: ImageDocument) -> Preview:
    """A preview of instance 2 in the box (140, 60, 220, 150): a strip removed, one added, one unsure spot."""
    x0, y0, x1, y1 = box = (140, 60, 220, 150)
    mask = doc.layer(2).mask[y0:y1, x0:x1].copy()
    mask[70 - y0 : 80 - y0, 160 - x0 : 200 - x0] = False  # removed
    mask[130 - y0 : 140 - y0, 170 - x0 : 190 - x0] = True  # added
    confidence = np.ones(mask.shape, dtype=np.float32)
    confidence[100 - y0 : 110 - y0, 150 - x0 : 160 - x0] = 0.2
    return Preview(2, box, mask, confidence)


def test_refine_preview_diff_and_confidence(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    doc.set_preview(box_preview(doc))
    diff, heat = canvas.diff_overlay, canvas.confidence_overlay
    assert diff is not None and heat is not None
    assert hatched(diff, ADDED_STRIP) == hatch_of(ADDED_RGB)
    assert hatched(diff, REMOVED_STRIP) == hatch_of(REMOVED_RGB)
    assert diff.pixels((180, 100, 181, 101))[0, 0, 3] == 0  # unchanged pixels are not marked
    assert diff.pixels_drawn == 80 * 90  # the box, not the image
    assert diff.isVisible() and not heat.isVisible()
    assert heat.pixels_drawn == 0  # hidden: the heatmap costs nothing until shown
    canvas.show_confidence = True
    canvas.show_diff = False
    assert heat.isVisible() and not diff.isVisible()
    assert heat.pixels((155, 105, 156, 106))[0, 0, 3] > 100  # unsure
    assert heat.pixels((190, 120, 191, 121))[0, 0, 3] == 0  # sure
    assert heat.pixels((10, 10, 11, 11))[0, 0, 3] == 0  # outside the box: not looked at
    doc.clear_preview()
    assert not heat.pixels((140, 60, 220, 150))[..., 3].any()
    canvas.show_diff = True  # it catches up with the clear it missed while hidden
    assert not diff.pixels((140, 60, 220, 150))[..., 3].any()


def test_a_prepared_preview_costs_the_canvas_no_drawing(canvas: Canvas, image_document: ImageDocument) -> None:
    doc = image_document
    canvas.show_confidence = True
    arrays = box_preview(doc)
    x0, y0, x1, y1 = arrays.box
    prepared = prepare_preview(2, arrays.box, arrays.mask, arrays.confidence, doc.layer(2).mask[y0:y1, x0:x1],
                               doc.mask_version(2), canvas.diff_colors, with_heat=True)
    diff, heat = canvas.diff_overlay, canvas.confidence_overlay
    assert diff is not None and heat is not None
    doc.set_preview(prepared)
    assert diff.pixels_drawn == 0 and heat.pixels_drawn == 0
    assert diff.image is prepared.diff and heat.image is prepared.heat
    assert hatched(diff, ADDED_STRIP) == hatch_of(ADDED_RGB)
    redrawn = diff.render(prepared)  # drawn here, the stripes line up with the refine thread's
    assert redrawn is not None and redrawn == prepared.diff
    doc.begin_stroke(2, "brush")  # the instance changes under the preview: its diff is drawn again
    doc.stroke_to([(150, 140)], 3)
    doc.end_stroke()
    assert diff.pixels_drawn == 80 * 90 and diff.image is not prepared.diff
    assert heat.image is prepared.heat  # the confidence does not depend on the mask


def test_diff_colours_can_be_changed(canvas: Canvas, image_document: ImageDocument) -> None:
    from PySide6.QtGui import QColor

    doc = image_document
    doc.set_preview(box_preview(doc))
    canvas.set_diff_colors(QColor(0, 0, 255), QColor(255, 128, 0))
    assert canvas.diff_colors == DiffColors((0, 0, 255), (255, 128, 0))
    assert canvas.diff_overlay is not None
    assert hatched(canvas.diff_overlay, ADDED_STRIP) == hatch_of((0, 0, 255))
    assert hatched(canvas.diff_overlay, REMOVED_STRIP) == hatch_of((255, 128, 0))
    other = ImageDocument(doc.image, 8, [InstanceLayer(1, 1, doc.layer(2).mask.copy(), palette_color(1))])
    canvas.set_document(other)  # the choice outlives the document
    assert canvas.diff_overlay is not None and canvas.diff_overlay.colors == DiffColors((0, 0, 255), (255, 128, 0))


def test_the_rendered_view_shows_the_overlay(canvas: Canvas, image_document: ImageDocument) -> None:
    canvas.zoom_100()
    QApplication.processEvents()
    pos = canvas.mapFromScene(QPointF(180.5, 100.5))
    with_overlay = canvas.viewport().grab().toImage().pixelColor(pos)
    canvas.opacity = 0.0
    QApplication.processEvents()
    without = canvas.viewport().grab().toImage().pixelColor(pos)
    near = image_document.image[99:102, 179:182].reshape(-1, 3).astype(int)  # at 100% one of these
    assert (np.abs(near - (without.red(), without.green(), without.blue())).max(axis=1) <= 2).any()
    assert with_overlay != without


def test_switching_and_clearing_the_document(canvas: Canvas, image_document: ImageDocument) -> None:
    other = ImageDocument(np.zeros((50, 80, 3), np.uint8), 2, [])
    canvas.set_document(other)
    assert canvas.scene().sceneRect().width() == 80
    image_document.select(2)  # the old document no longer drives the canvas
    assert canvas.selection_overlay is not None and canvas.selection_overlay.shown_id is None
    canvas.set_document(None)
    assert canvas.document is None and canvas.overlays() == []
    canvas.zoom_fit()


def test_photo_pyramid_halves_down_to_the_screen_size() -> None:
    image = np.zeros((1000, 2100, 3), dtype=np.uint8)
    image[:, :, 0] = 200
    item = ImageItem(image)
    assert [(level.width(), level.height()) for level in item.levels] == [(2100, 1000), (1050, 500), (525, 250)]
    assert item.levels[2].pixelColor(10, 10).red() == 200
    levels = build_pyramid(image)  # e.g. on the image loader's thread
    assert ImageItem(image, levels).levels is levels
    with pytest.raises(ValueError, match="pyramid is 2100x1000, the image 300x200"):
        ImageItem(np.zeros((200, 300, 3), np.uint8), levels)


def test_large_redraws_are_spread_over_event_loop_turns(qtbot: QtBot) -> None:
    doc, view = canvas_with_one_square(qtbot, (3 * TILE, 3 * TILE), 100, 1400)
    overlay = view.instance_overlay
    assert overlay is not None and overlay.pending  # nine tiles: more than one turn's worth
    qtbot.waitUntil(lambda: not overlay.pending, timeout=5000)
    assert overlay.tile_count == 9
    drawn = overlay.pixels_drawn
    assert doc.begin_stroke(1, "eraser")  # a small edit still redraws at once
    doc.stroke_to([(700, 700)], 9, value=False)
    doc.end_stroke()
    assert not overlay.pending and overlay.pixels_drawn - drawn == 9 * 9
    doc.apply_mask(1, np.zeros(doc.shape, bool), "refine")
    assert overlay.pending
    assert not overlay.pixels((0, 0, 3 * TILE, 3 * TILE))[..., 3].any()  # reading finishes the redraw


def test_outlines_keep_their_screen_width_when_zooming_out(canvas: Canvas, image_document: ImageDocument, qtbot: QtBot) -> None:
    image_document.select(2)
    canvas.set_zoom(0.25)
    assert canvas.selection_overlay is not None
    qtbot.waitUntil(lambda: canvas.selection_overlay is not None and canvas.selection_overlay.contour_width == 6, timeout=2000)
    edge = canvas.selection_overlay.pixels((150, 100, 156, 101))[0]
    assert (edge[:, 3] == 255).all()  # six image pixels wide: 1.5 screen pixels at 25%
