"""The refine preview of one instance, kept to the refiner's crop box, and the images that show it.

A refine step on a large photo changes pixels only inside the instance's crop box, so the preview holds
just that box: the refined mask and confidence there, and optionally the two overlay images (pixels the
refiner adds and removes; the uncertainty heatmap) already drawn. The refine thread draws them while it
prepares a step (``prepare_preview``), so the GUI thread only swaps images. An image drawn against another
version of the instance's mask, or in other colours, is redrawn by the canvas, inside the box only.

The diff is hatched: pixels the refiner adds in diagonal stripes of the "added" colour and near-black,
pixels it removes in stripes the other way, so that neither ever looks like an instance's flat fill,
whatever the instance's colour (the stripes follow image coordinates, so they line up across steps).

Buffers are premultiplied BGRA (QImage's ARGB32 byte order on little-endian machines). QImage may be
created and drawn into on any thread.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtGui import QImage

from app.core.mask_ops import Rect

ADDED_RGB = (40, 220, 90)
REMOVED_RGB = (235, 40, 200)
DIFF_ALPHA = 220
HATCH_RGB = (20, 20, 24)
HATCH_PX = 3
"""Width of the diff's stripes, in image pixels."""


def premultiplied(rgb: tuple[int, int, int], alpha: int = 255) -> np.ndarray:
    """An RGB colour as a premultiplied BGRA pixel."""
    r, g, b = (c * alpha // 255 for c in rgb)
    return np.array([b, g, r, alpha], dtype=np.uint8)


def qimage_view(image: QImage) -> np.ndarray:
    """(H, W, 4) uint8 numpy view of a 32-bit QImage's own pixels (writes show up in the image)."""
    h, w = image.height(), image.width()
    rows = np.frombuffer(image.bits(), dtype=np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, : w * 4].reshape(h, w, 4)


def blank_image(width: int, height: int) -> QImage:
    """A transparent premultiplied ARGB32 image."""
    image = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    return image


def _heat_lut() -> np.ndarray:
    """Uncertainty 0..255 to the inferno colour map, more opaque the less sure (transparent when sure)."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), cv2.COLORMAP_INFERNO)[:, 0]
    pixels = [premultiplied((int(r), int(g), int(b)), u * 200 // 255) for u, (b, g, r) in enumerate(bgr)]
    return np.stack(pixels).view(np.uint32)[:, 0]


HEAT_LUT = _heat_lut()


@dataclass(frozen=True)
class DiffColors:
    """The two colours of the diff overlay (RGB), drawn ``alpha`` opaque."""

    added: tuple[int, int, int] = ADDED_RGB
    removed: tuple[int, int, int] = REMOVED_RGB
    alpha: int = DIFF_ALPHA


@dataclass(frozen=True)
class Preview:
    """A refiner result for one instance inside ``box`` (x0, y0, x1, y1; end-exclusive, in the image).

    ``mask`` (bool) and ``confidence`` (float32 in [0, 1], uint8 in 0..255, or None) have the box's shape; outside the box
    the instance is unchanged. ``diff`` was drawn against version ``base_version`` of the instance's mask
    in ``colors``; ``heat`` from ``confidence``. Either image may be None (the canvas draws it then).
    """

    instance_id: int
    box: Rect
    mask: np.ndarray
    confidence: np.ndarray | None = None
    base_version: int | None = None
    colors: DiffColors | None = None
    diff: QImage | None = None
    heat: QImage | None = None

    @property
    def box_shape(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0

    def full_mask(self, base: np.ndarray) -> np.ndarray:
        """The instance's whole mask with this preview applied to a copy of ``base``."""
        out = base.copy()
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = self.mask
        return out


def render_diff(base: np.ndarray, mask: np.ndarray, colors: DiffColors, origin: tuple[int, int] = (0, 0)) -> QImage:
    """Pixels set in ``mask`` but not in ``base`` hatched in the added colour, the reverse in the removed
    colour; ``origin`` is the box's top-left corner in the image (where the stripes are anchored)."""
    h, w = mask.shape
    image = blank_image(w, h)
    pixels = qimage_view(image).view(np.uint32)[..., 0]
    ys, xs = np.ogrid[origin[1] : origin[1] + h, origin[0] : origin[0] + w]
    dark = premultiplied(HATCH_RGB, colors.alpha).view(np.uint32)[0]
    for changed, color, diagonal in ((mask > base, colors.added, xs + ys), (base > mask, colors.removed, xs - ys)):
        if changed.any():
            np.copyto(pixels, dark, where=changed)
            np.copyto(pixels, premultiplied(color, colors.alpha).view(np.uint32)[0],
                      where=changed & ((diagonal // HATCH_PX) % 2 == 0))
    return image


def render_heat(confidence: np.ndarray) -> QImage:
    """The uncertainty (1 - confidence) as a heatmap; transparent where the refiner is sure. ``confidence`` is
    float in [0, 1], or uint8 with 255 for sure (as the scrubber keeps earlier steps)."""
    h, w = confidence.shape
    image = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    unsure = 255 - confidence if confidence.dtype == np.uint8 else cv2.convertScaleAbs(confidence, alpha=-255.0, beta=255.0)
    np.take(HEAT_LUT, unsure, out=qimage_view(image).view(np.uint32)[..., 0], mode="clip")
    return image


def prepare_preview(
    instance_id: int,
    box: Rect,
    mask: np.ndarray,
    confidence: np.ndarray | None,
    base: np.ndarray,
    base_version: int | None,
    colors: DiffColors,
    with_heat: bool,
) -> Preview:
    """A preview with its images drawn (meant for a worker thread); ``base`` is the instance's mask inside
    ``box`` at version ``base_version``, what the diff is drawn against."""
    diff = render_diff(base, mask, colors, (box[0], box[1])) if mask.size else None
    heat = render_heat(confidence) if with_heat and confidence is not None and confidence.size else None
    return Preview(instance_id, box, mask, confidence, base_version, colors, diff, heat)
