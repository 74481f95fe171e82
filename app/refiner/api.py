"""The refiner in one object (``Refiner``) or one call (``refine``), for notebooks, the CLI and the GUI.

>>> from app.refiner.api import refine
>>> better = refine(image_rgb, coarse_mask)            # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from app.refiner.band_net import BandNet
from app.refiner.band_pipeline import INSTANCE_MAX_WORK, BandRunner, BandSettings, refine_band, refine_band_images
from app.refiner.device import Runner, pick_device
from app.refiner.encoder import pretrained_encoder
from app.refiner.options import DEFAULT_WEIGHTS, RefineOptions
from app.refiner.pipeline import Guidance, HRSettings, InstanceSettings, refine_hr, refine_instances
from app.refiner.steps import MaskPatch, RefineStep
from app.refiner.weights import load_weights

log = logging.getLogger(__name__)


class Refiner:
    """A loaded checkpoint on a device, ready to refine masks step by step."""

    def __init__(self, weights: str | Path | None = None, device: str | None = None, precision: str = "auto",
                 batch_size: int = 0, compile: bool = False) -> None:
        model, self.info = load_weights(weights or DEFAULT_WEIGHTS)
        target = pick_device(device)
        self.runner: Runner | BandRunner
        if isinstance(model, BandNet):
            self.runner = BandRunner(model, pretrained_encoder(), target, precision, compile=compile)
        else:
            self.runner = Runner(model, target, self.info.preset, precision, batch_size, compile=compile)
        log.info("refiner %s (%s) on %s", self.name, self.info.preset, self.runner.device)

    @property
    def name(self) -> str:
        """The registry name of the weights, or their file name."""
        return self.info.name or self.info.path.name

    @property
    def device(self) -> str:
        return str(self.runner.device)

    def run(
        self,
        image: np.ndarray,
        masks: Sequence[np.ndarray],
        options: RefineOptions = RefineOptions(),
        guidance: Guidance | None = None,
    ) -> Iterator[RefineStep]:
        """Yield every step of refining ``masks`` (instance mode) or ``masks[0]`` (hr mode) on ``image``."""
        guidance = guidance or Guidance()
        if options.mode == "hr" and len(masks) != 1:
            raise ValueError(f"hr mode refines one mask at a time, got {len(masks)}")
        if isinstance(self.runner, BandRunner):
            return refine_band(self.runner, image, masks, self._band_settings(options), guidance)
        if options.mode == "hr":
            settings = HRSettings(
                global_steps=options.steps - 1,
                seed=options.seed,
                deterministic=bool(options.deterministic),
                max_patches=options.max_patches,
                min_area=options.smallest_area,
                batch_size=self.runner.batch_size,
                keep_native=options.keep_native,
            )
            return refine_hr(self.runner, image, masks[0], settings, guidance)
        settings = InstanceSettings(
            steps=options.steps,
            pad=options.pad,
            min_area=options.smallest_area,
            seed=options.seed,
            deterministic=bool(options.deterministic),
            batch_size=self.runner.batch_size,
            keep_native=options.keep_native,
        )
        return refine_instances(self.runner, image, masks, settings, guidance)

    def refine_images(self, jobs: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]],
                      options: RefineOptions = RefineOptions()) -> list[dict[int, MaskPatch]]:
        """The final patch of each mask of each (image, masks) job, by job and by the mask's index in its job.

        The band network in instance mode fills its batches across images (what keeps a GPU busy when a dataset's
        images hold a few instances each); other networks and HR mode refine one image (or mask) at a time.
        """
        if isinstance(self.runner, BandRunner) and options.mode != "hr":
            return refine_band_images(self.runner, jobs, self._band_settings(options))
        return [self.final_patches(image, masks, options) for image, masks in jobs]

    def final_patches(self, image: np.ndarray, masks: Sequence[np.ndarray], options: RefineOptions = RefineOptions(),
                      guidance: Guidance | None = None) -> dict[int, MaskPatch]:
        """Each mask's last patch, by its index in ``masks``: one run for all of them in instance mode, one run
        per mask in HR mode (which refines one mask at a time)."""
        runs = [(k, self.run(image, [m], options, guidance)) for k, m in enumerate(masks)] if options.mode == "hr" \
            else [(0, self.run(image, masks, options, guidance))]
        last: dict[int, MaskPatch] = {}
        for offset, run in runs:
            for step in run:
                for index, patch in zip(step.indices, step.results):
                    last[offset + index] = patch
        return last

    @property
    def batch_size(self) -> int:
        """Instances per network batch."""
        return self.runner.batch_size

    def _band_settings(self, options: RefineOptions) -> BandSettings:
        return BandSettings(steps=options.steps, min_area=options.smallest_area, seed=options.seed,
                            deterministic=options.deterministic is not False, keep_native=options.keep_native,
                            max_work=None if options.mode == "hr" else INSTANCE_MAX_WORK,
                            batch_size=self.runner.batch_size, snap=options.snap)

    def refine(self, image: np.ndarray, mask: np.ndarray, guidance: Guidance | None = None, **options: object) -> np.ndarray:
        """The final refined mask (bool, full resolution) of one coarse mask."""
        return self.final_patches(image, [mask], replace(RefineOptions(), **options), guidance)[0].full_mask(image.shape[:2])


@lru_cache(maxsize=2)
def _default_refiner(weights: str | None, device: str | None) -> Refiner:
    return Refiner(weights, device)


def refine(image: np.ndarray, mask: np.ndarray, weights: str | None = None, device: str | None = None, **options: object) -> np.ndarray:
    """Refine one coarse mask of an RGB uint8 image with the default (or named) weights."""
    return _default_refiner(weights, device).refine(image, mask, **options)
