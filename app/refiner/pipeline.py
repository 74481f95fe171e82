"""Instance (LR) and high-resolution (HR) refinement as generators that yield every reverse step.

Both follow the official SegRefiner pipelines (spec §7) and add what an annotation tool needs: a seeded
generator per call, an optional ``region`` outside which nothing changes, and ``foreground`` /
``background`` constraint masks held at every step. The caller may stop iterating at any time: the
generators never touch their inputs, so an abandoned run leaves nothing half-applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from app.core import mask_ops
from app.core.mask_ops import Rect as Box
from app.refiner.diffusion import DEFAULT_SCHEDULE, ReverseState, Schedule, reverse_step
from app.refiner.steps import MaskPatch, RefineStep

# ImageNet mean / std on the 0-255 scale, RGB order (spec §11.2).
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Guidance:
    """What the annotator painted, at full image resolution (bool masks, or None).

    ``region``: only pixels inside it may change. ``foreground`` / ``background``: pixels that must end
    up in / out of the mask, whatever the model says.
    """

    region: np.ndarray | None = None
    foreground: np.ndarray | None = None
    background: np.ndarray | None = None

    def check(self, shape: tuple[int, int]) -> None:
        for name in ("region", "foreground", "background"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} mask has shape {value.shape}, the image is {shape}")

    @cached_property
    def _region_rect(self) -> Box | None:
        """The region's bounding box in the image (computed once: a region is as large as the image)."""
        assert self.region is not None
        return mask_ops.mask_bbox(np.ascontiguousarray(self.region))

    def window(self, box: Box) -> tuple[slice, slice] | None:
        """(rows, columns) of ``box``'s crop holding every pixel the region lets change (the whole crop without a
        region; None: the region misses the box, nothing in it may change but the constraints)."""
        x0, y0, x1, y1 = box
        if self.region is None:
            return slice(0, y1 - y0), slice(0, x1 - x0)
        common = mask_ops.intersect_rect(self._region_rect, box)
        if common is None:
            return None
        return slice(common[1] - y0, common[3] - y0), slice(common[0] - x0, common[2] - x0)

    def clamp(self, refined: np.ndarray, coarse: np.ndarray, box: Box) -> np.ndarray:
        """Apply the guidance to a refined crop (bool, inside ``box``) against the coarse crop."""
        x0, y0, x1, y1 = box
        out = refined.copy() if self.region is None else np.where(self.region[y0:y1, x0:x1], refined, coarse)
        self.constrain(out, box)
        return out

    def constrain(self, refined: np.ndarray, box: Box) -> None:
        """Force the foreground and background constraints on a crop (bool, inside ``box``), in place."""
        x0, y0, x1, y1 = box
        if self.foreground is not None:
            refined |= self.foreground[y0:y1, x0:x1]
        if self.background is not None:
            refined &= ~self.background[y0:y1, x0:x1]

    def crop_tensors(self, box: Box, size: tuple[int, int]) -> dict[str, torch.Tensor | None]:
        """The guidance cropped to ``box`` and resized to the network grid (bool tensors (1,1,h,w))."""
        return {
            name: None if value is None else _resize_mask(_crop(value, box), size)
            for name, value in (
                ("region", self.region),
                ("foreground", self.foreground),
                ("background", self.background),
            )
        }


NO_GUIDANCE = Guidance()


@dataclass
class InstanceSettings:
    """Instance (LR) pipeline settings; defaults are the official test_cfg (spec §7.1)."""

    steps: int = 6
    pad: int = 20
    size: int = 256
    min_area: int = 512
    batch_size: int = 32
    seed: int = 0
    deterministic: bool = False
    keep_native: bool = True


@dataclass
class HRSettings:
    """High-resolution pipeline settings (spec §7.2).

    ``resize`` is how the whole image goes to the 256 grid: "nearest" as the official code, or "area"
    (anti-aliased down, bilinear up), which matches how the network was trained.

    ``keep_native`` (both pipelines, not in the official code): where the network's mask on the 256 grid
    agrees with the coarse mask on that grid, the result keeps the coarse mask's native-resolution pixels;
    only the neighbourhood of grid cells the network changed takes the pasted prediction. The official
    paste replaces the whole box with a 256-grid mask upsampled, which blurs every detail finer than a grid
    cell of a large object even where the network changed nothing (docs/decisions/0009).
    """

    global_steps: int = 5
    size: int = 256
    patch: int = 256
    fine_prob_thr: float = 0.9
    iou_thr: float = 0.3
    max_patches: int = 64
    min_area: int = 128
    batch_size: int = 32
    seed: int = 0
    deterministic: bool = False
    resize: str = "area"
    keep_native: bool = True


def normalize(image_rgb: np.ndarray) -> torch.Tensor:
    """uint8 (h,w,3) RGB -> normalized float (1,3,h,w)."""
    x = torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1)[None].float()
    return (x - MEAN) / STD


def _crop(array: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return array[y0:y1, x0:x1]


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Bool (h,w) -> bool (1,1,*size): bilinear then >= 0.5, as the official crop does."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False) >= 0.5


# Values (sampling grid and output) per sampling call of a paste: a few megabytes, which the allocator reuses.
STRIP_VALUES = 1 << 20


def _paste_strips(maps: torch.Tensor, box_size: tuple[int, int], mode: str,
                  window: tuple[slice, slice] | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """(1,C,s,s) maps resized to a (h,w) box, strip by strip: (rows of the window, (C, r, columns) float32) in order,
    over the box's ``window`` (rows and columns; the whole box without). The official bilinear paste (spec §7.1),
    or nearest for the HR global parity mode (one strip).

    The paste maps the box's pixel centres to the normalized grid with half-pixel offsets and samples with zero
    padding, exactly as mmdet's ``_do_paste_mask`` that SegRefiner uses; a strip or window samples the same
    coordinates, so it equals that part of the whole paste. Strips keep every buffer small: on a 4500x4400 box
    the whole grid is 160 MB and the maps 80 MB each, and allocating and freeing that much per step (fresh pages
    each time) made pasting most of a step's time and stalled the GUI thread's own allocations.
    """
    h, w = box_size
    rows, cols = window or (slice(0, h), slice(0, w))
    maps = maps.float().cpu()
    if mode == "nearest":
        yield slice(0, rows.stop - rows.start), F.interpolate(maps, size=box_size, mode="nearest")[0, :, rows, cols].numpy()
        return
    ys = ((torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1)[rows]
    xs = ((torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1)[cols]
    step = max(1, STRIP_VALUES // (len(xs) * (2 + maps.shape[1])))
    for start in range(0, len(ys), step):
        strip = ys[start : start + step]
        grid = torch.empty((1, len(strip), len(xs), 2), dtype=torch.float32)
        grid[0, :, :, 0] = xs[None, :]
        grid[0, :, :, 1] = strip[:, None]
        yield slice(start, start + len(strip)), F.grid_sample(maps, grid, mode="bilinear", align_corners=False)[0].numpy()


def apply_guidance_grid(mask: torch.Tensor, coarse: torch.Tensor, guide: dict[str, torch.Tensor | None]) -> torch.Tensor:
    """Hold region and constraints on the network grid, so the model sees what the user forced."""
    if guide["region"] is not None:
        mask = torch.where(guide["region"], mask, coarse)
    if guide["foreground"] is not None:
        mask = torch.where(guide["foreground"], torch.ones_like(mask), mask)
    if guide["background"] is not None:
        mask = torch.where(guide["background"], torch.zeros_like(mask), mask)
    return mask


def mask_box(mask: np.ndarray, pad: int, shape: tuple[int, int]) -> Box | None:
    """Tight box of ``mask`` expanded by ``pad`` on each side and clipped to the image; None if empty."""
    x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    if bw == 0:
        return None
    h, w = shape
    return max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad)


def check_inputs(image: np.ndarray, masks: Sequence[np.ndarray]) -> tuple[int, int]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
    shape = image.shape[:2]
    for i, mask in enumerate(masks):
        if mask.shape != shape:
            raise ValueError(f"mask {i} has shape {mask.shape}, the image is {shape}")
    return shape


def refine_instances(
    denoiser: Denoiser,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    settings: InstanceSettings | None = None,
    guidance: Guidance = NO_GUIDANCE,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> Iterator[RefineStep]:
    """Refine instance masks (LR pipeline), yielding a ``RefineStep`` per reverse step per batch.

    Each mask is cropped around its box plus ``pad`` (grown to cover any foreground constraint), resized
    to ``size`` x ``size`` ignoring aspect, run through ``steps`` reverse steps together with the rest of
    its batch, and pasted back with bilinear sampling, threshold 0.5. Masks under ``min_area`` pixels pass
    through unchanged (reported with ``skipped=True`` in the first yield).
    """
    settings = settings or InstanceSettings()
    shape = check_inputs(image, masks)
    guidance.check(shape)
    indices = schedule.indices(settings.steps)
    masks = [np.asarray(m, dtype=bool) for m in masks]
    todo, skipped = [], []
    for i, mask in enumerate(masks):
        box = mask_box(mask, settings.pad, shape) if cv2.countNonZero(mask.view(np.uint8)) >= settings.min_area else None
        if box is not None and guidance.foreground is not None:
            fg_box = mask_box(guidance.foreground, settings.pad, shape)
            if fg_box is not None:
                box = (min(box[0], fg_box[0]), min(box[1], fg_box[1]), max(box[2], fg_box[2]), max(box[3], fg_box[3]))
        (todo if box is not None else skipped).append((i, box))
    batches = [todo[k : k + settings.batch_size] for k in range(0, len(todo), settings.batch_size)]
    total = len(batches) * len(indices) if batches else 1
    generator = torch.Generator().manual_seed(settings.seed)
    grid = (settings.size, settings.size)
    step = 0
    if not batches:
        yield RefineStep(1, 1, "instance", indices[-1], shape, [i for i, _ in skipped], [passthrough(masks[i], shape) for i, _ in skipped], True)
        return
    for batch_no, batch in enumerate(batches):
        crops, coarse, guides = [], [], []
        for i, box in batch:
            crops.append(F.interpolate(normalize(_crop(image, box)), size=grid, mode="bilinear", align_corners=False))
            coarse.append(_resize_mask(_crop(masks[i], box), grid))
            guides.append(guidance.crop_tensors(box, grid))
        img = torch.cat(crops)
        state = ReverseState.start(torch.cat(coarse).float())
        batch_guide = stack_guides(guides)
        state.coarse = apply_guidance_grid(state.coarse, state.coarse, batch_guide)
        state.mask = state.coarse.clone()
        for k, t in enumerate(indices):
            last = k == len(indices) - 1
            logits = denoiser(torch.cat([img, state.mask], dim=1), torch.full((len(batch),), t, dtype=torch.long))
            conf = reverse_step(state, logits, t, last, schedule, generator, settings.deterministic)
            state.mask = apply_guidance_grid(state.mask, state.coarse, batch_guide)
            results = []
            for j, (i, box) in enumerate(batch):
                kept = state.coarse[j : j + 1] if settings.keep_native else None
                results.append(patch_result(state.mask[j : j + 1], conf[j : j + 1], masks[i], box, guidance, k + 1,
                                             coarse_grid=kept))
            step += 1
            extra = skipped if batch_no == 0 and k == 0 else []
            yield RefineStep(
                step=step,
                total=total,
                stage="instance",
                timestep=t,
                image_size=shape,
                indices=[i for i, _ in batch] + [i for i, _ in extra],
                results=results + [passthrough(masks[i], shape) for i, _ in extra],
                final=last,
            )


def stack_guides(guides: list[dict[str, torch.Tensor | None]]) -> dict[str, torch.Tensor | None]:
    return {name: None if guides[0][name] is None else torch.cat([g[name] for g in guides]) for name in guides[0]}


def passthrough(mask: np.ndarray, shape: tuple[int, int]) -> MaskPatch:
    h, w = shape
    return MaskPatch((0, 0, w, h), mask.copy(), np.zeros(shape, np.float32), changed=0, skipped=True)


def patch_result(
    mask: torch.Tensor,
    conf: torch.Tensor,
    coarse_full: np.ndarray,
    box: Box,
    guidance: Guidance,
    reverse_steps: int,
    mode: str = "bilinear",
    coarse_grid: torch.Tensor | None = None,
) -> MaskPatch:
    """The grid mask pasted into ``box``; with ``coarse_grid``, only near the grid cells that differ from it.

    Only the part of the box the guidance's region reaches is pasted (a click's neighbourhood in a large object
    costs its own size, not the object's); the rest keeps the coarse mask and reports confidence 1 (held).
    """
    x0, y0, x1, y1 = box
    size = (y1 - y0, x1 - x0)
    coarse = _crop(coarse_full, box)
    window = guidance.window(box)
    whole = window is not None and (window[0].stop - window[0].start, window[1].stop - window[1].start) == size
    refined = coarse.copy()
    confidence = np.empty(size, np.float32) if whole else np.ones(size, np.float32)
    if window is not None:
        inside, target, sure = coarse[window], refined[window], confidence[window]
        region = None if guidance.region is None else guidance.region[y0:y1, x0:x1][window]
        changed = None if coarse_grid is None else (mask >= 0.5) != (coarse_grid >= 0.5)
        moved = changed is None or bool(changed.any())
        maps = [conf] + ([mask] if moved else []) + ([changed] if moved and changed is not None else [])
        for rows, values in _paste_strips(torch.cat([m.float() for m in maps], dim=1), size, mode, window):
            np.clip(values[0], 0.0, 1.0, out=sure[rows])
            if moved:
                new = values[1] >= 0.5 if changed is None else np.where(values[2] > 0.0, values[1] >= 0.5, inside[rows])
                target[rows] = new if region is None else np.where(region[rows], new, inside[rows])
    guidance.constrain(refined, box)
    return MaskPatch(box, refined, confidence, changed=int(np.count_nonzero(refined != coarse)), reverse_steps=reverse_steps)


def refine_hr(
    denoiser: Denoiser,
    image: np.ndarray,
    mask: np.ndarray,
    settings: HRSettings | None = None,
    guidance: Guidance = NO_GUIDANCE,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> Iterator[RefineStep]:
    """High-resolution refinement of one foreground mask (HR pipeline, spec §7.2).

    Global reverse steps (code-t 5..1 by default) on the whole image at 256, then one local step at
    code-t 0 on native-resolution patches centred on the pixels the global pass was least sure of
    (boxes de-duplicated by NMS, uniform ones dropped, at most ``max_patches``), averaged where they
    overlap and used only inside their union. Yields one step per global step and per patch batch.
    """
    settings = settings or HRSettings()
    shape = check_inputs(image, [mask])
    guidance.check(shape)
    h, w = shape
    mask = np.asarray(mask, dtype=bool)
    full_box = (0, 0, w, h)
    if mask.sum() <= settings.min_area:
        yield RefineStep(1, 1, "global", 0, shape, [0], [passthrough(mask, shape)], True)
        return
    steps = settings.global_steps
    indices = schedule.indices(steps + 1)
    global_indices, local_t = indices[:-1], indices[-1]
    generator = torch.Generator().manual_seed(settings.seed)
    grid = (settings.size, settings.size)
    down = "nearest" if settings.resize == "nearest" else "area"
    img = F.interpolate(normalize(image), size=grid, mode=down)
    coarse_grid = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=grid, mode=down) >= 0.5
    guide = guidance.crop_tensors(full_box, grid)
    state = ReverseState.start(coarse_grid.float())
    state.coarse = apply_guidance_grid(state.coarse, state.coarse, guide)
    state.mask = state.coarse.clone()
    up_mode = "nearest" if settings.resize == "nearest" else "bilinear"
    total = len(global_indices) + 1
    result = None
    for k, t in enumerate(global_indices):
        last = k == len(global_indices) - 1
        logits = denoiser(torch.cat([img, state.mask], dim=1), torch.tensor([t]))
        conf = reverse_step(state, logits, t, last, schedule, generator, settings.deterministic)
        state.mask = apply_guidance_grid(state.mask, state.coarse, guide)
        result = patch_result(state.mask, conf, mask, full_box, guidance, k + 1, up_mode,
                               state.coarse if settings.keep_native else None)
        yield RefineStep(k + 1, total, "global", t, shape, [0], [result], final=False)
    assert result is not None
    boxes = _uncertain_boxes(state.fine_probs[0, 0].numpy(), result.mask, settings)
    batches = [boxes[k : k + settings.batch_size] for k in range(0, len(boxes), settings.batch_size)]
    total = len(global_indices) + max(1, len(batches))
    if not batches:
        yield RefineStep(total, total, "local", local_t, shape, [0], [result], final=True)
        return
    prob_sum = np.zeros(shape, np.float32)
    count = np.zeros(shape, np.uint16)
    conf_full = result.confidence.copy()
    global_mask = result.mask
    for b, batch in enumerate(batches):
        crops, masks_in = [], []
        for box in batch:
            crop = normalize(_crop(image, box))
            patch_mask = torch.from_numpy(_crop(global_mask, box).astype(np.float32))[None, None]
            if crop.shape[-2:] != grid:
                crop = F.interpolate(crop, size=grid, mode="bilinear", align_corners=False)
                patch_mask = F.interpolate(patch_mask, size=grid, mode="bilinear", align_corners=False).ge(0.5).float()
            crops.append(crop)
            masks_in.append(patch_mask)
        logits = denoiser(torch.cat([torch.cat(crops), torch.cat(masks_in)], dim=1), torch.full((len(batch),), local_t, dtype=torch.long))
        probs = torch.sigmoid(logits.float())
        confs = (probs - 0.5).abs() * 2
        for j, (x0, y0, x1, y1) in enumerate(batch):
            size = (y1 - y0, x1 - x0)
            prob = probs[j : j + 1] if size == grid else F.interpolate(probs[j : j + 1], size=size, mode="bilinear", align_corners=False)
            cf = confs[j : j + 1] if size == grid else F.interpolate(confs[j : j + 1], size=size, mode="bilinear", align_corners=False)
            prob_sum[y0:y1, x0:x1] += prob[0, 0].numpy()
            count[y0:y1, x0:x1] += 1
            conf_full[y0:y1, x0:x1] = cf[0, 0].numpy()
        covered = count > 0
        merged = global_mask.copy()
        merged[covered] = prob_sum[covered] / count[covered] >= 0.5
        merged = guidance.clamp(merged, mask, full_box)
        patch = MaskPatch(full_box, merged, conf_full.copy(), changed=int(np.count_nonzero(merged != mask)),
                          reverse_steps=len(global_indices) + 1)
        step = len(global_indices) + b + 1
        yield RefineStep(step, total, "local", local_t, shape, [0], [patch], final=b == len(batches) - 1)


def _uncertain_boxes(fine_probs: np.ndarray, global_mask: np.ndarray, settings: HRSettings) -> list[Box]:
    """Native-resolution patch boxes centred on uncertain grid points, NMS-filtered, most uncertain first."""
    h, w = global_mask.shape
    side = min(settings.patch, h, w)
    gy, gx = np.nonzero(fine_probs < settings.fine_prob_thr * fine_probs.max())
    if gy.size == 0:
        return []
    scores = 1.0 - fine_probs[gy, gx]
    cy = ((gy + 0.5) * h / fine_probs.shape[0]).astype(np.int64)
    cx = ((gx + 0.5) * w / fine_probs.shape[1]).astype(np.int64)
    x0 = np.clip(cx - side // 2, 0, w - side)
    y0 = np.clip(cy - side // 2, 0, h - side)
    order = np.lexsort((-scores, y0, x0))
    x0, y0, scores = x0[order], y0[order], scores[order]
    first = np.ones(x0.size, dtype=bool)
    first[1:] = (x0[1:] != x0[:-1]) | (y0[1:] != y0[:-1])
    x0, y0, scores = x0[first], y0[first], scores[first]
    rects = [[int(x), int(y), side, side] for x, y in zip(x0, y0)]
    keep = cv2.dnn.NMSBoxes(rects, scores.astype(np.float32).tolist(), score_threshold=0.0, nms_threshold=settings.iou_thr)
    boxes: list[Box] = []
    for k in np.asarray(keep).reshape(-1):
        x, y = int(x0[k]), int(y0[k])
        patch = global_mask[y : y + side, x : x + side]
        if patch.all() or not patch.any():
            continue
        boxes.append((x, y, x + side, y + side))
        if len(boxes) >= settings.max_patches:
            break
    return boxes
