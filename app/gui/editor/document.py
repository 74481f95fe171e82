"""The open image as the editor holds it: decoded instance masks, guidance strokes, the refine preview.

Every change to an instance goes through an undo command (app/gui/editor/commands.py) that keeps only the
rectangle it changed, so hundreds of undo levels on an 8K photo stay cheap. The canvas paints through the
stroke API (``begin_stroke`` / ``stroke_to`` / ``end_stroke``): pixels are drawn at once for feedback and
the whole stroke becomes one undo step when the mouse is released.

Edit targets: an ``int`` is an instance id; one of ``GUIDANCE`` names a guidance mask
("foreground" = must stay foreground, "background" = must stay background, "region" = the only pixels the
refiner may change). Guidance belongs to the image, not to an instance; ``clear_guidance`` empties it.

After each committed change to an instance (do, undo or redo) the document emits ``edited(id, action)``;
the instance's state in the document is then the truth to save: ``has_layer(id)`` False means deleted.

Refinement results stay inside the refiner's crop box: the preview (app/gui/editor/preview.py) and accepted
masks (``apply_mask`` with a box, ``apply_updates``) carry only the box, so a step on a large photo costs
the box, not the image. ``mask_version(id)`` counts an instance's pixel changes, so work prepared on another
thread against one version (a preview's diff image, an accepted refinement's undo patch) is used only
while the instance is still at that version.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PySide6.QtCore import QObject, QRect, Signal
from PySide6.QtGui import QImage, QUndoCommand, QUndoStack

from app.core import mask_ops
from app.core.mask_ops import Rect
from app.core.records import Provenance
from app.gui.editor.commands import AddInstanceCommand, DeleteInstanceCommand, LayerFieldCommand, PatchCommand, describe
from app.gui.editor.layers import GUIDANCE, InstanceLayer, MaskCrop, MaskUpdate, Patch, Target, box_patch, palette_color
from app.gui.editor.preview import Preview

UNDO_LIMIT = 1000


def qrect(rect: Rect) -> QRect:
    """(x0, y0, x1, y1) end-exclusive as a QRect."""
    return QRect(rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1])


class ImageDocument(QObject):
    """Masks, guidance and refine preview of one image, with an undo stack of rectangle deltas."""

    mask_changed = Signal("qint64", QRect)
    guidance_changed = Signal(str, QRect)
    layer_changed = Signal("qint64", str)
    instances_changed = Signal()
    selection_changed = Signal("qint64")
    preview_changed = Signal()
    edited = Signal("qint64", str)

    def __init__(
        self, image: np.ndarray, image_id: int, layers: Sequence[InstanceLayer], parent: QObject | None = None,
        bboxes: Mapping[int, Rect | None] | None = None, undo_stack: QUndoStack | None = None,
    ) -> None:
        """``bboxes``: the layers' bounding boxes when the caller knows them (the loader reads them off the
        RLE), sparing a scan of every mask on the GUI thread. ``undo_stack``: the image's undo history from an
        earlier document of it, whose edits are all in ``layers`` (its commands are pointed at this document);
        by default a new one."""
        super().__init__(parent)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        self.image = np.ascontiguousarray(image)
        self.image_id = image_id
        if undo_stack is None:
            undo_stack = QUndoStack(self)
            undo_stack.setUndoLimit(UNDO_LIMIT)
        self.undo_stack = undo_stack
        for k in range(undo_stack.count()):
            _adopt(undo_stack.command(k), self)
        self.id_allocator: Callable[[int], int] | None = None
        """Gives a new instance of a category its id (the window's: the project store's next id)."""
        self._layers: dict[int, InstanceLayer] = {}
        for layer in layers:
            self._check_mask(layer.mask, f"instance {layer.id}")
            layer.mask = np.ascontiguousarray(layer.mask, dtype=bool)
            self._layers[layer.id] = layer
        self.selected_id: int | None = None
        self.read_only = False
        """Strokes and click edits are refused (a window that opened its project read-only)."""
        self.region: np.ndarray | None = None
        self.foreground: np.ndarray | None = None
        self.background: np.ndarray | None = None
        self.preview: Preview | None = None
        self.photo_levels: list[QImage] | None = None
        """The photo as a display pyramid (overlays.build_pyramid), when the loader built it off the GUI thread."""
        self.category_names: dict[int, str] = {}
        """The project's category names, for the undo history's words (the ids where unknown)."""
        self._versions: dict[int, int] = {}
        self._bboxes: dict[int, Rect | None] = dict(bboxes or {})
        self._stroke: _Stroke | None = None

    # ----- layers and selection
    @property
    def shape(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def layer(self, instance_id: int) -> InstanceLayer:
        return self._layers[instance_id]

    def layer_bbox(self, instance_id: int) -> Rect | None:
        """A rectangle holding every pixel of the instance (None: empty); edits only ever grow it, so after
        an eraser it may be larger than the tight box. Cheap after the first call."""
        if instance_id not in self._bboxes:
            self._bboxes[instance_id] = mask_ops.mask_bbox(self._layers[instance_id].mask)
        return self._bboxes[instance_id]

    def snapshot(self, instance_id: int) -> MaskCrop:
        """A copy of the instance's mask as it is now, costing its bounding box rather than the image."""
        box = self.layer_bbox(instance_id)
        pixels = None if box is None else mask_ops.take_patch(self._layers[instance_id].mask, box)
        return MaskCrop(self.shape, box, pixels)

    def mask_version(self, instance_id: int) -> int:
        """How many times the instance's pixels changed since the document opened (or it came back)."""
        return self._versions.get(instance_id, 0)

    def has_layer(self, instance_id: int) -> bool:
        return instance_id in self._layers

    def layers(self) -> list[InstanceLayer]:
        """All layers in draw order (lowest ``z`` first; ties keep insertion order)."""
        return sorted(self._layers.values(), key=lambda layer: layer.z)

    def select(self, instance_id: int | None) -> None:
        if instance_id is not None and instance_id not in self._layers:
            raise KeyError(f"no instance {instance_id} in image {self.image_id}")
        if instance_id == self.selected_id:
            return
        self.selected_id = instance_id
        self.selection_changed.emit(-1 if instance_id is None else instance_id)

    def instance_at(self, x: int, y: int) -> int | None:
        """Topmost visible instance covering pixel (x, y), or None."""
        h, w = self.shape
        if not (0 <= x < w and 0 <= y < h):
            return None
        for layer in reversed(self.layers()):
            if layer.visible and layer.mask[y, x]:
                return layer.id
        return None

    def editable(self, target: Target) -> bool:
        """Whether strokes may change ``target`` (guidance always; an instance unless locked; nothing in a
        read-only document)."""
        if self.read_only:
            return False
        if isinstance(target, str):
            return target in GUIDANCE
        return target in self._layers and not self._layers[target].locked

    # ----- guidance
    def guidance(self, kind: str, create: bool = False) -> np.ndarray | None:
        """The guidance mask ``kind``; allocated (empty) on first use when ``create``."""
        if kind not in GUIDANCE:
            raise KeyError(f"unknown guidance {kind!r}; expected one of {GUIDANCE}")
        mask = getattr(self, kind)
        if mask is None and create:
            mask = np.zeros(self.shape, dtype=bool)
            setattr(self, kind, mask)
        return mask

    def guidance_snapshot(self) -> dict[str, np.ndarray | None]:
        """Copies of the guidance masks for a refiner run (None where nothing is painted)."""
        out: dict[str, np.ndarray | None] = {}
        for kind in GUIDANCE:
            mask = getattr(self, kind)
            out[kind] = mask.copy() if mask is not None and mask.any() else None
        return out

    def clear_guidance(self) -> None:
        """Erase all guidance strokes (one undo step)."""
        patches = []
        for kind in GUIDANCE:
            mask = getattr(self, kind)
            rect = None if mask is None else mask_ops.mask_bbox(mask)
            if rect is not None:
                before = mask_ops.take_patch(mask, rect)
                patches.append(Patch.of(kind, rect, before, np.zeros_like(before)))
        if patches:
            self.undo_stack.push(PatchCommand(self, patches, "clear guidance", describe("clear guidance", None), applied=False))

    # ----- refine preview
    @property
    def preview_instance_id(self) -> int | None:
        return None if self.preview is None else self.preview.instance_id

    def set_preview(self, preview: Preview) -> None:
        """Show a refiner result (inside its box) for one instance."""
        if not self.has_layer(preview.instance_id):
            raise KeyError(f"no instance {preview.instance_id} in image {self.image_id}")
        self._check_box(preview.box, preview.mask, "preview mask")
        if preview.confidence is not None and preview.confidence.shape != preview.mask.shape:
            raise ValueError(f"confidence has shape {preview.confidence.shape}, the preview mask {preview.mask.shape}")
        self.preview = preview
        self.preview_changed.emit()

    def clear_preview(self) -> None:
        if self.preview is None:
            return
        self.preview = None
        self.preview_changed.emit()

    # ----- strokes (brush, eraser, constraint and region brushes)
    def begin_stroke(self, target: Target, action: str) -> bool:
        """Start one undoable stroke on ``target``; False (and nothing starts) when it is not editable."""
        self.end_stroke()
        if not self.editable(target):
            return False
        self._stroke = _Stroke(target, action)
        return True

    def stroke_to(self, points: Sequence[mask_ops.Point], size: int, value: bool = True) -> Rect | None:
        """Paint (or erase, ``value`` False) a segment of the current stroke; returns the rect drawn.

        A "must stay foreground" stroke also removes "must stay background" under it and vice versa, so
        the two constraints never contradict each other.
        """
        stroke = self._stroke
        if stroke is None:
            return None
        rect = mask_ops.stroke_rect(points, size, self.shape)
        if rect is None:
            return None
        targets: list[tuple[Target, bool]] = [(stroke.target, value)]
        if value and stroke.target in ("foreground", "background"):
            targets.append(("background" if stroke.target == "foreground" else "foreground", False))
        for target, val in targets:
            mask = self.target_mask(target, create=val)
            if mask is None:
                continue
            stroke.remember(target, mask, rect)
            mask_ops.paint_stroke(mask, points, size, val)
            self.notify(target, rect)
        return rect

    def end_stroke(self) -> None:
        """Close the current stroke as one undo step (none when it changed nothing)."""
        stroke, self._stroke = self._stroke, None
        if stroke is not None:
            self._push_patches(stroke.patches(self), stroke.action, stroke.target)

    def cancel_stroke(self) -> None:
        """Undo the pixels of the stroke in progress without leaving an undo step."""
        stroke, self._stroke = self._stroke, None
        if stroke is not None:
            for patch in stroke.patches(self):
                self.write_patch(patch.target, patch.rect, patch.before.unpack())

    # ----- one-shot mask edits
    def fill(self, target: Target, point: mask_ops.Point, value: bool = True) -> Rect | None:
        """Flood fill the 4-connected region under ``point`` (a hole, or with False a part); one undo step."""
        return self._one_shot(target, "fill", lambda mask: mask_ops.fill_region(mask, point, value))

    def open_background(self, target: Target, point: mask_ops.Point) -> bool:
        """Whether ``point`` is background around ``target`` rather than a hole in it (a fill leaves it alone)."""
        mask = self.target_mask(target)
        return mask is not None and mask_ops.is_open_background(mask, point)

    def lasso(self, target: Target, polygon: Sequence[mask_ops.Point], value: bool = True) -> Rect | None:
        """Add (``value`` True) or subtract a lasso polygon; one undo step."""
        action = "lasso add" if value else "lasso subtract"
        return self._one_shot(target, action, lambda mask: mask_ops.paint_polygon(mask, polygon, value))

    def apply_mask(
        self, instance_id: int, new_mask: np.ndarray, action: str, provenance: Provenance | None = None,
        box: Rect | None = None,
    ) -> bool:
        """Replace an instance's mask (e.g. accept a refinement); the undo step keeps only the changed bbox.

        With ``box``, ``new_mask`` covers only that rectangle and the rest of the instance is kept. Returns
        False when no pixel changed; the step is still pushed, recording the provenance.
        """
        if box is None:
            self._check_mask(new_mask, "new mask")
            box = (0, 0, self.shape[1], self.shape[0])
        return bool(self.apply_updates([MaskUpdate(instance_id, box, new_mask, provenance)], action))

    def apply_updates(self, updates: Sequence[MaskUpdate], action: str, text: str | None = None,
                      merge_key: object | None = None) -> int:
        """Apply new masks to several instances as ONE undo step; returns how many changed.

        A prepared patch is used while its instance is still at the version it was worked out against;
        otherwise the change is worked out here, inside the box. A step with a ``merge_key`` joins the undo
        step before it when that one has the same key (the refine queue's results on one image).
        """
        for update in updates:
            self._check_box(update.box, update.mask, "new mask")
            if update.instance_id not in self._layers:
                raise KeyError(f"no instance {update.instance_id} in image {self.image_id}")
        self.end_stroke()
        patches = []
        for update in updates:
            if update.base_version is not None and update.base_version == self.mask_version(update.instance_id):
                patch = update.patch
            else:
                x0, y0, x1, y1 = update.box
                before = self._layers[update.instance_id].mask[y0:y1, x0:x1]
                patch = box_patch(update.instance_id, update.box, before, update.mask)
            if patch is not None:
                patches.append(patch)
                self._put_from_box(update, patch.rect)
        ids = [u.instance_id for u in updates]
        if text is None:
            text = describe(action, ids[0]) if len(ids) == 1 else f"{describe(action, None)} ({len(ids)} instances)"
        provenances: Mapping[int, Provenance | None] = {u.instance_id: u.provenance for u in updates}
        self.undo_stack.push(PatchCommand(self, patches, action, text, instance_ids=ids, provenances=provenances,
                                          merge_key=merge_key))
        return len(patches)

    def _put_from_box(self, update: MaskUpdate, rect: Rect) -> None:
        """Write the pixels of ``rect`` from an update's own mask (no need to unpack the undo patch)."""
        bx0, by0 = update.box[0], update.box[1]
        x0, y0, x1, y1 = rect
        mask_ops.put_patch(self._layers[update.instance_id].mask, rect, update.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0])
        self.notify(update.instance_id, rect)

    # ----- instance properties (each one undo step)
    def set_status(self, instance_id: int, status: str) -> None:
        self._set_field(instance_id, "status", status, f"Status {status} #{instance_id}")

    def set_statuses(self, instance_ids: Sequence[int], status: str, text: str) -> None:
        """Give several instances one status as one undo step named ``text`` (those that have it already are left)."""
        if all(self._layers[i].status == status for i in instance_ids):
            return
        self.undo_stack.beginMacro(text)
        for instance_id in instance_ids:
            self.set_status(instance_id, status)
        self.undo_stack.endMacro()

    def set_category(self, instance_id: int, category_id: int) -> None:
        name = self.category_names.get(category_id, str(category_id))
        self._set_field(instance_id, "category_id", category_id, f"Category {name} #{instance_id}")

    def set_visible(self, instance_id: int, visible: bool) -> None:
        self._set_field(instance_id, "visible", visible, f"{'Show' if visible else 'Hide'} #{instance_id}")

    def set_locked(self, instance_id: int, locked: bool) -> None:
        self._set_field(instance_id, "locked", locked, f"{'Lock' if locked else 'Unlock'} #{instance_id}")

    def set_z(self, instance_id: int, z: int) -> None:
        self._set_field(instance_id, "z", z, f"Reorder #{instance_id}")

    def bring_to_front(self, instance_id: int) -> None:
        self.set_z(instance_id, max(layer.z for layer in self._layers.values()) + 1)

    def send_to_back(self, instance_id: int) -> None:
        self.set_z(instance_id, min(layer.z for layer in self._layers.values()) - 1)

    def add_instance(self, category_id: int, mask: np.ndarray, instance_id: int | None = None) -> int:
        """Add an instance on top of the others; the id comes from ``id_allocator`` when set."""
        self._check_mask(mask, "new instance mask")
        self.end_stroke()
        if instance_id is None:
            instance_id = self.id_allocator(category_id) if self.id_allocator else max(self._layers, default=0) + 1
        if instance_id in self._layers:
            raise ValueError(f"instance {instance_id} already exists in image {self.image_id}")
        z = max((layer.z for layer in self._layers.values()), default=-1) + 1
        layer = InstanceLayer(instance_id, category_id, np.ascontiguousarray(mask, dtype=bool), palette_color(instance_id), z=z, provenance=Provenance.manual())
        self.undo_stack.push(AddInstanceCommand(self, layer))
        return instance_id

    def adopt_instance(self, layer: InstanceLayer, bbox: Rect | None = None) -> None:
        """Add an instance the project already holds (a prompt's, saved by its service): one undo step, whose
        undo deletes it like any instance. ``bbox``: a rectangle known to hold all its pixels."""
        self._check_mask(layer.mask, "new instance mask")
        self.end_stroke()
        if layer.id in self._layers:
            raise ValueError(f"instance {layer.id} already exists in image {self.image_id}")
        self.undo_stack.push(AddInstanceCommand(self, layer, bbox))

    def delete_instance(self, instance_id: int) -> None:
        self.end_stroke()
        self.undo_stack.push(DeleteInstanceCommand(self, self._layers[instance_id]))

    # ----- undo
    def undo(self) -> None:
        """Undo, closing a stroke in progress first (prefer this to ``undo_stack.undo``)."""
        self.end_stroke()
        self.undo_stack.undo()

    def redo(self) -> None:
        self.end_stroke()
        self.undo_stack.redo()

    # ----- used by the undo commands
    def target_mask(self, target: Target, create: bool = False) -> np.ndarray | None:
        if isinstance(target, str):
            return self.guidance(target, create)
        layer = self._layers.get(target)
        return None if layer is None else layer.mask

    def write_patch(self, target: Target, rect: Rect, patch: np.ndarray) -> None:
        """Put a patch back into a target and tell the views which rectangle changed."""
        mask = self.target_mask(target, create=True)
        if mask is None:
            raise KeyError(f"no instance {target} in image {self.image_id}")
        mask_ops.put_patch(mask, rect, patch)
        self.notify(target, rect)

    def notify(self, target: Target, rect: Rect) -> None:
        if isinstance(target, str):
            self.guidance_changed.emit(target, qrect(rect))
        else:
            self._versions[target] = self._versions.get(target, 0) + 1
            if target in self._bboxes:
                self._bboxes[target] = mask_ops.union_rect(self._bboxes[target], rect)
            self.mask_changed.emit(target, qrect(rect))

    def insert_layer(self, layer: InstanceLayer, bbox: Rect | None = None) -> None:
        """Put ``layer`` in the document; ``bbox``, when given, holds every pixel of its mask (no scan needed)."""
        self._layers[layer.id] = layer
        self._versions[layer.id] = self._versions.get(layer.id, 0) + 1
        if bbox is None:
            self._bboxes.pop(layer.id, None)
        else:
            self._bboxes[layer.id] = bbox
        self.layer_changed.emit(layer.id, "added")
        self.instances_changed.emit()

    def remove_layer(self, instance_id: int) -> InstanceLayer:
        layer = self._layers.pop(instance_id)
        if self.selected_id == instance_id:
            self.select(None)
        if self.preview_instance_id == instance_id:
            self.clear_preview()
        self.layer_changed.emit(instance_id, "removed")
        self.instances_changed.emit()
        return layer

    def set_layer_field(self, instance_id: int, name: str, value: Any) -> None:
        setattr(self._layers[instance_id], name, value)
        self.layer_changed.emit(instance_id, name)
        self.instances_changed.emit()

    # ----- internals
    def _check_mask(self, mask: np.ndarray, what: str) -> None:
        if mask.shape != self.shape:
            raise ValueError(f"{what} has shape {mask.shape}, the image is {self.shape}")

    def _check_box(self, box: Rect, mask: np.ndarray, what: str) -> None:
        x0, y0, x1, y1 = box
        if not (0 <= x0 <= x1 <= self.shape[1] and 0 <= y0 <= y1 <= self.shape[0]):
            raise ValueError(f"{what}: box {box} is not inside the {self.shape[1]}x{self.shape[0]} image")
        if mask.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"{what} has shape {mask.shape}, its box {box} is {(y1 - y0, x1 - x0)}")

    def _set_field(self, instance_id: int, name: str, value: Any, text: str) -> None:
        self.end_stroke()
        if getattr(self._layers[instance_id], name) != value:
            self.undo_stack.push(LayerFieldCommand(self, instance_id, name, value, text))

    def _one_shot(self, target: Target, action: str, edit: Callable[[np.ndarray], Rect | None]) -> Rect | None:
        """Run a click edit (fill, lasso) as one undo step; the copy taken first bounds a fill's change."""
        self.end_stroke()
        if not self.editable(target):
            return None
        mask = self.target_mask(target, create=True)
        assert mask is not None
        before = mask.copy()
        rect = edit(mask)
        if rect is None:
            return None
        self.notify(target, rect)
        x0, y0, x1, y1 = rect
        changed = mask_ops.changed_rect(before[y0:y1, x0:x1], mask[y0:y1, x0:x1])
        if changed is not None:
            sub = (x0 + changed[0], y0 + changed[1], x0 + changed[2], y0 + changed[3])
            patch = Patch.of(target, sub, mask_ops.take_patch(before, sub), mask_ops.take_patch(mask, sub))
            self._push_patches([patch], action, target)
        return rect

    def _push_patches(self, patches: list[Patch], action: str, target: Target) -> None:
        if patches:
            self.undo_stack.push(PatchCommand(self, patches, action, describe(action, target)))


def _adopt(command: QUndoCommand, doc: ImageDocument) -> None:
    """Point a command (and the commands of a macro) at ``doc``."""
    if hasattr(command, "doc"):
        command.doc = doc
    for k in range(command.childCount()):
        _adopt(command.child(k), doc)


class _Stroke:
    """Pixels a stroke in progress overwrote, saved per 256-pixel tile the first time it touches one."""

    TILE = 256

    def __init__(self, target: Target, action: str) -> None:
        self.target = target
        self.action = action
        self._saved: dict[Target, dict[tuple[int, int], np.ndarray]] = {}
        self._rects: dict[Target, Rect | None] = {}

    def remember(self, target: Target, mask: np.ndarray, rect: Rect) -> None:
        tiles = self._saved.setdefault(target, {})
        t = self.TILE
        for ty in range(rect[1] // t, (rect[3] - 1) // t + 1):
            for tx in range(rect[0] // t, (rect[2] - 1) // t + 1):
                if (ty, tx) not in tiles:
                    tiles[(ty, tx)] = mask[ty * t : (ty + 1) * t, tx * t : (tx + 1) * t].copy()
        self._rects[target] = mask_ops.union_rect(self._rects.get(target), rect)

    def patches(self, doc: ImageDocument) -> list[Patch]:
        out = []
        t = self.TILE
        for target, rect in self._rects.items():
            mask = doc.target_mask(target)
            if rect is None or mask is None:
                continue
            x0, y0, x1, y1 = rect
            after = mask[y0:y1, x0:x1]
            before = after.copy()
            for (ty, tx), tile in self._saved[target].items():
                ix0, iy0 = max(tx * t, x0), max(ty * t, y0)
                ix1, iy1 = min(tx * t + tile.shape[1], x1), min(ty * t + tile.shape[0], y1)
                if ix0 < ix1 and iy0 < iy1:
                    before[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = tile[iy0 - ty * t : iy1 - ty * t, ix0 - tx * t : ix1 - tx * t]
            changed = mask_ops.changed_rect(before, after)
            if changed is None:
                continue
            cx0, cy0, cx1, cy1 = changed
            sub = (x0 + cx0, y0 + cy0, x0 + cx1, y0 + cy1)
            out.append(Patch.of(target, sub, before[cy0:cy1, cx0:cx1], after[cy0:cy1, cx0:cx1]))
        return out
