"""What the editor's document is made of, free of Qt: instance layers, mask crops and updates, undo patches.

Worker threads build these (a refinement's undo patches, a snapshot's crop) without touching the document;
the document (document.py) and its undo commands (commands.py) take them on the GUI thread.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from app.core import mask_ops
from app.core.mask_ops import PackedPatch, Rect
from app.core.records import ChangeKind, Provenance, ReviewStatus

GUIDANCE = ("foreground", "background", "region")
Target = int | str
"""An edit target: an instance id, or one of ``GUIDANCE``."""


def palette_color(key: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour for an id (golden-ratio hue walk, stable across sessions)."""
    hue = (key * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass(frozen=True)
class Patch:
    """Before and after pixels of one rectangle of one target (instance id or guidance name)."""

    target: Target
    rect: Rect
    before: PackedPatch
    after: PackedPatch

    @classmethod
    def of(cls, target: Target, rect: Rect, before: np.ndarray, after: np.ndarray) -> Patch:
        return cls(target, rect, PackedPatch.pack(before), PackedPatch.pack(after))

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes


@dataclass
class InstanceLayer:
    """One instance as the editor holds it; ``mask`` is (H, W) bool at image resolution."""

    id: int
    category_id: int
    mask: np.ndarray
    color: tuple[int, int, int]
    visible: bool = True
    locked: bool = False
    z: int = 0
    status: str = "unreviewed"
    provenance: Provenance | None = None
    crowd: bool = False
    """A crowd region (COCO ``iscrowd``): many objects in one mask, never refined."""

    @property
    def proposal(self) -> bool:
        """Proposed by Find Similar and not accepted yet: a guess, not an example (docs/decisions/0021)."""
        return (self.provenance is not None and self.provenance.kind == ChangeKind.PROPOSED
                and self.status != ReviewStatus.ACCEPTED.value)


@dataclass(frozen=True)
class MaskUpdate:
    """A new mask for one instance inside ``box`` (x0, y0, x1, y1), e.g. an accepted refinement.

    ``mask`` has the box's shape; outside the box the instance keeps its pixels. When ``base_version`` is
    set, ``patch`` is the change already worked out against that version of the instance's mask (None: no
    pixel changes), see ``prepare_update``.
    """

    instance_id: int
    box: Rect
    mask: np.ndarray
    provenance: Provenance | None = None
    patch: Patch | None = None
    base_version: int | None = None


@dataclass(frozen=True)
class MaskCrop:
    """A copy of an instance's mask kept to a rectangle holding all its pixels (outside it the mask is
    empty): cheap to take on the GUI thread however large the photo; worker threads widen it."""

    shape: tuple[int, int]
    box: Rect | None
    pixels: np.ndarray | None

    def full(self) -> np.ndarray:
        """The whole (H, W) bool mask."""
        out = np.zeros(self.shape, dtype=bool)
        if self.box is not None and self.pixels is not None:
            mask_ops.put_patch(out, self.box, self.pixels)
        return out

    def region(self, box: Rect) -> np.ndarray:
        """The mask inside ``box`` (any rectangle of the image)."""
        x0, y0, x1, y1 = box
        out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        common = mask_ops.intersect_rect(box, self.box)
        if common is not None and self.box is not None and self.pixels is not None:
            cx0, cy0, cx1, cy1 = common
            bx0, by0 = self.box[0], self.box[1]
            out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = self.pixels[cy0 - by0 : cy1 - by0, cx0 - bx0 : cx1 - bx0]
        return out


def box_patch(instance_id: int, box: Rect, before: np.ndarray, mask: np.ndarray) -> Patch | None:
    """The undo patch that turns ``before`` into ``mask`` inside ``box`` (bounded by the changed pixels)."""
    changed = mask_ops.changed_rect(before, mask)
    if changed is None:
        return None
    cx0, cy0, cx1, cy1 = changed
    rect = (box[0] + cx0, box[1] + cy0, box[0] + cx1, box[1] + cy1)
    return Patch.of(instance_id, rect, before[cy0:cy1, cx0:cx1], mask[cy0:cy1, cx0:cx1])


def prepare_update(
    instance_id: int, box: Rect, mask: np.ndarray, before: np.ndarray, base_version: int,
    provenance: Provenance | None = None,
) -> MaskUpdate:
    """A ``MaskUpdate`` with its patch worked out against ``before``, the instance's pixels in ``box`` at
    version ``base_version``; safe on any thread, so accepting it costs the GUI thread only the writing."""
    return MaskUpdate(instance_id, box, mask, provenance, box_patch(instance_id, box, before, mask), base_version)
