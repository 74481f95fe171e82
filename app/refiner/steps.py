"""What the refinement pipelines yield: one ``RefineStep`` per reverse step (or per HR patch batch)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MaskPatch:
    """One instance's current mask, kept only inside its crop box (it equals the input outside it).

    ``box`` is (x0, y0, x1, y1), end-exclusive, in image pixels. ``mask`` is bool and ``confidence``
    float32 in [0, 1], both of shape (y1 - y0, x1 - x0). ``reverse_steps`` counts the network's reverse
    steps behind this mask (what provenance records; 0 for a mask passed through).
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray
    confidence: np.ndarray
    changed: int
    reverse_steps: int = 0
    skipped: bool = False

    def full_mask(self, shape: tuple[int, int], base: np.ndarray | None = None) -> np.ndarray:
        """The mask at full image resolution; outside the box it is ``base`` (or empty)."""
        out = np.zeros(shape, dtype=bool) if base is None else base.astype(bool, copy=True)
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = self.mask
        return out

    def full_confidence(self, shape: tuple[int, int]) -> np.ndarray:
        """Confidence at full resolution; 0 outside the box, where the model did not look."""
        out = np.zeros(shape, dtype=np.float32)
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = self.confidence
        return out


@dataclass
class RefineStep:
    """The state of a refinement after one reverse step.

    ``indices`` maps ``results`` back to the caller's list of instances (a batch of them moves at a time).
    ``stage`` is "instance" (LR), "global" or "local" (HR). ``step`` counts yields from 1; ``total`` is the
    expected number of yields (in HR mode it is revised once the local patches are known). ``timestep`` is
    the code-t the network saw. ``final`` is True on the last yield for these instances.
    """

    step: int
    total: int
    stage: str
    timestep: int
    image_size: tuple[int, int]
    indices: list[int]
    results: list[MaskPatch]
    final: bool

    def mask(self, i: int = 0, base: np.ndarray | None = None) -> np.ndarray:
        """Full-resolution mask of the ``i``-th result of this step."""
        return self.results[i].full_mask(self.image_size, base)

    def confidence(self, i: int = 0) -> np.ndarray:
        return self.results[i].full_confidence(self.image_size)

    @property
    def changed(self) -> list[int]:
        """Pixels that differ from the coarse input, per result."""
        return [r.changed for r in self.results]
