"""An instance on the band network's two grids, and the cues it reads: the same code for training and inference.

A :class:`Frame` is the crop around a coarse mask (its box plus context) seen at two scales: the *work grid* (the
crop at native resolution, capped at ``max_work`` pixels on its long side) where the mask is decided, and the
*context grid* (the crop resized, aspect kept, onto a square canvas) that the encoder sees. :class:`InstanceCues`
holds what is computed once per instance: the canvas image, GrabCut's result and colour posterior. Per reverse
step, :func:`context_cues` and :func:`gather_tiles` turn the current mask into the network's inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from app.core.classical import ColourTable, grabcut_fit
from app.core.mask_ops import Rect as Box
from app.refiner.band_net import HALO, BandConfig

# ImageNet statistics on the 0-255 scale for the head's native RGB input.
RGB_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
RGB_STD = np.array([58.395, 57.12, 57.375], np.float32)
SDF_SCALE_WORK = 16.0
SDF_SCALE_CONTEXT = 8.0
GRABCUT_ITERATIONS = 3
# GrabCut runs on the context crop shrunk to this side: its colour models need a sample, not every pixel.
GRABCUT_SIDE = 160


@dataclass(frozen=True)
class Frame:
    """Where an instance's crop lies in the image and how big it is on each grid."""

    box: Box
    work: tuple[int, int]
    content: tuple[int, int]
    canvas: int

    @property
    def crop_size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0

    @property
    def work_scale(self) -> float:
        return self.work[0] / self.crop_size[0]


def object_size(mask: np.ndarray) -> float:
    """Side of the square with the mask's area: the length scale of an object."""
    return math.sqrt(float(cv2.countNonZero(mask.view(np.uint8))))


def frame_for(mask: np.ndarray, canvas: int, pad_ratio: float = 0.25, min_pad: int = 16,
              max_work: int | None = 512, extra: Box | None = None) -> Frame | None:
    """The frame of a coarse mask: its box grown by ``pad_ratio`` x object size (at least ``min_pad``).

    ``extra`` (a box in image pixels, e.g. a foreground constraint) is included. None for an empty mask.
    """
    x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    if bw == 0:
        return None
    x0, y0, x1, y1 = x, y, x + bw, y + bh
    if extra is not None:
        x0, y0, x1, y1 = min(x0, extra[0]), min(y0, extra[1]), max(x1, extra[2]), max(y1, extra[3])
    pad = max(min_pad, round(pad_ratio * object_size(mask)))
    h, w = mask.shape
    box = (max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad))
    return frame_of_box(box, canvas, max_work)


def frame_of_box(box: Box, canvas: int, max_work: int | None) -> Frame:
    x0, y0, x1, y1 = box
    ch, cw = y1 - y0, x1 - x0
    scale = 1.0 if max_work is None else min(1.0, max_work / max(ch, cw))
    work = (max(1, round(ch * scale)), max(1, round(cw * scale)))
    fit = canvas / max(ch, cw)
    content = (max(1, min(canvas, round(ch * fit))), max(1, min(canvas, round(cw * fit))))
    return Frame(box, work, content, canvas)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 image to (h, w): area when shrinking, bilinear when growing."""
    h, w = size
    if image.shape[:2] == (h, w):
        return np.ascontiguousarray(image)
    shrink = h < image.shape[0] and w < image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bool mask to (h, w): area/bilinear then >= 0.5."""
    if mask.shape == size:
        return mask.astype(bool, copy=True)
    return resize_image(mask.astype(np.float32), size) >= 0.5


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance to the mask's boundary in pixels (positive inside), float32."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)
    return inside - outside


@dataclass
class InstanceCues:
    """What an instance's refinement computes once: the two grids' images, GrabCut on the context grid."""

    frame: Frame
    work_rgb: np.ndarray
    canvas_rgb: np.ndarray
    valid: np.ndarray
    grabcut: np.ndarray
    colour: np.ndarray
    table: ColourTable | None

    def work_colour(self, patch: np.ndarray) -> np.ndarray:
        """GrabCut's colour posterior of uint8 RGB pixels (0.5 everywhere when GrabCut could not run)."""
        if self.table is None:
            return np.full(patch.shape[:2], 0.5, np.float32)
        return self.table(patch)


def instance_cues(image: np.ndarray, coarse: np.ndarray, frame: Frame, seed: int = 0) -> InstanceCues:
    """Crop ``image`` (uint8 RGB, full size) to the frame on both grids and fit GrabCut from ``coarse`` (full size)."""
    x0, y0, x1, y1 = frame.box
    crop = image[y0:y1, x0:x1]
    work_rgb = resize_image(crop, frame.work)
    content_rgb = resize_image(crop, frame.content)
    content_coarse = resize_mask(coarse[y0:y1, x0:x1], frame.content)
    hc, wc = frame.content
    canvas_rgb = np.zeros((frame.canvas, frame.canvas, 3), np.uint8)
    canvas_rgb[:hc, :wc] = content_rgb
    valid = np.zeros((frame.canvas, frame.canvas), np.float32)
    valid[:hc, :wc] = 1.0
    shrink = min(1.0, GRABCUT_SIDE / max(hc, wc))
    small = (max(1, round(hc * shrink)), max(1, round(wc * shrink)))
    small_coarse = resize_mask(content_coarse, small)
    fit = grabcut_fit(resize_image(content_rgb, small), small_coarse, object_size(small_coarse), GRABCUT_ITERATIONS,
                      seed=seed)
    grabcut = np.zeros_like(valid)
    colour = np.zeros_like(valid)
    table = None
    if fit is None:
        grabcut[:hc, :wc] = content_coarse
        colour[:hc, :wc] = 0.5
    else:
        grabcut[:hc, :wc] = resize_image(fit.mask.astype(np.float32), frame.content)
        table = fit.posterior_table()
        colour[:hc, :wc] = table(content_rgb)
    return InstanceCues(frame, work_rgb, canvas_rgb, valid, grabcut, colour, table)


def context_cues(cues: InstanceCues, mask_work: np.ndarray, t: int, config: BandConfig) -> np.ndarray:
    """The context grid's input channels (C, S, S) for the current mask on the work grid."""
    frame = cues.frame
    hc, wc = frame.content
    soft = np.zeros_like(cues.valid)
    soft[:hc, :wc] = resize_image(mask_work.astype(np.float32), frame.content)
    sdf = np.zeros_like(cues.valid)
    sdf[:hc, :wc] = np.tanh(signed_distance(soft[:hc, :wc] >= 0.5) / SDF_SCALE_CONTEXT)
    channels = [soft, cues.valid, np.full_like(soft, timestep_value(t, config))]
    named = {"sdf": sdf, "grabcut": cues.grabcut, "colour": cues.colour}
    channels += [named[c] for c in config.cues]
    return np.stack(channels).astype(np.float32)


def timestep_value(t: int, config: BandConfig) -> float:
    return t / max(1, config.num_timesteps - 1)


@dataclass
class TileBatch:
    """Head inputs for tiles of one instance: origins on the work grid, inputs, canvas sampling grids."""

    origins: list[tuple[int, int]]
    inputs: torch.Tensor
    grids: torch.Tensor


def canvas_grid(frame: Frame, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Normalized canvas coordinates (h, w, 2) of work-grid pixel centres (rows ``ys``, columns ``xs``)."""
    ry = frame.content[0] / frame.work[0]
    rx = frame.content[1] / frame.work[1]
    gy = 2.0 * (ys.astype(np.float32) + 0.5) * ry / frame.canvas - 1.0
    gx = 2.0 * (xs.astype(np.float32) + 0.5) * rx / frame.canvas - 1.0
    return np.stack(np.broadcast_arrays(gx[None, :], gy[:, None]), axis=-1).astype(np.float32)


def gather_tiles(cues: InstanceCues, mask_work: np.ndarray, sdf_work: np.ndarray, t: int, config: BandConfig,
                 origins: list[tuple[int, int]]) -> TileBatch:
    """Head inputs for the tiles whose output corner is at each (y, x) of ``origins`` on the work grid.

    Each input covers the tile plus HALO pixels on every side, edge-replicated beyond the work grid, so the
    head's valid convolutions give exactly the tile.
    """
    side = config.tile + 2 * HALO
    h, w = mask_work.shape
    n = len(origins)
    oy = np.array([o[0] for o in origins], np.int64)
    ox = np.array([o[1] for o in origins], np.int64)
    ys = np.clip(oy[:, None] - HALO + np.arange(side)[None, :], 0, h - 1)  # (n, side)
    xs = np.clip(ox[:, None] - HALO + np.arange(side)[None, :], 0, w - 1)
    rows, cols = ys[:, :, None], xs[:, None, :]
    rgb = cues.work_rgb[rows, cols]  # (n, side, side, 3) uint8
    channels = {
        "rgb": ((rgb.astype(np.float32) - RGB_MEAN) / RGB_STD).transpose(0, 3, 1, 2),
        "mask": mask_work[rows, cols][:, None].astype(np.float32),
        "t": np.full((n, 1, side, side), timestep_value(t, config), np.float32),
        "sdf": np.tanh(sdf_work[rows, cols] / SDF_SCALE_WORK)[:, None],
        "grabcut": np.zeros((n, 1, side, side), np.float32),  # sampled from the canvas below
        "colour": cues.work_colour(rgb)[:, None],
    }
    inputs = np.concatenate([channels[c] for c in ("rgb", "mask", "t", *config.cues)], axis=1)
    ry = cues.frame.content[0] / cues.frame.work[0]
    rx = cues.frame.content[1] / cues.frame.work[1]
    gy = 2.0 * (ys.astype(np.float32) + 0.5) * ry / cues.frame.canvas - 1.0
    gx = 2.0 * (xs.astype(np.float32) + 0.5) * rx / cues.frame.canvas - 1.0
    grids = np.stack(np.broadcast_arrays(gx[:, None, :], gy[:, :, None]), axis=-1).astype(np.float32)
    batch = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    grid = torch.from_numpy(grids)
    if "grabcut" in config.cues and n:
        at = 5 + config.cues.index("grabcut")
        canvas = torch.from_numpy(cues.grabcut)[None, None]
        sampled = torch.nn.functional.grid_sample(canvas, grid.reshape(1, n * side, side, 2), mode="bilinear",
                                                  padding_mode="border", align_corners=False)
        batch[:, at] = sampled.reshape(n, side, side)
    return TileBatch(list(origins), batch, grid)


def band_cells(mask_work: np.ndarray, sdf_work: np.ndarray, coarse_band: np.ndarray, grabcut_work: np.ndarray,
               width: float, tile: int) -> list[tuple[int, int]]:
    """Origins of the work-grid tiles that hold the boundary band.

    The band: pixels within ``width`` of the current mask's boundary, the coarse mask's band ``coarse_band``
    (computed once per instance with :func:`near_boundary`), and where GrabCut's result disagrees with the
    current mask. The work grid is cut into ``tile`` x ``tile`` cells (the last row and column shifted inwards so
    every cell lies inside); a cell with any band pixel is refined.
    """
    band = (np.abs(sdf_work) <= width) | coarse_band | (grabcut_work != mask_work)
    h, w = band.shape
    cells = []
    for y0 in _cell_starts(h, tile):
        for x0 in _cell_starts(w, tile):
            if band[y0 : y0 + tile, x0 : x0 + tile].any():
                cells.append((y0, x0))
    return cells


def near_boundary(mask: np.ndarray, width: float) -> np.ndarray:
    """Pixels within ``width`` of the mask's boundary, on either side."""
    return np.abs(signed_distance(mask)) <= width


def _cell_starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile))
    return starts + [length - tile]


def band_width(mask_work: np.ndarray) -> float:
    """How far from the boundary the band reaches on the work grid: 12 % of the object's size, 6..40 px."""
    return float(np.clip(0.12 * object_size(mask_work), 6.0, 40.0))
