"""Undo commands of the editor. Mask edits keep only the changed rectangle, packed eight pixels a byte.

A brush stroke is already one step when it is pushed (the document collects its segments), so edits are
not merged, except the refine queue's results on one image: each comes with the run's ``merge_key`` and
joins the step before it when that step is the same run's, so a queue leaves one undo step per image. A
command pushed after its pixels were drawn (``applied``) skips drawing on its first ``redo``. Every do and
undo that touches an instance ends with the document's ``edited`` signal.

Commands reach their document through ``doc``, which the document sets again when an image's undo stack
outlives its document (the window keeps each image's stack while it is open: app/gui/undo_history.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from PySide6.QtCore import SignalInstance
from PySide6.QtGui import QUndoCommand

from app.core import mask_ops
from app.core.mask_ops import PackedPatch, Rect
from app.core.records import Provenance
from app.gui.editor.layers import InstanceLayer, Patch, Target


class EditableDocument(Protocol):
    """What the undo commands need of the document (app/gui/editor/document.py), which imports them."""

    edited: SignalInstance

    @property
    def shape(self) -> tuple[int, int]: ...

    def layer(self, instance_id: int) -> InstanceLayer: ...

    def layer_bbox(self, instance_id: int) -> Rect | None: ...

    def write_patch(self, target: Target, rect: Rect, patch: np.ndarray) -> None: ...

    def set_layer_field(self, instance_id: int, name: str, value: Any) -> None: ...

    def insert_layer(self, layer: InstanceLayer, bbox: Rect | None = None) -> None: ...

    def remove_layer(self, instance_id: int) -> InstanceLayer: ...

MERGE_ID = 0x5EF1
"""``id()`` of the commands that may merge (Qt asks ``mergeWith`` only of commands with equal ids)."""
FIELD_ACTIONS = {"status": "status", "category_id": "category", "visible": "visibility", "locked": "lock", "z": "z-order"}
ACTION_LABELS = {
    "brush": "Brush",
    "eraser": "Erase",
    "fill": "Fill",
    "lasso add": "Lasso add",
    "lasso subtract": "Lasso subtract",
    "refine": "Accept refinement",
    "fg_brush": "Must-stay-foreground stroke",
    "bg_brush": "Must-stay-background stroke",
    "region_brush": "Refine-region stroke",
    "clear guidance": "Clear guidance",
    "revert": "Revert",
    "click": "Click prompt",
}


HISTORY_ACTION = "undo"
"""The action an undo, or a redo after one, reports for a patch: the project records it as a revert of the
instance's last mask edit (which puts back that edit's refinement figures and provenance too)."""


def describe(action: str, target: Target | None) -> str:
    """The undo history's line for an edit: "Brush #12", "Refine-region stroke"."""
    label = ACTION_LABELS.get(action, action.capitalize())
    return label if target is None or isinstance(target, str) else f"{label} #{target}"


class PatchCommand(QUndoCommand):
    """Rectangle deltas of one edit (a stroke, fill, lasso, accepted refinement or guidance clear).

    Instances it changes get ``provenance`` (default: a manual edit), or their own from ``provenances``;
    undo restores their previous one. ``instance_ids`` names instances whose provenance changes even when
    no pixel did.
    """

    def __init__(
        self,
        doc: EditableDocument,
        patches: list[Patch],
        action: str,
        text: str,
        provenance: Provenance | None = None,
        applied: bool = True,
        instance_ids: Sequence[int] = (),
        provenances: Mapping[int, Provenance | None] | None = None,
        merge_key: object | None = None,
    ) -> None:
        super().__init__(text)
        self.doc = doc
        self.patches = patches
        self.action = action
        self.merge_key = merge_key
        self._skip_draw = applied
        ids = {p.target for p in patches if not isinstance(p.target, str)} | set(instance_ids)
        self.instance_ids = sorted(ids)
        default = provenance if provenance is not None else Provenance.manual()
        own = provenances or {}
        self._provenance = {i: (doc.layer(i).provenance, own.get(i) or default) for i in self.instance_ids}
        self._done = False

    def id(self) -> int:  # noqa: A003 (Qt's name)
        return -1 if self.merge_key is None else MERGE_ID

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 (Qt override)
        """Take in the next result of the same refine queue run on this image (already applied)."""
        if self.merge_key is None or not isinstance(other, PatchCommand) or other.merge_key != self.merge_key:
            return False
        self.patches = [*self.patches, *other.patches]
        for i in other.instance_ids:
            before = self._provenance[i][0] if i in self._provenance else other._provenance[i][0]
            self._provenance[i] = (before, other._provenance[i][1])
        self.instance_ids = sorted({*self.instance_ids, *other.instance_ids})
        self.setText(f"{describe(self.action, None)} ({len(self.instance_ids)} instances)")  # not the first's #id
        return True

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data this undo step keeps."""
        return sum(p.nbytes for p in self.patches)

    def redo(self) -> None:
        if not self._skip_draw:
            for p in self.patches:
                self.doc.write_patch(p.target, p.rect, p.after.unpack())
        self._skip_draw = False
        self._finish(1, self.action if not self._done else HISTORY_ACTION)
        self._done = True

    def undo(self) -> None:
        for p in reversed(self.patches):
            self.doc.write_patch(p.target, p.rect, p.before.unpack())
        self._finish(0, HISTORY_ACTION)

    def _finish(self, which: int, action: str) -> None:
        for i in self.instance_ids:
            self.doc.layer(i).provenance = self._provenance[i][which]
        for i in self.instance_ids:
            self.doc.edited.emit(i, action)


class LayerFieldCommand(QUndoCommand):
    """Change one property of an instance: status, category, visibility, lock or z-order."""

    def __init__(self, doc: EditableDocument, instance_id: int, name: str, value: Any, text: str) -> None:
        super().__init__(text)
        self.doc = doc
        self.instance_id = instance_id
        self.name = name
        self.values = (getattr(doc.layer(instance_id), name), value)

    def redo(self) -> None:
        self._set(self.values[1])

    def undo(self) -> None:
        self._set(self.values[0])

    def _set(self, value: Any) -> None:
        self.doc.set_layer_field(self.instance_id, self.name, value)
        self.doc.edited.emit(self.instance_id, FIELD_ACTIONS[self.name])


@dataclass(frozen=True)
class PackedLayer:
    """An instance kept off the document by an undo step: its fields and its mask's bbox, packed."""

    layer: InstanceLayer
    rect: Rect | None
    pixels: PackedPatch | None

    @classmethod
    def pack(cls, layer: InstanceLayer, bbox: Rect | None = None) -> PackedLayer:
        """``bbox``: a rectangle known to hold every pixel of the mask (None: found by scanning the whole mask,
        which on a 24-megapixel photo costs the GUI thread tens of milliseconds)."""
        rect = bbox if bbox is not None else mask_ops.mask_bbox(layer.mask)
        pixels = None if rect is None else PackedPatch.pack(mask_ops.take_patch(layer.mask, rect))
        return cls(replace(layer, mask=np.zeros((0, 0), dtype=bool)), rect, pixels)

    def unpack(self, shape: tuple[int, int]) -> InstanceLayer:
        mask = np.zeros(shape, dtype=bool)
        if self.rect is not None and self.pixels is not None:
            mask_ops.put_patch(mask, self.rect, self.pixels.unpack())
        return replace(self.layer, mask=mask)


class AddInstanceCommand(QUndoCommand):
    """``bbox``: a rectangle holding every pixel of the new layer, when the caller knows one."""

    def __init__(self, doc: EditableDocument, layer: InstanceLayer, bbox: Rect | None = None) -> None:
        super().__init__(f"Add instance #{layer.id}")
        self.doc = doc
        self.packed = PackedLayer.pack(layer, bbox)
        self._pending: InstanceLayer | None = layer

    def redo(self) -> None:
        layer, self._pending = self._pending or self.packed.unpack(self.doc.shape), None
        self.doc.insert_layer(layer, self.packed.rect)
        self.doc.edited.emit(layer.id, "add")

    def undo(self) -> None:
        self.doc.remove_layer(self.packed.layer.id)
        self.doc.edited.emit(self.packed.layer.id, "add")


class DeleteInstanceCommand(QUndoCommand):
    def __init__(self, doc: EditableDocument, layer: InstanceLayer) -> None:
        super().__init__(f"Delete instance #{layer.id}")
        self.doc = doc
        self.packed = PackedLayer.pack(layer, doc.layer_bbox(layer.id))

    def redo(self) -> None:
        self.doc.remove_layer(self.packed.layer.id)
        self.doc.edited.emit(self.packed.layer.id, "delete")

    def undo(self) -> None:
        self.doc.insert_layer(self.packed.unpack(self.doc.shape), self.packed.rect)
        self.doc.edited.emit(self.packed.layer.id, "delete")
