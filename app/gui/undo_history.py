"""Each image's undo history, kept while the window is open: Undo and Redo still work after moving to
another image and back (issue 13; docs/decisions/0019).

A document lives only while its image is open, but its undo stack stays here, one per image, in a
``QUndoGroup`` whose active stack is the open image's (the History dock shows the group). When the image
opens again, its new document takes the stack over (``ImageDocument(undo_stack=...)`` points the commands
at it): every edit was saved, so the masks read back from the project are the state the top command left,
and the commands' rectangle patches apply to them unchanged. The guidance strokes, which live only in the
window, are kept with the stack for the same reason.

A history is dropped when the project changes under it (the refine queue saving a result of an image that
is not open): its patches would no longer fit the masks.
"""
from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QUndoGroup, QUndoStack

from app.gui.editor.document import UNDO_LIMIT, ImageDocument
from app.gui.editor.layers import GUIDANCE

log = logging.getLogger(__name__)


class UndoHistory(QObject):
    """The undo stacks (and guidance strokes) of every image opened since the project was."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.group = QUndoGroup(self)
        self._stacks: dict[int, QUndoStack] = {}
        self._guidance: dict[int, dict[str, np.ndarray | None]] = {}

    def stack_for(self, image_id: int) -> QUndoStack:
        """The image's stack (a new, empty one the first time)."""
        stack = self._stacks.get(image_id)
        if stack is None:
            stack = QUndoStack(self)
            stack.setUndoLimit(UNDO_LIMIT)
            self.group.addStack(stack)
            self._stacks[image_id] = stack
        return stack

    def opened(self, doc: ImageDocument) -> None:
        """``doc`` (made with ``stack_for``) is now the open image: its strokes back, its stack active."""
        for kind, mask in self._guidance.pop(doc.image_id, {}).items():
            setattr(doc, kind, mask)
        self.group.setActiveStack(doc.undo_stack)

    def closed(self, doc: ImageDocument) -> None:
        """``doc`` is being closed: keep its guidance strokes with its stack."""
        kept = {kind: getattr(doc, kind) for kind in GUIDANCE if getattr(doc, kind) is not None}
        if kept:
            self._guidance[doc.image_id] = kept
        if self.group.activeStack() is doc.undo_stack:
            self.group.setActiveStack(None)

    def forget(self, image_id: int, why: str = "its masks changed outside the window") -> None:
        """Drop an image's history (``why``: its masks changed outside it, by default)."""
        stack = self._stacks.pop(image_id, None)
        if stack is not None:
            if stack.count():
                log.info("undo history of image %s dropped: %s", image_id, why)
            self.group.removeStack(stack)
            stack.deleteLater()
        self._guidance.pop(image_id, None)

    def clear(self) -> None:
        """Drop every history (the project closes)."""
        for image_id in list(self._stacks):
            self.forget(image_id, "the project was closed")
        self._guidance.clear()

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._stacks
