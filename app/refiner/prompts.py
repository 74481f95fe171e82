"""Masks from prompts: a box or clicks give a coarse mask (a pluggable :class:`CoarseSource`), the refiner refines it.

Every source works on a :class:`Window`: the part of the image the prompt concerns, plus context, resized so its
long side is at most ``max_side``. So an 8000x6000 photo costs what a small one does; the result is pasted back at
full resolution. Sources: :class:`EncoderSource` (the prompt head on the frozen encoder, then GrabCut; the
default), :class:`GrabCutSource` (no weights) and ``app.refiner.sam.SamSource`` (a user's SAM checkpoint). The
front ends call :class:`PromptTool`: ``box`` (a new instance) and ``click`` (one click on a new or existing
instance: one undo step), or ``box_steps`` / ``click_steps`` to animate the refiner's steps.

A click changes the mask only near itself: the coarse source re-segments the window with every click so far as
hard seeds, and only the changes connected to the new click are kept; the refiner then runs with its region
limited to them (``Guidance(region=...)``) and the clicked pixels clamped.

torch is imported only when a model runs, so the front ends may import this module at start-up.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

import cv2
import numpy as np

from app.core import mask_ops
from app.refiner.box_prior import Box, box_area, head_in_box, tightest_fit
from app.refiner.steps import RefineStep

if TYPE_CHECKING:
    from app.refiner.api import Refiner
    from app.refiner.options import RefineOptions
    from app.refiner.pipeline import Guidance

log = logging.getLogger(__name__)

MIN_BOX_SIDE = 4
# Radius of a click's hard seed, as a fraction of the window's long side (at least 2 work pixels).
SEED_RADIUS = 0.012


class PromptError(ValueError):
    """A box or a click that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Click:
    """One click in image pixels: ``positive`` adds to the instance, negative removes from it."""

    x: float
    y: float
    positive: bool = True


def check_image(image: np.ndarray) -> tuple[int, int]:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise PromptError(f"image must be an (H, W, 3) uint8 RGB array, got {desc}")
    return image.shape[0], image.shape[1]


def check_box(box: Sequence[float], shape: tuple[int, int]) -> Box:
    """``box`` (x0, y0, x1, y1; corners in any order) as integers clipped to an (H, W) image.

    Raises :class:`PromptError` for a box that is not four finite numbers, lies outside the image, or is
    thinner than ``MIN_BOX_SIDE`` pixels inside it (an empty or degenerate box).
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise PromptError(f"a box is four numbers x0, y0, x1, y1; got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise PromptError(f"a box is four finite numbers x0, y0, x1, y1; got {box!r}")
    h, w = shape
    x0, x1 = sorted(values[0::2])
    y0, y1 = sorted(values[1::2])
    cx0, cy0, cx1, cy1 = max(0, round(x0)), max(0, round(y0)), min(w, round(x1)), min(h, round(y1))
    if cx1 <= 0 or cy1 <= 0 or cx0 >= w or cy0 >= h or x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise PromptError(f"box {tuple(box)} lies outside the {w}x{h} image")
    if cx1 - cx0 < MIN_BOX_SIDE or cy1 - cy0 < MIN_BOX_SIDE:
        raise PromptError(f"box {tuple(box)} is empty or degenerate: {cx1 - cx0}x{cy1 - cy0} pixels inside the "
                          f"image, at least {MIN_BOX_SIDE}x{MIN_BOX_SIDE} needed")
    return cx0, cy0, cx1, cy1


def check_click(click: Click, shape: tuple[int, int]) -> None:
    h, w = shape
    if not (math.isfinite(click.x) and math.isfinite(click.y) and 0 <= click.x < w and 0 <= click.y < h):
        raise PromptError(f"click at ({click.x}, {click.y}) lies outside the {w}x{h} image")


@dataclass(frozen=True, eq=False)
class Prompt:
    """What a source segments: a box, clicks, and the instance's current mask (full size), each optional."""

    box: Box | None = None
    clicks: tuple[Click, ...] = ()
    previous: np.ndarray | None = None

    @property
    def bounded_by_mask(self) -> bool:
        """True when the prompt carries the instance's current (non-empty) mask."""
        return self.previous is not None and bool(self.previous.any())

    @property
    def bounded(self) -> bool:
        """False for clicks alone on a new instance: nothing says how far the object reaches."""
        return self.box is not None or self.bounded_by_mask

    def extent(self, shape: tuple[int, int]) -> Box:
        """The rectangle the prompt concerns: box, current mask and clicks together."""
        h, w = shape
        xs: list[float] = [c.x for c in self.clicks]
        ys: list[float] = [c.y for c in self.clicks]
        if self.box is not None:
            xs += [self.box[0], self.box[2]]
            ys += [self.box[1], self.box[3]]
        if self.bounded_by_mask:
            x, y, bw, bh = cv2.boundingRect(self.previous.view(np.uint8))
            xs += [x, x + bw]
            ys += [y, y + bh]
        return (max(0, math.floor(min(xs))), max(0, math.floor(min(ys))),
                min(w, math.ceil(max(xs)) + 1), min(h, math.ceil(max(ys)) + 1))


@dataclass(frozen=True)
class Window:
    """A crop of the image (``box``, image pixels) seen at ``size`` (h, w) with its long side bounded."""

    box: Box
    size: tuple[int, int]

    @classmethod
    def around(cls, rect: Box, shape: tuple[int, int], margin: float = 0.15, min_margin: int = 8,
               max_side: int = 320, min_side: int = 0) -> Window:
        """``rect`` grown by ``margin`` x its long side (at least ``min_margin`` px), clipped, its long side
        scaled into ``min_side``..``max_side``."""
        x0, y0, x1, y1 = rect
        h, w = shape
        pad = max(min_margin, round(margin * max(x1 - x0, y1 - y0)))
        box = (max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad))
        ch, cw = box[3] - box[1], box[2] - box[0]
        scale = min(max(1.0, min_side / max(ch, cw)), max_side / max(ch, cw))
        return cls(box, (max(1, round(ch * scale)), max(1, round(cw * scale))))

    @property
    def scale(self) -> tuple[float, float]:
        """Work pixels per image pixel along y and x."""
        return self.size[0] / (self.box[3] - self.box[1]), self.size[1] / (self.box[2] - self.box[0])

    def image(self, image: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        crop = image[y0:y1, x0:x1]
        if crop.shape[:2] == self.size:
            return np.ascontiguousarray(crop)
        shrink = self.size[0] < crop.shape[0]
        return cv2.resize(crop, self.size[::-1], interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        crop = mask[y0:y1, x0:x1]
        if crop.shape == self.size:
            return crop.astype(bool, copy=True)
        shrink = self.size[0] < crop.shape[0]
        return cv2.resize(crop.astype(np.float32), self.size[::-1],
                          interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR) >= 0.5

    def point(self, x: float, y: float) -> tuple[int, int]:
        """An image point on the work grid (clipped inside it)."""
        sy, sx = self.scale
        return (int(np.clip((x - self.box[0]) * sx, 0, self.size[1] - 1)),
                int(np.clip((y - self.box[1]) * sy, 0, self.size[0] - 1)))

    def rect(self, rect: Box) -> Box:
        """An image rectangle on the work grid."""
        sy, sx = self.scale
        x0, y0, x1, y1 = rect
        return (max(0, math.floor((x0 - self.box[0]) * sx)), max(0, math.floor((y0 - self.box[1]) * sy)),
                min(self.size[1], math.ceil((x1 - self.box[0]) * sx)), min(self.size[0], math.ceil((y1 - self.box[1]) * sy)))

    def paste(self, work: np.ndarray, shape: tuple[int, int], base: np.ndarray | None = None) -> np.ndarray:
        """A work-grid map (bool, or float probabilities) as a full-size bool mask; outside the window ``base``."""
        out = np.zeros(shape, bool) if base is None else base.astype(bool, copy=True)
        x0, y0, x1, y1 = self.box
        soft = work.astype(np.float32)
        if soft.shape != (y1 - y0, x1 - x0):
            soft = cv2.resize(soft, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out[y0:y1, x0:x1] = soft >= 0.5
        return out


def prompt_window(prompt: Prompt, shape: tuple[int, int], margin: float = 0.15, max_side: int = 320,
                  min_side: int = 0, click_context: tuple[float, float] | None = None) -> Window:
    """The window a source works on: the prompt's extent plus context, or the whole image for clicks alone.

    ``click_context`` (margin, share) widens the window of clicks on an instance (no box): a square around the
    extent's centre, its side the extent's long side plus ``margin`` of it on each side and at least ``share`` of
    the image's long side. A positive click outside the mask says the object goes on beyond it: a window tight
    around the mask and the clicks cuts the object off, and each click then adds little more than its disc.
    """
    if prompt.bounded and prompt.box is None and prompt.clicks and click_context is not None:
        x0, y0, x1, y1 = prompt.extent(shape)
        wide, share = click_context
        half = max((0.5 + wide) * max(x1 - x0, y1 - y0), 0.5 * share * max(shape))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        rect = (max(0, math.floor(cx - half)), max(0, math.floor(cy - half)),
                min(shape[1], math.ceil(cx + half)), min(shape[0], math.ceil(cy + half)))
        return Window.around(rect, shape, 0.0, 0, max_side=max_side, min_side=min_side)
    if prompt.bounded:
        return Window.around(prompt.extent(shape), shape, margin, max_side=max_side, min_side=min_side)
    h, w = shape
    scale = min(max(1.0, min_side / max(h, w)), max_side / max(h, w))
    return Window((0, 0, w, h), (max(1, round(h * scale)), max(1, round(w * scale))))


# Clicks on an instance: the head's window reaches 0.75 x the extent's long side beyond it on each side, and at
# least 30 % of the image. On the training split (10 instances each of Penn-Fudan and COCO, prompt-head-v1,
# no refiner) NoC@85 fell from 9.8 / 17.1 (the box's 15 % margin) to 7.9 / 12.1; margins 0.4..1.0 and shares
# 0..0.5 gave 10.0..11.6 clicks on the two sets' mean (13.45 before).
CLICK_CONTEXT = (0.75, 0.3)
# The head's probability is the mean of the window's and its mirror image's (test-time augmentation, about 0.05 s
# more per prompt). Held out (benchmarks/bench_prompts.py's instances, prompt-head-v2, no refiner; the first / the
# next instances per set): box -> mask mean IoU, the head alone 82.19 -> 82.85 / 80.73 -> 81.31, head + GrabCut
# 82.45 -> 82.84 / 81.32 -> 81.34; clicks NoC@85 (head + GrabCut, 16 per set) 6.36 -> 6.02 / 8.02 -> 7.94.
FLIP_TTA = True


class CoarseSource(Protocol):
    """Anything that turns a prompt into a coarse full-size bool mask."""

    name: str

    def segment(self, image: np.ndarray, prompt: Prompt) -> np.ndarray: ...


def seed_labels(window: Window, prompt: Prompt, shape: tuple[int, int], probability: np.ndarray | None = None,
                sure: float = 0.97) -> np.ndarray:
    """GrabCut labels on the work grid from a prompt: hard seeds at clicks, the box and current mask as priors.

    Outside the box: definite background. Inside: probable foreground (a box), or the current mask's
    inside / outside as probable foreground / background. With ``probability`` (a model's foreground
    probability on the work grid) its >= 0.5 is probable foreground instead, and beyond ``sure`` (either way)
    definite. Clicks are discs of definite labels; on a new instance prompted by clicks alone, a disc around
    each positive click is probable foreground.
    """
    h, w = window.size
    labels = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    previous = window.mask(prompt.previous) if prompt.bounded_by_mask else None
    radius = max(2, round(SEED_RADIUS * max(h, w)))
    if probability is not None:
        labels[probability >= 0.5] = cv2.GC_PR_FGD
        labels[probability >= sure] = cv2.GC_FGD
        labels[probability <= 1 - sure] = cv2.GC_BGD
    elif previous is not None:
        labels[previous] = cv2.GC_PR_FGD
    elif prompt.box is None:
        for click in prompt.clicks:
            if click.positive:
                cv2.circle(labels, window.point(click.x, click.y), 6 * radius, int(cv2.GC_PR_FGD), -1)
    if prompt.box is not None:
        inside = box_area((h, w), window.rect(prompt.box))
        if probability is None and previous is None:
            labels[inside] = cv2.GC_PR_FGD
        labels[~inside] = cv2.GC_BGD
    for click in prompt.clicks:
        cv2.circle(labels, window.point(click.x, click.y), radius, int(cv2.GC_FGD if click.positive else cv2.GC_BGD), -1)
    if not np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
        # the prompt covers the whole window (a box on the whole image): its border is the background sample
        border = np.ones((h, w), bool)
        border[1:-1, 1:-1] = False
        labels[border & (labels == cv2.GC_PR_FGD)] = cv2.GC_PR_BGD
    return labels


def run_grabcut(work_rgb: np.ndarray, labels: np.ndarray, iterations: int, seed: int = 0) -> np.ndarray:
    """GrabCut (OpenCV) from ``labels``; the bool foreground, or the labels' foreground when GrabCut cannot run."""
    fgd, bgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    out = labels.copy()
    cv2.setRNGSeed(seed)
    try:
        cv2.grabCut(work_rgb, out, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:  # too few pixels of one kind to fit a colour model
        log.info("GrabCut could not run (%s); keeping the prompt's own labels", exc.err)
        out = labels
    return (out == cv2.GC_FGD) | (out == cv2.GC_PR_FGD)


def drop_specks(mask: np.ndarray, keep: Sequence[tuple[int, int]] = (), fraction: float = 0.05) -> np.ndarray:
    """Connected parts under ``fraction`` of the largest one removed, except those holding a point of ``keep``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = np.zeros(count, bool)
    kept[1:] = areas >= fraction * areas.max()
    for x, y in keep:
        kept[labels[y, x]] = labels[y, x] != 0
    return kept[labels]


@dataclass
class GrabCutSource:
    """Classical coarse masks, no weights: OpenCV GrabCut initialised from the box / clicks / current mask.

    Small windows are enlarged to ``min_side``: GrabCut's smoothness term is per pixel, and on a window of a few
    dozen pixels it wipes out the object (on held-out COCO boxes: 17 % IoU at native size, 42 % at 256).
    """

    max_side: int = 320
    min_side: int = 256
    margin: float = 0.15
    iterations: int = 5
    seed: int = 0
    name: str = "grabcut"

    def segment(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        shape = check_image(image)
        window = prompt_window(prompt, shape, self.margin, self.max_side, self.min_side)
        labels = seed_labels(window, prompt, shape)
        fg = run_grabcut(window.image(image), labels, self.iterations, self.seed)
        fg = drop_specks(fg, [window.point(c.x, c.y) for c in prompt.clicks if c.positive])
        return window.paste(fg, shape)


@dataclass
class EncoderSource:
    """Coarse masks from the prompt head on the frozen EfficientNet-Lite0 features (app/refiner/prompt_head.py).

    The head sees the window on a ``canvas``-sized square with the prompt drawn on it and gives a foreground
    probability at stride 4; with ``grabcut`` (the default) GrabCut, seeded by that probability (its sure parts
    as definite labels), then places the boundary on the colour edges of the work grid. ``heads`` are the
    weights files of the heads whose probabilities are averaged (empty: the shipped ``DEFAULT_PROMPT_HEADS``).
    """

    heads: tuple[Path, ...] = ()
    grabcut: bool = True
    max_side: int = 320
    min_side: int = 256
    iterations: int = 3
    seed: int = 0
    name: str = "encoder"
    click_context: tuple[float, float] | None = CLICK_CONTEXT
    flip: bool = FLIP_TTA

    def __post_init__(self) -> None:
        self.heads = tuple(self.heads)  # any sequence of files; the loaded heads are cached by it, so hashable

    def load(self) -> None:
        """Load the heads and the encoder now (the first prompt would), so a bad weights file fails before any work."""
        _prompt_heads(self.heads)

    def probability(self, image: np.ndarray, prompt: Prompt) -> tuple[Window, np.ndarray]:
        """The window and the heads' mean foreground probability on its work grid (float32)."""
        from app.refiner.prompt_head import predict, prompt_channels

        shape = check_image(image)
        heads, encoder = _prompt_heads(self.heads)
        size = heads[0].config.canvas
        window = prompt_window(prompt, shape, max_side=self.max_side, min_side=self.min_side,
                               click_context=self.click_context)
        canvas_window = Window(window.box, (size, size))
        canvas = canvas_window.image(image)
        prior = None
        if prompt.bounded_by_mask:
            prior = canvas_window.mask(prompt.previous).astype(np.float32)
        elif prompt.box is not None:
            prior = np.zeros((size, size), np.float32)
            sy, sx = canvas_window.scale
            x0, y0, x1, y1 = prompt.box
            wx0, wy0 = window.box[:2]
            prior[max(0, round((y0 - wy0) * sy)):round((y1 - wy0) * sy), max(0, round((x0 - wx0) * sx)):round((x1 - wx0) * sx)] = 1.0
        sy, sx = canvas_window.scale

        def on_canvas(positive: bool) -> list[tuple[float, float]]:
            return [((c.x - window.box[0]) * sx, (c.y - window.box[1]) * sy) for c in prompt.clicks if c.positive == positive]

        channels = prompt_channels(size, prior, on_canvas(True), on_canvas(False))
        prob = predict(heads, encoder, canvas[None], channels[None], flip=self.flip)[0]
        return window, cv2.resize(prob, window.size[::-1], interpolation=cv2.INTER_LINEAR)

    def segment(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        shape = check_image(image)
        window, prob = self.probability(image, prompt)
        if self.grabcut:
            work = window.image(image)
            labels = seed_labels(window, prompt, shape, prob)
            fg = run_grabcut(work, labels, self.iterations, self.seed)
            if prompt.box is not None and not prompt.clicks and not prompt.bounded_by_mask:
                fg = tightest_fit(window.rect(prompt.box), fg, prob, lambda: run_grabcut(
                    work, seed_labels(window, prompt, shape), self.iterations, self.seed))
        else:
            fg = prob >= 0.5 if prompt.box is None else head_in_box(prob, window.rect(prompt.box))
        fg = drop_specks(fg, [window.point(c.x, c.y) for c in prompt.clicks if c.positive])
        return window.paste(fg, shape)


# Two heads, their probabilities averaged (an ensemble on one pass of the encoder; docs/decisions/0017): each alone
# scored within the noise of the other; together, held out with band-v2, box -> mask 83.78 -> 84.65 (the next
# boxes 82.56 -> 84.84; paired over 256 boxes +1.42 IoU [+0.60, +2.35]) and NoC@85 5.67 -> 5.70 (+0.09 clicks
# [-0.23, +0.41] over 128 sequences).
DEFAULT_PROMPT_HEADS = ("prompt-head-v2.safetensors", "prompt-head-wide-v1.safetensors")


@lru_cache(maxsize=2)
def _prompt_heads(paths: tuple[Path, ...]):  # noqa: ANN202 - (heads, LiteEncoder), torch kept import-light
    from app.refiner.encoder import pretrained_encoder
    from app.refiner.prompt_head import load_heads
    from app.refiner.weights import PACKAGE_WEIGHTS_DIR

    return load_heads(paths or tuple(PACKAGE_WEIGHTS_DIR / name for name in DEFAULT_PROMPT_HEADS)), pretrained_encoder()


def click_region(before: np.ndarray, after: np.ndarray, click: Click, radius: int) -> np.ndarray:
    """Where a click may change the mask: the changes connected to a disc around it, and the disc."""
    disc = np.zeros(before.shape, np.uint8)
    cv2.circle(disc, (round(click.x), round(click.y)), radius, 1, -1)
    changed = (before != after).astype(np.uint8)
    count, labels = cv2.connectedComponents(changed | disc, connectivity=8)
    touched = np.unique(labels[disc > 0])
    return np.isin(labels, touched[touched != 0])


@dataclass
class PromptResult:
    """A prompt's outcome: the coarse mask, the final (refined) mask, and where a click allowed changes."""

    coarse: np.ndarray
    mask: np.ndarray
    region: np.ndarray | None = None


@dataclass
class PromptTool:
    """A coarse source, optionally followed by the refiner: the box and click tools of the window and the CLI.

    ``refiner`` is an :class:`app.refiner.api.Refiner` (or None: the coarse mask is the result); ``options``
    its :class:`app.refiner.api.RefineOptions` (instance mode).
    """

    source: CoarseSource = field(default_factory=EncoderSource)
    refiner: Refiner | None = None
    options: RefineOptions | None = None
    box_slack: float = 0.03

    def box_steps(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, Iterator[RefineStep] | None]:
        """The coarse mask of a box, and the refiner's steps on it (None without a refiner)."""
        shape = check_image(image)
        clipped = check_box(box, shape)
        coarse = self.source.segment(image, Prompt(box=clipped))
        if self.refiner is None:
            return coarse, None
        from app.refiner.pipeline import Guidance
        x0, y0, x1, y1 = clipped
        pad = max(2, round(self.box_slack * max(x1 - x0, y1 - y0)))
        region = np.zeros(shape, bool)
        region[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = True
        return coarse, self._run(image, coarse, Guidance(region=region))

    def box(self, image: np.ndarray, box: Sequence[float]) -> PromptResult:
        """A new instance's mask from a box (coarse, then refined)."""
        coarse, steps = self.box_steps(image, box)
        return PromptResult(coarse, _last(steps, coarse))

    def click_steps(self, image: np.ndarray, current: np.ndarray | None, clicks: Sequence[Click]
                    ) -> tuple[np.ndarray, np.ndarray, Iterator[RefineStep] | None]:
        """The coarse mask after the last of ``clicks`` (the others stay as seeds), its region, and the refiner's steps.

        ``current`` is the instance's mask before the click (None or empty for a new instance).
        """
        shape = check_image(image)
        if not clicks:
            raise PromptError("no click given")
        for click in clicks:
            check_click(click, shape)
        before = np.zeros(shape, bool) if current is None else np.asarray(current, bool)
        if before.shape != shape:
            raise PromptError(f"the instance's mask has shape {before.shape}, the image is {shape}")
        proposal = self.source.segment(image, Prompt(clicks=tuple(clicks), previous=before))
        last = clicks[-1]
        radius = self._seed_radius(before, proposal)
        # Everything below lies within the masks' and the click's extent plus the grown region's margin: work on
        # that rectangle only (on a large photo the full-size arrays cost seconds; the results are the same).
        rows, cols = _extent(shape, [before, proposal], last, 2 * radius + 2)
        local = click_region(before[rows, cols], proposal[rows, cols],
                             Click(round(last.x) - cols.start, round(last.y) - rows.start, last.positive), radius)
        region = np.zeros(shape, bool)
        region[rows, cols] = local
        coarse = before.copy()
        coarse[rows, cols] = np.where(local, proposal[rows, cols], before[rows, cols])
        seeds = [_discs(shape, clicks, positive, radius) for positive in (True, False)]
        coarse = (coarse | seeds[0]) & ~seeds[1]
        if self.refiner is None:
            return coarse, region, None
        from app.refiner.pipeline import Guidance

        grown = np.zeros(shape, bool)
        near_rows, near_cols = _extent(shape, [region], last, 2 * radius + 1)
        grown[near_rows, near_cols] = cv2.dilate(region[near_rows, near_cols].view(np.uint8), _disk(radius * 2)) > 0
        guidance = Guidance(region=grown, foreground=seeds[0], background=seeds[1])
        return coarse, region, self._run(image, coarse, guidance)

    def click(self, image: np.ndarray, current: np.ndarray | None, clicks: Sequence[Click]) -> PromptResult:
        """The instance's mask after the last of ``clicks``: one undo step in the window."""
        coarse, region, steps = self.click_steps(image, current, clicks)
        return PromptResult(coarse, _last(steps, coarse), region)

    @staticmethod
    def _seed_radius(before: np.ndarray, after: np.ndarray) -> int:
        """A click's disc: 3 % of the object's size, 3..12 px."""
        area = max(cv2.countNonZero(before.view(np.uint8)), cv2.countNonZero(after.view(np.uint8)))
        return int(np.clip(0.03 * math.sqrt(area), 3, 12))

    def _run(self, image: np.ndarray, coarse: np.ndarray, guidance: Guidance) -> Iterator[RefineStep]:
        from app.refiner.options import RefineOptions

        options = self.options or RefineOptions()
        assert self.refiner is not None
        return self.refiner.run(image, [coarse], options, guidance)


def _discs(shape: tuple[int, int], clicks: Sequence[Click], positive: bool, radius: int) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for click in clicks:
        if click.positive == positive:
            cv2.circle(out, (round(click.x), round(click.y)), radius, 1, -1)
    return out > 0


def _extent(shape: tuple[int, int], masks: Sequence[np.ndarray], click: Click, margin: int) -> tuple[slice, slice]:
    """(rows, columns) of the image holding every pixel of ``masks`` and ``click``, plus ``margin`` on each side."""
    x, y = round(click.x), round(click.y)
    rect: Box | None = (x, y, x + 1, y + 1)
    for mask in masks:
        rect = mask_ops.union_rect(rect, mask_ops.mask_bbox(mask))
    assert rect is not None
    grown = mask_ops.grow_rect(rect, margin, shape)
    assert grown is not None  # the click is inside the image
    return slice(grown[1], grown[3]), slice(grown[0], grown[2])


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _last(steps: Iterator[RefineStep] | None, coarse: np.ndarray) -> np.ndarray:
    if steps is None:
        return coarse
    final = None
    for final in steps:
        pass
    return coarse if final is None else final.mask(0, base=coarse)


def error_clicks(prediction: np.ndarray, truth: np.ndarray, count: int = 1) -> list[Click]:
    """The interactive-segmentation protocol's next clicks: one at the centre of each of the ``count`` largest
    error regions (connected parts of missed or extra pixels), largest first.

    The centre is the pixel farthest from the region's edge (and from the image border); a missed region gets
    a positive click, an extra one a negative click. Used by the benchmark to click automatically.
    """
    regions: list[tuple[int, Click]] = []
    for wrong, positive in ((truth & ~prediction, True), (prediction & ~truth, False)):
        count_, labels, stats, _ = cv2.connectedComponentsWithStats(wrong.astype(np.uint8), connectivity=8)
        for k in range(1, count_):
            x, y, w, h = stats[k, :4]
            part = np.pad(labels[y:y + h, x:x + w] == k, 1).astype(np.uint8)
            distance = cv2.distanceTransform(part, cv2.DIST_L2, 5)
            cy, cx = np.unravel_index(int(np.argmax(distance)), distance.shape)
            regions.append((int(stats[k, cv2.CC_STAT_AREA]), Click(float(x + cx - 1), float(y + cy - 1), positive)))
    regions.sort(key=lambda r: -r[0])
    return [click for _, click in regions[:count]]
