"""The selected instance's edit history, from the project file: every change that was saved (hand edits,
refinements, status and category changes, reverts), newest first, with a thumbnail of the mask it left,
who or what made it and when; "Revert" puts the instance back as it was before the chosen edit.

The store keeps the history (app/core/store/history.py); this panel reads it on the GUI thread (one indexed
query) and draws the thumbnails on the thread pool, since decoding a mask per edit costs on large photos.
A revert is an ordinary edit of the open document: one undo step, saved like any other.
"""
from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, Mapping

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from app.core.records import Category, ChangeKind, decode_mask, rle_boxes
from app.core.store.errors import ProjectError
from app.core.store.history import Edit, EditAction
from app.core.store.project import ProjectStore
from app.core.wording import plural
from app.gui.editor.commands import ACTION_LABELS
from app.gui.editor.document import ImageDocument
from app.gui.tasks import TaskRunner

THUMB = 72
MAX_THUMBS = 60
"""Edits with a mask whose thumbnails are drawn (the newest); older ones show the text alone."""
EDIT_ROLE = Qt.ItemDataRole.UserRole


def describe_edit(edit: Edit, categories: dict[int, Category], others: Mapping[int, Edit] | None = None
                  ) -> tuple[str, str]:
    """(what the edit did, who or what made it), in words; ``others`` (the instance's edits by id) lets a revert
    say what it took back (an undo in the window is saved as one)."""
    before, after, params = edit.before or {}, edit.after or {}, edit.params
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    author = str(params.get("author") or "annotator")
    action = edit.action
    if action is EditAction.REFINE:
        figures = [f"{after.get('prov_mode')}", f"{after.get('prov_steps')} steps"]
        if after.get("changed_pixels") is not None:
            figures.append(f"{after['changed_pixels']} px changed")
        return f"Refined ({', '.join(figures)})", f"refiner {after.get('prov_weights') or ''}".strip()
    if action is EditAction.MANUAL:
        return ACTION_LABELS.get(str(params.get("action")), "Hand edit"), author
    if action is EditAction.STATUS:
        return f"Status {_status(before)} → {_status(after)}", author
    if action is EditAction.CATEGORY:
        return f"Category {_category(before, categories)} → {_category(after, categories)}", author
    if action is EditAction.LAYER:
        words = {"locked": "lock", "hidden": "visibility", "z_order": "overlap order"}
        return "Changed " + ", ".join(words.get(k, k) for k in sorted(changed) if k in words), author
    if action is EditAction.CREATE:
        return _created(after, params, author)
    if action is EditAction.DELETE:
        return "Deleted", author
    others = others or {}
    target = others.get(params.get("reverts", -1))
    if target is None:
        return f"Reverted edit {params.get('reverts', '?')}", author
    redone = others.get(target.params.get("reverts", -1)) if target.action is EditAction.REVERT else None
    if redone is not None:
        return f"Redone: {describe_edit(redone, categories)[0]}", author
    when = datetime.fromtimestamp(target.timestamp)
    return f"Reverted: {describe_edit(target, categories, others)[0]} (of {when:%H:%M})", author


def _created(after: dict[str, Any], params: dict[str, Any], author: str) -> tuple[str, str]:
    """A prompt's or find-similar's instance says what made it, not the annotator who asked."""
    kind = after.get("prov_kind")
    if kind not in (ChangeKind.PROPOSED.value, ChangeKind.PROMPTED.value):
        return "Created", author
    made_by = " + refiner ".join(str(part) for part in (after.get("prov_mode"), after.get("prov_weights")) if part)
    if kind == ChangeKind.PROMPTED.value:
        return "Created from a prompt", f"prompt ({made_by})" if made_by else "prompt"
    score = f", score {after['score']:.2f}" if isinstance(after.get("score"), (int, float)) else ""
    examples = len((params.get("find_similar") or {}).get("examples") or [])
    from_examples = f" from {examples} example{'s' if examples != 1 else ''}" if examples else ""
    return f"Proposed by Find Similar{from_examples}{score}", f"find similar ({made_by})" if made_by else "find similar"


def _status(state: dict[str, Any]) -> str:
    return str(state.get("status", "?")).replace("_", " ")


def _category(state: dict[str, Any], categories: dict[int, Category]) -> str:
    category = categories.get(state.get("category_id", -1))
    return category.name if category is not None else str(state.get("category_id"))


def revertible(edit: Edit) -> bool:
    """An edit that left the instance as it is (not a deletion), and changed something."""
    return edit.after is not None and (edit.before is None or edit.mask_changed or edit.before != edit.after)


def revert_edit(doc: ImageDocument, edit: Edit) -> str:
    """Put the instance back as it was before ``edit`` (its mask and the fields the edit changed): one undo
    step of the document; a creation reverted deletes the instance. Returns what was done, in words."""
    i = edit.instance_id
    if edit.before is None:
        doc.delete_instance(i)
        return f"Instance {i} deleted: its creation was reverted (Ctrl+Z brings it back)"
    before, after = edit.before, edit.after or {}
    stack = doc.undo_stack
    stack.beginMacro(f"Revert edit {edit.id} #{i}")
    try:
        if edit.before_rle is not None:
            doc.apply_mask(i, decode_mask(edit.before_rle), "revert")
        fields = {
            "status": lambda v: doc.set_status(i, str(v)),
            "category_id": lambda v: doc.set_category(i, int(v)),
            "locked": lambda v: doc.set_locked(i, bool(v)),
            "hidden": lambda v: doc.set_visible(i, not bool(v)),
            "z_order": lambda v: doc.set_z(i, int(v)),
        }
        for key, put in fields.items():
            if key in before and before[key] != after.get(key):
                put(before[key])
    finally:
        stack.endMacro()
    return f"Instance {i} is back as it was before edit {edit.id} (Ctrl+Z undoes the revert)"


def draw_thumbnails(image: np.ndarray, masks: dict[int, dict[str, Any]], color: tuple[int, int, int]) -> dict[int, QImage]:
    """Edit id -> a THUMB-pixel picture of its mask over the photo, all framed alike (the union of the masks'
    boxes with some context). Runs on the thread pool."""
    if not masks:
        return {}
    boxes = rle_boxes(list(masks.values()))
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
    h, w = image.shape[:2]
    if len(boxes):
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    else:
        x0, y0, x1, y1 = 0, 0, w, h
    side = max(x1 - x0, y1 - y0) * 1.25 + 8
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax0, ay0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    ax1, ay1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    photo = (image[ay0:ay1, ax0:ax1].astype(np.float32) * 0.7).astype(np.uint8)
    scale = THUMB / max(ax1 - ax0, ay1 - ay0, 1)
    size = (max(1, round((ax1 - ax0) * scale)), max(1, round((ay1 - ay0) * scale)))
    tint = np.array(color, np.float32)
    out: dict[int, QImage] = {}
    for edit_id, rle in masks.items():
        mask = decode_mask(rle)[ay0:ay1, ax0:ax1]
        picture = photo.copy()
        picture[mask] = (picture[mask] * 0.35 + tint * 0.65).astype(np.uint8)
        small = np.ascontiguousarray(cv2.resize(picture, size, interpolation=cv2.INTER_AREA))
        out[edit_id] = QImage(small.data, size[0], size[1], size[0] * 3, QImage.Format.Format_RGB888).copy()
    return out


class EditHistoryPanel(QWidget):
    """The history list of one instance; ``revert_requested(edit)`` asks the window to revert an edit."""

    revert_requested = Signal(object)  # Edit

    def __init__(self, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self.doc: ImageDocument | None = None
        self.store: ProjectStore | None = None
        self.categories: dict[int, Category] = {}
        self.instance_id: int | None = None
        self._tokens = itertools.count(1)
        self._token = 0
        self.title = QLabel("No instance selected")
        self.title.setWordWrap(True)
        self.list = QListWidget()
        self.list.setObjectName("editHistory")
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setUniformItemSizes(False)
        self.list.setWordWrap(True)
        self.list.currentItemChanged.connect(lambda *_: self._update_button())
        self.revert_button = QPushButton("Revert to before this edit")
        self.revert_button.setToolTip("Put the instance back as it was before the chosen edit (one undo step)")
        self.revert_button.clicked.connect(self._revert)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.revert_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.read_only = False
        self._stale = False
        self._shown = True
        self._update_button()

    def set_shown(self, shown: bool) -> None:
        """Whether the panel is in sight (its dock's ``visibilityChanged``: a tabbed dock that is not the current tab
        stays "visible" to Qt, moved off the screen); coming into sight reads a stale list."""
        self._shown = shown
        if shown and self._stale:
            self.refresh()

    def set_context(self, doc: ImageDocument | None, store: ProjectStore | None,
                    categories: dict[int, Category]) -> None:
        self.doc, self.store, self.categories = doc, store, categories
        self.show_instance(doc.selected_id if doc is not None else None)

    def show_instance(self, instance_id: int | None) -> None:
        """List the edits of ``instance_id`` (None: nothing selected)."""
        self.instance_id = instance_id
        self.refresh()

    def refresh(self) -> None:
        """Read the history again (after a save of the shown instance).

        While the panel is out of sight (its dock tabbed behind Properties, as it starts, or closed: see
        ``set_shown``) this only notes that the list is stale, and the panel reads it when it comes into sight: a
        refresh reads the store on the GUI thread and decodes every listed mask on the pool, and pycocotools holds
        the GIL while it decodes (40-80 ms for one mask of an 8000x6000 photo), which the GUI thread then waits for."""
        if not self._shown:
            self._stale = True
            return
        self._stale = False
        self._token = next(self._tokens)
        current = self.list.currentItem()
        keep = current.data(EDIT_ROLE).id if current is not None else None
        self.list.clear()
        if self.store is None or self.instance_id is None or self.doc is None:
            self.title.setText("No instance selected")
            self._update_button()
            return
        try:
            edits = list(reversed(self.store.history(self.instance_id)))
        except ProjectError as e:  # a damaged edit row: say so where the list would be
            self.title.setText(f"Instance {self.instance_id}: its saved edits cannot be read ({e})")
            self._update_button()
            return
        self.title.setText(f"Instance {self.instance_id}: {plural(len(edits), 'saved edit')}, newest first"
                           if edits else f"Instance {self.instance_id}: as imported, no edits yet")
        by_id = {edit.id: edit for edit in edits}
        for edit in edits:
            what, who = describe_edit(edit, self.categories, by_id)
            stamp = datetime.fromtimestamp(edit.timestamp)
            item = QListWidgetItem(f"{what}\n{who} · {stamp:%d %b %H:%M}")
            item.setData(EDIT_ROLE, edit)
            item.setToolTip(f"Edit {edit.id}: {what}, by {who}, {stamp:%Y-%m-%d %H:%M:%S}")
            self.list.addItem(item)
            if edit.id == keep:
                self.list.setCurrentItem(item)
        self._update_button()
        masks = {e.id: (e.after_rle if e.after_rle is not None else e.before_rle) for e in edits if e.mask_changed}
        masks = dict(itertools.islice(masks.items(), MAX_THUMBS))
        if masks:
            token, image = self._token, self.doc.image
            color = self.doc.layer(self.instance_id).color if self.doc.has_layer(self.instance_id) else (255, 200, 0)
            self.tasks.start(lambda _progress: draw_thumbnails(image, masks, color), "history thumbnails",
                             lambda thumbs: self._thumbnails(token, thumbs), lambda _message: None)

    def _thumbnails(self, token: int, thumbs: dict[int, QImage]) -> None:
        if token != self._token:
            return
        for row in range(self.list.count()):
            item = self.list.item(row)
            image = thumbs.get(item.data(EDIT_ROLE).id)
            if image is not None:
                item.setIcon(QIcon(QPixmap.fromImage(image)))

    def set_read_only(self, read_only: bool) -> None:
        self.read_only = read_only
        self._update_button()

    def _update_button(self) -> None:
        item = self.list.currentItem()
        self.revert_button.setEnabled(not self.read_only and item is not None and revertible(item.data(EDIT_ROLE)))

    def _revert(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.revert_requested.emit(item.data(EDIT_ROLE))

    def select_edit(self, edit_id: int) -> bool:
        """Make the edit ``edit_id`` the current row (tests, and the window after a revert)."""
        for row in range(self.list.count()):
            if self.list.item(row).data(EDIT_ROLE).id == edit_id:
                self.list.setCurrentRow(row)
                return True
        return False
