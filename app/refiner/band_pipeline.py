"""Refinement with the band network: SegRefiner's reverse diffusion over an instance's boundary band.

Per instance: the frame (box + context), the frozen encoder's features of the context canvas and GrabCut's cues are
computed once; then each of the T reverse steps runs the context decoder on the current mask, the head on the
work-grid tiles of the boundary band, and SegRefiner's reverse step (confidence-based flips) on the whole work grid,
where pixels outside the band keep their label. Every step is yielded as a :class:`RefineStep`, exactly as the
U-Net pipelines do, so the window animates, stops and scrubs it the same way.

``max_work`` picks the mode: 512 (instance mode: the crop at native resolution up to 512 px on its long side) or
None (HR mode: native resolution whatever the size; only the band's tiles are computed, so cost follows the
boundary's length, not the image's area).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from app.core.classical import snap_to_edges
from app.refiner.band_frame import (
    Frame,
    InstanceCues,
    band_cells,
    band_width,
    context_cues,
    frame_for,
    gather_tiles,
    instance_cues,
    near_boundary,
    resize_mask,
    signed_distance,
)
from app.refiner.band_net import HALO, BandConfig, BandNet, encoder_features, sample_context
from app.refiner.device import autocast_dtype
from app.refiner.diffusion import ReverseState, Schedule, reverse_step
from app.refiner.encoder import LiteEncoder
from app.refiner.pipeline import (
    NO_GUIDANCE,
    Guidance,
    apply_guidance_grid,
    check_inputs,
    mask_box,
    passthrough,
    patch_result,
)
from app.refiner.steps import MaskPatch, RefineStep

log = logging.getLogger(__name__)

INSTANCE_MAX_WORK = 512
# The last step's moved boundary is snapped to the image's colour edges (app/core/classical.py, snap_to_edges) on work
# grids up to this side: every instance-mode grid, HR crops up to this size (GrabCut's cost grows with the area).
SNAP_MAX_SIDE = 768


@dataclass
class BandSettings:
    """Band pipeline settings. ``max_work`` None is HR mode (native resolution)."""

    steps: int = 6
    min_area: int = 512
    batch_size: int = 8
    seed: int = 0
    deterministic: bool = True
    keep_native: bool = True
    max_work: int | None = INSTANCE_MAX_WORK
    pad_ratio: float = 0.25
    snap: bool = True


class BandRunner:
    """The band network and its frozen encoder on a device, run without autograd (autocast on GPUs)."""

    def __init__(self, net: BandNet, encoder: LiteEncoder, device: torch.device, precision: str = "auto",
                 max_tiles: int = 256, compile: bool = False) -> None:
        self.device = device
        self.net = net.to(device).eval()
        self.encoder = encoder.to(device).eval()
        self.dtype = autocast_dtype(device, precision)
        self.max_tiles = max_tiles
        # Instances per batch: a GPU is mostly idle on a few; on a CPU larger batches gain nothing (README figures).
        self.batch_size = 32 if device.type == "cuda" else 8
        # What the runner fell back from, for the window to report: a failed compile. (The U-Net Runner also halves
        # its batch on out-of-memory; the band network's memory is bounded by max_tiles per head call.)
        self.fallbacks: list[str] = []
        self._context, self._head = self.net.context, self.net.head
        if compile:
            # Dynamic shapes: the number of instances and of tiles changes every step. On 2 CPU cores the first
            # call compiles for about a minute, then an instance costs ~12 % less (benchmarks/bench_refine.py).
            self._context = torch.compile(self.net.context, dynamic=True)
            self._head = torch.compile(self.net.head, dynamic=True)

    @property
    def config(self) -> BandConfig:
        return self.net.config

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.dtype):
                yield

    @torch.inference_mode()
    def project(self, canvases: np.ndarray) -> list[torch.Tensor]:
        """Projected encoder features of (B, S, S, 3) uint8 canvases."""
        x = torch.from_numpy(canvases).permute(0, 3, 1, 2).float().to(self.device)
        with self._autocast():
            return self.net.project_features(encoder_features(self.encoder, x))

    @torch.inference_mode()
    def step(self, projected: list[torch.Tensor], context: np.ndarray, tiles: torch.Tensor, grids: torch.Tensor,
             counts: list[int]) -> torch.Tensor:
        """Head corrections (N, 1, tile, tile) float32 on the CPU for the tiles of a batch of instances.

        ``counts[b]`` tiles in a row belong to instance b.
        """
        try:
            return self._step(projected, context, tiles, grids, counts)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to the plain network
            if self._context is self.net.context:
                raise
            message = f"compiling the network failed, running it uncompiled ({type(error).__name__}: {error})"
            log.warning("%s", message)
            self.fallbacks.append(message)
            self._context, self._head = self.net.context, self.net.head
            return self._step(projected, context, tiles, grids, counts)

    def _step(self, projected: list[torch.Tensor], context: np.ndarray, tiles: torch.Tensor, grids: torch.Tensor,
              counts: list[int]) -> torch.Tensor:
        with self._autocast():
            features = self._context(projected, torch.from_numpy(context).to(self.device))
            sampled = sample_context(features, counts, grids.to(self.device))
            out = [self._head(tiles[start : start + self.max_tiles].to(self.device),
                              sampled[start : start + self.max_tiles].to(features.dtype)).float().cpu()
                   for start in range(0, tiles.shape[0], self.max_tiles)]
        side = tiles.shape[-1] - 2 * HALO
        return torch.cat(out) if out else torch.zeros(0, 1, side, side)


@dataclass
class _Instance:
    index: int
    frame: Frame
    cues: InstanceCues
    coarse_work: np.ndarray
    coarse_band: np.ndarray
    width: float
    grabcut_work: np.ndarray
    guide: dict[str, torch.Tensor | None]
    state: ReverseState


def refine_band(
    runner: BandRunner,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    settings: BandSettings | None = None,
    guidance: Guidance = NO_GUIDANCE,
) -> Iterator[RefineStep]:
    """Refine masks with the band network, yielding a ``RefineStep`` per reverse step per batch of instances.

    Masks under ``min_area`` pixels pass through unchanged (``skipped=True`` in the first yield).
    """
    settings = settings or BandSettings()
    shape = check_inputs(image, masks)
    guidance.check(shape)
    _schedule, indices = _timesteps(runner, settings)
    stage = "instance" if settings.max_work is not None else "local"
    masks = [np.asarray(m, dtype=bool) for m in masks]
    fg_box = mask_box(guidance.foreground, 0, shape) if guidance.foreground is not None else None
    todo, skipped = _frames(masks, settings, runner.config.context, fg_box)
    if not todo:
        yield RefineStep(1, 1, stage, indices[-1], shape, skipped, [passthrough(masks[i], shape) for i in skipped], True)
        return
    batches = [todo[k : k + settings.batch_size] for k in range(0, len(todo), settings.batch_size)]
    total = len(batches) * len(indices)
    generator = torch.Generator().manual_seed(settings.seed)
    step = 0
    for batch_no, batch in enumerate(batches):
        instances = [_prepare(image, masks[i], i, frame, guidance, settings.seed) for i, frame in batch]
        for k, t, results in _reverse(runner, instances, [masks[i] for i, _ in batch], guidance, settings, generator):
            step += 1
            extra = skipped if batch_no == 0 and k == 0 else []
            yield RefineStep(
                step=step,
                total=total,
                stage=stage,
                timestep=t,
                image_size=shape,
                indices=[inst.index for inst in instances] + extra,
                results=results + [passthrough(masks[i], shape) for i in extra],
                final=k == len(indices) - 1,
            )


def refine_band_images(
    runner: BandRunner,
    jobs: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]],
    settings: BandSettings | None = None,
) -> list[dict[int, MaskPatch]]:
    """The final patch of every mask of every (image, masks) job, the instances of all jobs batched together.

    For refining a dataset headless: an image holds a few instances on average, which leaves a GPU mostly idle
    when each image is a batch of its own; here a batch fills up across images. No guidance, no intermediate steps.
    With the deterministic reverse (the band network's default) the masks come out as :func:`refine_band` gives
    them one image at a time: each instance is computed independently of its batch-mates. (The stochastic reverse
    draws from one generator for the whole call, so its samples differ from a per-image run's.)
    """
    settings = settings or BandSettings()
    out: list[dict[int, MaskPatch]] = []
    todo: list[tuple[int, int, Frame]] = []
    images, coarse = [], []
    for job, (image, masks) in enumerate(jobs):
        shape = check_inputs(image, masks)
        masks = [np.asarray(m, dtype=bool) for m in masks]
        images.append(image)
        coarse.append(masks)
        frames, skipped = _frames(masks, settings, runner.config.context, None)
        out.append({i: passthrough(masks[i], shape) for i in skipped})
        todo += [(job, i, frame) for i, frame in frames]
    generator = torch.Generator().manual_seed(settings.seed)
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        instances = [_prepare(images[j], coarse[j][i], i, frame, NO_GUIDANCE, settings.seed) for j, i, frame in batch]
        final: list[MaskPatch] = []
        for _k, _t, results in _reverse(runner, instances, [coarse[j][i] for j, i, _ in batch], NO_GUIDANCE, settings,
                                        generator):
            final = results
        for (j, i, _frame), patch in zip(batch, final):
            out[j][i] = patch
    return out


def _frames(masks: Sequence[np.ndarray], settings: BandSettings, context: int,
            fg_box: tuple[int, int, int, int] | None) -> tuple[list[tuple[int, Frame]], list[int]]:
    """(index, frame) of each mask large enough to refine, and the indices of the others (passed through)."""
    todo, skipped = [], []
    for i, mask in enumerate(masks):
        frame = None
        if cv2.countNonZero(mask.view(np.uint8)) >= max(1, settings.min_area):
            frame = frame_for(mask, context, settings.pad_ratio, max_work=settings.max_work, extra=fg_box)
        if frame is None:
            skipped.append(i)
        else:
            todo.append((i, frame))
    return todo, skipped


def _timesteps(runner: BandRunner, settings: BandSettings) -> tuple[Schedule, list[int]]:
    """The network's schedule and the code-t of each of the ``settings.steps`` reverse steps."""
    schedule = Schedule(num_timesteps=runner.config.num_timesteps)
    return schedule, schedule.indices(min(settings.steps, runner.config.num_timesteps))


def _reverse(runner: BandRunner, instances: list[_Instance], coarse: list[np.ndarray], guidance: Guidance,
             settings: BandSettings, generator: torch.Generator) -> Iterator[tuple[int, int, list[MaskPatch]]]:
    """SegRefiner's reverse process on a batch of prepared instances: (k, code-t, each instance's patch) per step."""
    schedule, indices = _timesteps(runner, settings)
    projected = runner.project(np.stack([inst.cues.canvas_rgb for inst in instances]))
    for k, t in enumerate(indices):
        last = k == len(indices) - 1
        logits = _band_logits(runner, projected, instances, t)
        results: list[MaskPatch] = []
        for inst, logit, mask in zip(instances, logits, coarse):
            conf = reverse_step(inst.state, logit, t, last, schedule, generator, settings.deterministic)
            if last and settings.snap and max(inst.frame.work) <= SNAP_MAX_SIDE:
                inst.state.mask = _snapped(inst, settings.seed)
            inst.state.mask = apply_guidance_grid(inst.state.mask, inst.state.coarse, inst.guide)
            kept = inst.state.coarse if settings.keep_native else None
            results.append(patch_result(inst.state.mask, conf, mask, inst.frame.box, guidance, k + 1, coarse_grid=kept))
        yield k, t, results


def _snapped(inst: _Instance, seed: int) -> torch.Tensor:
    """The last step's soft mask with the boundary it moved snapped to the image's edges (on the work grid)."""
    soft = inst.state.mask[0, 0].numpy()
    refined = soft >= 0.5
    snapped = snap_to_edges(inst.cues.work_rgb, refined, inst.state.coarse[0, 0].numpy() >= 0.5, seed=seed)
    return torch.from_numpy(np.where(snapped != refined, snapped.astype(np.float32), soft))[None, None]


def _prepare(image: np.ndarray, mask: np.ndarray, index: int, frame: Frame, guidance: Guidance, seed: int) -> _Instance:
    cues = instance_cues(image, mask, frame, seed)
    x0, y0, x1, y1 = frame.box
    coarse_work = resize_mask(mask[y0:y1, x0:x1], frame.work)
    hc, wc = frame.content
    grabcut_work = resize_mask(cues.grabcut[:hc, :wc] >= 0.5, frame.work)
    guide = guidance.crop_tensors(frame.box, frame.work)
    coarse = torch.from_numpy(coarse_work.astype(np.float32))[None, None]
    state = ReverseState.start(coarse)
    state.coarse = apply_guidance_grid(state.coarse, state.coarse, guide)
    state.mask = state.coarse.clone()
    width = band_width(coarse_work)
    return _Instance(index, frame, cues, coarse_work, near_boundary(coarse_work, width), width, grabcut_work, guide, state)


def _band_logits(runner: BandRunner, projected: list[torch.Tensor], instances: list[_Instance], t: int) -> list[torch.Tensor]:
    """Per instance, (1, 1, h, w) logits on its work grid: the head's inside the band, identity outside."""
    config = runner.config
    contexts, tiles, grids, counts, cells, currents = [], [], [], [], [], []
    for inst in instances:
        current = inst.state.mask[0, 0].numpy() >= 0.5
        currents.append(current)
        contexts.append(context_cues(inst.cues, current, t, config))
        sdf = signed_distance(current)
        origins = band_cells(current, sdf, inst.coarse_band, inst.grabcut_work, inst.width, config.tile)
        batch = gather_tiles(inst.cues, current, sdf, t, config, origins)
        tiles.append(batch.inputs)
        grids.append(batch.grids)
        counts.append(len(origins))
        cells.append(origins)
    deltas = runner.step(projected, np.stack(contexts), torch.cat(tiles), torch.cat(grids), counts)
    out, start = [], 0
    for current, origins in zip(currents, cells):
        identity = runner.net.identity_logits(torch.from_numpy(current.astype(np.float32)))
        logits = identity.clone()
        h, w = current.shape
        for y0, x0 in origins:  # overlapping tiles compute the same values there: assign, never add
            delta = deltas[start, 0, : h - y0, : w - x0]
            start += 1
            region = (slice(y0, y0 + delta.shape[0]), slice(x0, x0 + delta.shape[1]))
            logits[region] = identity[region] + delta
        out.append(logits[None, None])
    return out
