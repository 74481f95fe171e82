"""What a user chooses for a refinement, and the limits the refiner puts on it; torch-free.

``RefineOptions`` is the one shape a refine choice takes from the refine panel or the CLI flags to the
pipelines (``Refiner.run`` turns it into the pipeline's own settings). The limits below are the diffusion's
own constants, stated here once so the window, the CLI and the pipelines agree without importing torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NUM_TIMESTEPS = 6
"""Length of SegRefiner's schedule (code-t 5..0): a run takes at most this many reverse steps."""
HR_LOCAL_STEPS = 1
"""High-resolution refinement ends with this many local steps on native-resolution patches, after at
least one global step: it needs ``1 + HR_LOCAL_STEPS`` steps."""
MODES = ("instance", "hr")
MIN_STEPS = {"instance": 1, "hr": 1 + HR_LOCAL_STEPS}
MIN_AREA = {"instance": 512, "hr": 128}
"""Masks of fewer pixels pass through unrefined (the official test_cfg of each pipeline)."""
DEFAULT_WEIGHTS = "band-v2"
DEVICES = ("auto", "cpu", "cuda", "mps")


def steps_range(mode: str) -> tuple[int, int]:
    """(fewest, most) reverse steps ``mode`` accepts."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return MIN_STEPS[mode], NUM_TIMESTEPS


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
"""The devices the refiner runs on (torch knows more, none of which it supports)."""


def check_device(device: str) -> str:
    """``device`` as the refiner takes it (trimmed, lower case); ValueError when it is none of ``DEVICE``."""
    normal = device.strip().lower()
    if not DEVICE.fullmatch(normal):
        raise ValueError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N or mps")
    return normal


@dataclass(frozen=True)
class RefineOptions:
    """One refinement run as the user chose it.

    ``weights`` is a registry name or a checkpoint file; ``device`` "auto", "cpu", "cuda[:N]" or "mps".
    ``deterministic`` None means the network's own reverse: deterministic for the band network, stochastic (as the
    official code) for the U-Net presets.
    ``min_area`` None means the mode's ``MIN_AREA``. ``keep_native`` False pastes as the official code does
    (docs/decisions/0009). ``snap`` puts the boundary the band network moved on the image's edges (docs/decisions/0023).
    """

    weights: str = DEFAULT_WEIGHTS
    device: str = "auto"
    mode: str = "instance"
    steps: int = NUM_TIMESTEPS
    seed: int = 0
    deterministic: bool | None = None
    pad: int = 20
    min_area: int | None = None
    max_patches: int = 64
    keep_native: bool = True
    snap: bool = True

    def __post_init__(self) -> None:
        low, high = steps_range(self.mode)
        if not low <= self.steps <= high:
            raise ValueError(f"steps must be in {low}..{high} in {self.mode} mode, got {self.steps}")
        if self.min_area is not None and self.min_area < 0:
            raise ValueError(f"min_area must be 0 or more, got {self.min_area}")
        if self.pad < 0:
            raise ValueError(f"pad must be 0 or more pixels, got {self.pad}")
        check_device(self.device)  # before any weights load, torch or not

    @property
    def smallest_area(self) -> int:
        """Masks with fewer pixels than this pass through unrefined."""
        return MIN_AREA[self.mode] if self.min_area is None else self.min_area

    @property
    def torch_device(self) -> str | None:
        """The device as ``pick_device`` takes it (None: the best available)."""
        return None if self.device == "auto" else self.device
