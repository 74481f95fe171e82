"""Autosave: every committed edit of the open image goes into the project store, in its own transaction.

The document emits ``edited(id, action)`` after every do, undo and redo; the instance's state in the
document is then compared with what the store holds and the differences are written. Field changes
(status, category, lock, visibility, z-order) are written at once. A changed mask is encoded to RLE on one
background thread (a copy of it, in edit order): on an 8K photo the encoding takes a quarter of a second,
which must not hold up the next brush stroke. The encoded masks are written on the GUI thread as they
arrive; ``finish()`` waits for the ones still encoding (Ctrl+S, switching images, closing).

The store hands out instance ids (``allocate_id`` creates the row), so document and project file agree
on them; a deletion undone is restored through ``store.revert`` with the same id and history.
"""
from __future__ import annotations

import logging
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRect, Signal

from app.core.errors import DatasetError
from app.core.model import ChangeKind, Provenance, ReviewStatus, encode_mask
from app.core.store import ProjectStore
from app.core.store_errors import ProjectError
from app.core.store_rows import StoredInstance
from app.gui.document import ImageDocument, InstanceLayer

log = logging.getLogger(__name__)

# Edits after which the whole mask is compared with the store's: these can change it without a
# ``mask_changed`` signal (an instance put back by undo) or must be recorded even when no pixel changed.
WHOLE_INSTANCE_ACTIONS = frozenset({"add", "delete", "refine"})


@dataclass
class Saved:
    """An instance as last written to the store."""

    counts: str
    status: str
    category_id: int
    z: int
    locked: bool
    visible: bool

    @classmethod
    def of(cls, inst: StoredInstance) -> Saved:
        return cls(inst.rle["counts"], ReviewStatus(inst.status).value, inst.category_id, inst.z_order,
                   inst.locked, not inst.hidden)


@dataclass(frozen=True)
class _Encoded:
    """A mask encoded on the background thread, with what to record with it."""

    instance_id: int
    rle: dict[str, Any]
    provenance: Provenance
    mean_confidence: float | None
    force: bool
    action: str


def provenance_of(layer: InstanceLayer) -> tuple[Provenance, float | None]:
    """The store's provenance (and mean confidence, for refinements) of a layer's current mask."""
    p = layer.provenance or {"kind": ChangeKind.MANUAL.value}
    kind = ChangeKind(p.get("kind", ChangeKind.MANUAL.value))
    if kind is ChangeKind.IMPORTED:
        kind = ChangeKind.MANUAL  # an undo back to the imported mask is still an edit of the project
    confidence = p.get("mean_confidence") if kind is ChangeKind.REFINED else None
    return Provenance(kind, p.get("weights"), p.get("mode"), p.get("steps")), confidence


class Autosave(QObject):
    """Keeps the open document's instances and the store in step."""

    saved = Signal(int)       # an instance's row changed
    failed = Signal(str)      # a write failed (message); the edit stays in the document
    _arrived = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store: ProjectStore | None = None
        self.doc: ImageDocument | None = None
        self._saved: dict[int, Saved] = {}
        self._dirty: set[int] = set()
        self._deletions: dict[int, int] = {}
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autosave")
        self._pending: list[Future[None]] = []
        self._results: queue.SimpleQueue[_Encoded] = queue.SimpleQueue()
        self._arrived.connect(self._drain)
        self._warned_read_only = False

    # ----- attaching
    def attach(self, store: ProjectStore | None, doc: ImageDocument | None, stored: list[StoredInstance]) -> None:
        """Follow a new document (after writing what the previous one still had in flight)."""
        self.finish()
        if self.doc is not None:
            self.doc.edited.disconnect(self.edited)
            self.doc.mask_changed.disconnect(self.mask_touched)
        if store is not self.store:
            self._deletions.clear()
            self._warned_read_only = False
        self.store, self.doc = store, doc
        self._saved = {inst.id: Saved.of(inst) for inst in stored}
        self._dirty.clear()
        if doc is not None:
            doc.edited.connect(self.edited)
            doc.mask_changed.connect(self.mask_touched)
            doc.id_allocator = self.allocate_id

    def shutdown(self) -> None:
        self.finish()
        self._encoder.shutdown(wait=True)

    def allocate_id(self) -> int:
        """Create the new instance's row now, so its id is the store's."""
        doc, store = self.doc, self.store
        assert doc is not None and store is not None
        category = store.categories()[0].id
        edit = store.create_instance(doc.image_id, category, np.zeros(doc.shape, dtype=bool))
        self._saved[edit.instance_id] = Saved.of(store.instance(edit.instance_id))
        return edit.instance_id

    # ----- signals of the document
    def mask_touched(self, instance_id: int, _rect: QRect) -> None:
        self._dirty.add(instance_id)

    def edited(self, instance_id: int, action: str) -> None:
        doc, store = self.doc, self.store
        if doc is None or store is None:
            return
        try:
            self._save(doc, store, instance_id, action)
        except DatasetError as e:
            self._report(e)
            return
        self.saved.emit(instance_id)

    def _report(self, error: DatasetError) -> None:
        store = self.store
        read_only = store is not None and store.read_only
        if not (read_only and self._warned_read_only):
            self.failed.emit(f"{error}\nThe edit stays in the window (undo works).")
        self._warned_read_only = self._warned_read_only or read_only

    def _save(self, doc: ImageDocument, store: ProjectStore, instance_id: int, action: str) -> None:
        saved = self._saved.get(instance_id)
        if not doc.has_layer(instance_id):
            if saved is not None:
                self.finish()  # the deletion records the instance's latest mask
                self._deletions[instance_id] = store.delete_instance(instance_id).id
                del self._saved[instance_id]
            self._dirty.discard(instance_id)
            return
        layer = doc.layer(instance_id)
        if saved is None:
            if instance_id not in self._deletions:
                raise ProjectError(store.path, f"instance {instance_id} is not in the project")
            self.finish()
            store.revert(self._deletions.pop(instance_id))
            saved = self._saved[instance_id] = Saved.of(store.instance(instance_id))
        if instance_id in self._dirty or action in WHOLE_INSTANCE_ACTIONS:
            self._dirty.discard(instance_id)
            provenance, confidence = provenance_of(layer)
            self._encode(instance_id, layer.mask.copy(), provenance, confidence, action == "refine", action)
        if layer.status != saved.status:
            store.set_status(instance_id, ReviewStatus(layer.status))
            saved.status = layer.status
        if layer.category_id != saved.category_id:
            store.set_category(instance_id, layer.category_id)
            saved.category_id = layer.category_id
        if (layer.z, layer.locked, layer.visible) != (saved.z, saved.locked, saved.visible):
            store.set_layer(instance_id, z_order=layer.z, locked=layer.locked, hidden=not layer.visible)
            saved.z, saved.locked, saved.visible = layer.z, layer.locked, layer.visible

    # ----- masks: encoded in the background, written here in order
    def _encode(self, instance_id: int, mask: np.ndarray, provenance: Provenance, confidence: float | None,
                force: bool, action: str) -> None:
        def run() -> None:
            self._results.put(_Encoded(instance_id, encode_mask(mask), provenance, confidence, force, action))
            self._arrived.emit()

        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._encoder.submit(run))

    def finish(self) -> None:
        """Wait for the masks still being encoded and write them."""
        for future in self._pending:
            future.result()
        self._pending.clear()
        self._drain()

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in self._pending) or not self._results.empty()

    def _drain(self) -> None:
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return
            self._write(item)

    def _write(self, item: _Encoded) -> None:
        store, saved = self.store, self._saved.get(item.instance_id)
        if store is None or saved is None:
            return  # deleted since (its deletion recorded the latest mask)
        if item.rle["counts"] == saved.counts and not item.force:
            return
        try:
            store.set_mask(item.instance_id, item.rle, provenance=item.provenance,
                           mean_confidence=item.mean_confidence, params={"action": item.action})
        except DatasetError as e:
            self._report(e)
            return
        saved.counts = item.rle["counts"]
        self.saved.emit(item.instance_id)
