"""Autosave: every committed edit of the open image goes into the project store, in its own transaction.

The document emits ``edited(id, action)`` after every do, undo and redo; the instance's state in the
document is then compared with what was last saved and the differences are handed to the store writer
(app/gui/store_writer.py), whose thread writes them in edit order: field changes (status, category, lock,
visibility, z-order) as they are, a changed mask as a copy that the writer thread encodes to RLE (a
quarter of a second on an 8K photo) and writes unless it equals what the store already holds. The GUI
thread never waits on encoding, SQLite or fsync; ``finish()`` waits for everything handed over (Ctrl+S,
switching images, closing, exporting).

The store hands out instance ids (``allocate_id`` creates the row, waiting for the writer), so document
and project file agree on them; a deletion undone is restored through ``store.revert`` with the same id
and history.
"""
from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QRect, Signal

from app.core.errors import DatasetError
from app.core.records import ChangeKind, Provenance, ReviewStatus, encode_mask
from app.core.store.project import ProjectStore
from app.core.store.errors import ProjectError
from app.core.store.rows import StoredInstance
from app.gui.editor.commands import HISTORY_ACTION
from app.gui.editor.document import ImageDocument
from app.gui.editor.layers import InstanceLayer
from app.gui.store_writer import StoreWriter

log = logging.getLogger(__name__)


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment or the password database
        return "annotator"


AUTHOR = _user()
"""Who made the window's hand edits, as their mask edits record it (the edit history shows it)."""

# Edits after which the whole mask is compared with the store's: these can change it without a
# ``mask_changed`` signal (an instance put back by undo) or must be recorded even when no pixel changed.
WHOLE_INSTANCE_ACTIONS = frozenset({"add", "delete", "refine"})

Write = Callable[[ProjectStore], Any]


@dataclass
class Saved:
    """An instance's fields as last handed to the writer."""

    status: str
    category_id: int
    z: int
    locked: bool
    visible: bool

    @classmethod
    def of(cls, inst: StoredInstance) -> Saved:
        return cls(ReviewStatus(inst.status).value, inst.category_id, inst.z_order, inst.locked, not inst.hidden)


def provenance_of(layer: InstanceLayer) -> Provenance:
    """The store's provenance of a layer's current mask: the refinement's or the click prompt's as its undo
    step recorded it, else a hand edit (an undo back to the imported mask is still an edit of the project)."""
    p = layer.provenance
    if p is not None and (p.is_refined or ChangeKind(p.kind) is ChangeKind.PROMPTED):
        return p
    return Provenance.manual()


def _undone_edit(store: ProjectStore, instance_id: int, rle: dict[str, Any]) -> int | None:
    """The instance's latest edit that took its mask from ``rle`` to the mask it has now: what an undo (or a redo
    after one) goes back over. The store's revert of that edit restores its figures and provenance with the mask,
    where a plain mask write would record the mask put back as a new refinement and count its pixels against the
    wrong mask. None when no edit made that change (the mask is then written as an edit of its own)."""
    now = store.instance(instance_id).rle["counts"]
    for edit in reversed(store.history(instance_id)):
        if (edit.before_rle is not None and edit.after_rle is not None
                and edit.before_rle["counts"] == rle["counts"] and edit.after_rle["counts"] == now):
            return edit.id
    return None


class Autosave(QObject):
    """Keeps the open document's instances and the store in step, through ``writer``."""

    saved = Signal("qint64")  # an instance's row changed
    failed = Signal(str)      # a write failed (message); the edit stays in the document

    def __init__(self, writer: StoreWriter, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.writer = writer
        self.store: ProjectStore | None = None
        self.doc: ImageDocument | None = None
        self._saved: dict[int, Saved] = {}
        self._dirty: set[int] = set()
        self._deleted: set[int] = set()
        self._adopted: set[int] = set()
        self._warned_read_only = False
        # Touched only by writes, i.e. on the writer thread (or the GUI thread while nothing is queued):
        self._counts: dict[int, str] = {}
        self._deletions: dict[int, int] = {}

    # ----- attaching
    def attach(self, store: ProjectStore | None, doc: ImageDocument | None, stored: list[StoredInstance]) -> None:
        """Follow a new document (after writing what the previous one still had in flight)."""
        self.finish()
        if self.doc is not None:
            self.doc.edited.disconnect(self.edited)
            self.doc.mask_changed.disconnect(self.mask_touched)
        if store is not self.store:
            self._deleted.clear()
            self._deletions.clear()
            self._warned_read_only = False
        self.store, self.doc = store, doc
        self._saved = {inst.id: Saved.of(inst) for inst in stored}
        self._counts = {inst.id: inst.rle["counts"] for inst in stored}
        self._dirty.clear()
        self._adopted.clear()
        if doc is not None:
            doc.edited.connect(self.edited)
            doc.mask_changed.connect(self.mask_touched)
            doc.id_allocator = self.allocate_id

    def allocate_id(self, category: int) -> int:
        """Create the new instance's row now (after the writes queued before it), so its id is the store's."""
        doc, store = self.doc, self.store
        assert doc is not None and store is not None
        empty = np.zeros(doc.shape, dtype=bool)

        def create(st: ProjectStore) -> int:
            instance_id = st.create_instance(doc.image_id, category, empty).instance_id
            self._counts[instance_id] = st.instance(instance_id).rle["counts"]
            return instance_id

        instance_id = self.writer.call(create)
        self._saved[instance_id] = Saved.of(store.instance(instance_id))
        return instance_id

    def record_counts(self, stored: StoredInstance) -> None:
        """On the writer thread, after a service wrote a new instance itself (a prompt's): its mask as saved."""
        self._counts[stored.id] = stored.rle["counts"]

    def adopt(self, stored: StoredInstance) -> None:
        """Follow that instance from now on, as if ``allocate_id`` had made it (its document layer comes next).

        The layer's coming "add" is already in the store, mask included: it is not encoded again to find that out
        (on an 8000x6000 photo an encoding holds the GIL for ~20 ms, which the GUI thread waits out)."""
        self._saved[stored.id] = Saved.of(stored)
        self._adopted.add(stored.id)

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
                self._write(instance_id, self._deletion(instance_id))
                del self._saved[instance_id]
                self._deleted.add(instance_id)
            self._dirty.discard(instance_id)
            return
        layer = doc.layer(instance_id)
        if saved is None:
            if instance_id not in self._deleted:
                raise ProjectError(store.path, f"instance {instance_id} is not in the project")
            self.writer.call(self._revert(instance_id))
            self._deleted.discard(instance_id)
            saved = self._saved[instance_id] = Saved.of(store.instance(instance_id))
            self.saved.emit(instance_id)
        if action == "add" and instance_id in self._adopted:
            self._dirty.discard(instance_id)
        elif instance_id in self._dirty or action in WHOLE_INSTANCE_ACTIONS:
            self._dirty.discard(instance_id)
            self._write(instance_id, self._mask_write(doc, instance_id, action))
        self._adopted.discard(instance_id)
        if layer.status != saved.status:
            status = ReviewStatus(layer.status)
            self._write(instance_id, lambda st: st.set_status(instance_id, status))
            saved.status = layer.status
        if layer.category_id != saved.category_id:
            category = layer.category_id
            self._write(instance_id, lambda st: st.set_category(instance_id, category))
            saved.category_id = layer.category_id
        if (layer.z, layer.locked, layer.visible) != (saved.z, saved.locked, saved.visible):
            z, locked, hidden = layer.z, layer.locked, not layer.visible
            self._write(instance_id, lambda st: st.set_layer(instance_id, z_order=z, locked=locked, hidden=hidden))
            saved.z, saved.locked, saved.visible = layer.z, layer.locked, layer.visible

    def _write(self, instance_id: int, write: Write) -> None:
        """Hand a write to the writer; ``saved`` follows when it changed the row."""
        self.writer.submit(write, lambda changed: self._written(instance_id, changed), self._report)

    def _written(self, instance_id: int, changed: object) -> None:
        if changed is not False:
            self.saved.emit(instance_id)

    # ----- writes (run on the writer thread, in edit order)
    def _mask_write(self, doc: ImageDocument, instance_id: int, action: str) -> Write:
        """Encode a copy of the mask as it is now (its bounding box, copied here), and write it unless the
        store holds it already."""
        snapshot = doc.snapshot(instance_id)
        provenance = provenance_of(doc.layer(instance_id))
        force = action == "refine"  # a refinement that changed nothing is still recorded

        def write(st: ProjectStore) -> bool:
            rle = encode_mask(snapshot.full())
            if rle["counts"] == self._counts.get(instance_id) and not force:
                return False
            undone = _undone_edit(st, instance_id, rle) if action in (HISTORY_ACTION, "revert") else None
            if undone is not None:
                st.revert(undone, {"author": AUTHOR})
            else:
                st.set_mask(instance_id, rle, provenance=provenance, params={"action": action, "author": AUTHOR})
            self._counts[instance_id] = rle["counts"]
            return True

        return write

    def _deletion(self, instance_id: int) -> Write:
        def write(st: ProjectStore) -> None:
            self._deletions[instance_id] = st.delete_instance(instance_id).id

        return write

    def _revert(self, instance_id: int) -> Write:
        def write(st: ProjectStore) -> None:
            deletion = self._deletions.pop(instance_id, None)
            if deletion is None:
                raise ProjectError(st.path, f"the deletion of instance {instance_id} was not saved; nothing to restore")
            st.revert(deletion, {"author": AUTHOR})
            self._counts[instance_id] = st.instance(instance_id).rle["counts"]

        return write

    # ----- waiting
    def finish(self) -> None:
        """Wait until every edit handed over is written."""
        self.writer.finish()

    @property
    def busy(self) -> bool:
        return self.writer.busy
