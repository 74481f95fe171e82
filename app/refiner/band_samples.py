"""Training samples for the band network, made exactly as the pipeline makes its inputs (app/refiner/band_frame.py).

One sample is one instance: a real image and ground truth, a synthesised coarse mask, the frame around it, the cues
(GrabCut on the context grid), a code-t and a noisy mask m_t, and a few work-grid tiles centred where m_t is wrong,
on the coarse boundary or on the true boundary. Everything here is numpy and OpenCV, run in data-loader workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import cv2
import numpy as np

from app.refiner.band_frame import (
    band_width,
    context_cues,
    frame_for,
    gather_tiles,
    instance_cues,
    resize_mask,
    signed_distance,
)
from app.refiner.band_net import BandConfig
from app.refiner.data import Example
from app.refiner.degrade import near_perfect, synthesize
from app.refiner.diffusion import Schedule

NEAR_PERFECT = "near_perfect"
NEIGHBOUR = "neighbour"
TRAIN_PROBS: Mapping[str, float] = {
    "segrefiner": 0.20, "segrefiner_expand": 0.07, "lowres": 0.13, "polygon": 0.10, "shift": 0.13,
    "missing_thin": 0.09, "blobs": 0.09, "leak": 0.09, NEAR_PERFECT: 0.10,
}
CONTACT_RATIO = 0.03  # a neighbour touches when it lies within this share of the object's size (at least 3 px)


@dataclass(frozen=True)
class SampleSettings:
    """How training samples are drawn."""

    tiles: int = 6
    coarse_t_prob: float = 0.3
    smooth_mix_prob: float = 0.5
    boundary_weight: float = 4.0
    error_weight: float = 2.0
    contact_weight: float = 2.0
    probs: Mapping[str, float] = field(default_factory=lambda: dict(TRAIN_PROBS))


def _augment(example: Example, rng: np.random.Generator) -> Example:
    image, mask, ignore, others = example.image, example.mask, example.ignore, example.others
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
        ignore = None if ignore is None else ignore[:, ::-1]
        others = None if others is None else others[:, ::-1]
    if rng.random() < 0.5:
        gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-20, 20)
        image = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)

    def contiguous(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a)

    return Example(np.ascontiguousarray(image), np.ascontiguousarray(mask), contiguous(ignore), example.key,
                   contiguous(others))


def contact_zone(example: Example) -> np.ndarray | None:
    """The image's other objects within a few pixels of this one (None when none touches or none is known)."""
    if example.others is None or not example.others.any():
        return None
    ys, xs = np.nonzero(example.mask)
    size = max(int(np.ptp(ys)), int(np.ptp(xs))) + 1
    radius = max(3, int(round(CONTACT_RATIO * size)))
    near = cv2.dilate(example.mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)) > 0
    zone = near & example.others & ~example.mask
    return zone if zone.any() else None


def _coarse(example: Example, rng: np.random.Generator, probs: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray | None]:
    """A coarse mask of a randomly drawn kind, and the contact zone its tiles should look at (neighbour kind only).

    The neighbour kind is a good mask beside a touching object: near-perfect, or (half the time) with the part of
    the neighbour next to it taken in; without a touching neighbour it is a near-perfect mask.
    """
    names = list(probs)
    weights = np.array([probs[n] for n in names], np.float64)
    kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if kind == NEIGHBOUR:
        zone = contact_zone(example)
        coarse = near_perfect(example.mask, rng)
        if zone is not None and rng.random() < 0.5:
            coarse = coarse | zone
        return coarse, zone
    if kind == NEAR_PERFECT:
        return near_perfect(example.mask, rng), None
    return synthesize(example.mask, rng, kind=kind, image=example.image)[0], None


def noisy_mask(gt: np.ndarray, coarse: np.ndarray, fine_prob: float, rng: np.random.Generator, smooth: bool) -> np.ndarray:
    """m_t: each pixel shows the truth with probability ``fine_prob``, else the coarse mask.

    Per pixel (SegRefiner's forward process) or, with ``smooth``, in blobs of a low-frequency random field,
    which looks like what the reverse process really feeds the network: a coarse mask partly corrected.
    """
    h, w = gt.shape
    if smooth:
        field_ = cv2.resize(rng.random((max(2, h // 24), max(2, w // 24))).astype(np.float32), (w, h),
                            interpolation=cv2.INTER_CUBIC)
        ranks = field_.ravel().argsort().argsort().reshape(h, w) / max(1, h * w - 1)
        fine = ranks < fine_prob
    else:
        fine = rng.random((h, w)) < fine_prob
    return np.where(fine, gt, coarse)


def _tile_origins(count: int, tile: int, shape: tuple[int, int], pools: list[np.ndarray], chances: list[float],
                  rng: np.random.Generator) -> list[tuple[int, int]]:
    h, w = shape
    origins = []
    for _ in range(count):
        usable = [(p, c) for p, c in zip(pools, chances) if len(p)]
        probs = np.array([c for _, c in usable])
        pool = usable[int(rng.choice(len(usable), p=probs / probs.sum()))][0]
        cy, cx = pool[rng.integers(len(pool))]
        jitter = rng.integers(-tile // 4, tile // 4 + 1, size=2)
        y0 = int(np.clip(cy + jitter[0] - tile // 2, 0, max(0, h - tile)))
        x0 = int(np.clip(cx + jitter[1] - tile // 2, 0, max(0, w - tile)))
        origins.append((y0, x0))
    return origins


def _tile_of(array: np.ndarray, origin: tuple[int, int], tile: int, fill: float) -> np.ndarray:
    out = np.full((tile, tile), fill, np.float32)
    y0, x0 = origin
    part = array[y0 : y0 + tile, x0 : x0 + tile]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def make_sample(example: Example, rng: np.random.Generator, config: BandConfig,
                settings: SampleSettings) -> dict[str, np.ndarray]:
    """One training sample as arrays (see the module docstring); raises ValueError for an unusable example."""
    if not example.mask.any():
        raise ValueError(f"{example.key}: empty ground-truth mask")
    example = _augment(example, rng)
    coarse, zone = _coarse(example, rng, settings.probs)
    max_work = None if rng.random() < 0.15 else int(rng.integers(192, 769))
    frame = frame_for(coarse, config.context, pad_ratio=float(rng.uniform(0.15, 0.4)),
                      max_work=max_work if max_work is not None else 1024)
    if frame is None:
        raise ValueError(f"{example.key}: empty coarse mask")
    cues = instance_cues(example.image, coarse, frame, seed=int(rng.integers(1 << 30)))
    x0, y0, x1, y1 = frame.box
    gt_w = resize_mask(example.mask[y0:y1, x0:x1], frame.work)
    coarse_w = resize_mask(coarse[y0:y1, x0:x1], frame.work)
    keep_w = np.ones(frame.work, bool) if example.ignore is None else ~resize_mask(example.ignore[y0:y1, x0:x1], frame.work)
    schedule = Schedule(num_timesteps=config.num_timesteps)
    last = config.num_timesteps - 1
    t = last if rng.random() < settings.coarse_t_prob else int(rng.integers(config.num_timesteps))
    m_t = noisy_mask(gt_w, coarse_w, float(schedule.beta_bar[t]), rng, rng.random() < settings.smooth_mix_prob)
    sdf = signed_distance(m_t)
    width = band_width(coarse_w)
    wrong = (m_t != gt_w) & keep_w
    gt_edge = cv2.morphologyEx(gt_w.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    pools = [np.argwhere(wrong), np.argwhere(np.abs(signed_distance(coarse_w)) <= width), np.argwhere(gt_edge)]
    chances = [0.5, 0.3, 0.2]
    contact_w = np.zeros(frame.work, bool) if zone is None else resize_mask(zone[y0:y1, x0:x1], frame.work)
    if contact_w.any():
        pools, chances = pools + [np.argwhere(contact_w)], [0.3, 0.15, 0.15, 0.4]
    origins = _tile_origins(settings.tiles, config.tile, frame.work, pools, chances, rng)
    tiles = gather_tiles(cues, m_t, sdf, t, config, origins)
    near_edge = cv2.dilate(gt_edge.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    weight = (1.0 + settings.boundary_weight * near_edge + settings.error_weight * wrong
              + settings.contact_weight * contact_w)
    inside = np.ones(frame.work, np.float32)
    return {
        "canvas": cues.canvas_rgb,
        "context": context_cues(cues, m_t, t, config),
        "tiles": tiles.inputs.numpy(),
        "grids": tiles.grids.numpy(),
        "gt": np.stack([_tile_of(gt_w, o, config.tile, 0.0) for o in origins])[:, None],
        "current": np.stack([_tile_of(m_t, o, config.tile, 0.0) for o in origins])[:, None],
        "weight": np.stack([_tile_of(weight * keep_w * inside, o, config.tile, 0.0) for o in origins])[:, None],
    }
