"""Properties of the selected instance: category and status (editable, each one undo step), area, score,
and what last changed its mask."""
from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QWidget

from app.core.records import Category, ChangeKind, ReviewStatus, category_labels
from app.core.store.project import ProjectStore
from app.core.store.errors import ProjectError
from app.gui.editor.document import ImageDocument

STATUS_TEXT = {s.value: s.value.replace("_", " ") for s in ReviewStatus}


class PropertiesPanel(QWidget):
    """Reads the document for live values and the store for the saved figures (score, last refinement)."""

    message = Signal(str)  # for the status bar

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc: ImageDocument | None = None
        self.store: ProjectStore | None = None
        self.editable = True
        self.instance_label = QLabel("—")
        self.category_box = QComboBox()
        self.category_box.setEditable(True)
        self.category_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.status_box = QComboBox()
        for value, text in STATUS_TEXT.items():
            self.status_box.addItem(text, value)
        self.area_label = QLabel()
        self.score_label = QLabel()
        self.provenance_label = QLabel()
        self.provenance_label.setWordWrap(True)
        self.refined_label = QLabel()
        self.image_label = QLabel()
        for label in (self.instance_label, self.area_label, self.score_label, self.provenance_label,
                      self.refined_label, self.image_label):
            label.setWordWrap(True)  # a long value wraps instead of widening the dock
        form = QFormLayout(self)
        form.addRow("Instance", self.instance_label)
        form.addRow("Category", self.category_box)
        form.addRow("Status", self.status_box)
        form.addRow("Area", self.area_label)
        form.addRow("Score", self.score_label)
        form.addRow("Last change", self.provenance_label)
        form.addRow("Last refinement", self.refined_label)
        form.addRow("Image", self.image_label)
        self.category_box.activated.connect(self._category_chosen)
        self.category_box.lineEdit().editingFinished.connect(self._category_typed)
        self.status_box.activated.connect(self._status_chosen)
        self.show_instance()

    def set_categories(self, categories: list[Category]) -> None:
        self.category_box.clear()
        labels = category_labels(categories)
        for cat in categories:
            self.category_box.addItem(labels[cat.id], cat.id)

    def set_editable(self, editable: bool) -> None:
        """Whether category and status may be changed here (not in a read-only window)."""
        self.editable = editable
        self.show_instance()

    def set_context(self, doc: ImageDocument | None, store: ProjectStore | None, image_text: str = "") -> None:
        self.doc, self.store = doc, store
        self.image_label.setText(image_text)
        self.show_instance()

    def show_instance(self) -> None:
        """Refresh from the selected instance (or show that none is selected); the rows are laid out again at
        once, since a value that wraps to two lines changes its row's height."""
        self._show_instance()
        self.layout().activate()

    def _show_instance(self) -> None:
        doc = self.doc
        selected = None if doc is None else doc.selected_id
        enabled = selected is not None and self.editable
        self.category_box.setEnabled(enabled)
        self.status_box.setEnabled(enabled)
        if doc is None or selected is None:
            self.instance_label.setText("none selected")
            self.category_box.setCurrentIndex(-1)
            self.status_box.setCurrentIndex(-1)
            for label in (self.area_label, self.score_label, self.provenance_label, self.refined_label):
                label.setText("")
            return
        layer = doc.layer(selected)
        flags = [text for on, text in ((layer.locked, "locked"), (not layer.visible, "hidden")) if on]
        self.instance_label.setText(f"{layer.id}" + (f" ({', '.join(flags)})" if flags else ""))
        self.category_box.setCurrentIndex(self.category_box.findData(layer.category_id))
        self.status_box.setCurrentIndex(self.status_box.findData(layer.status))
        box = doc.layer_bbox(selected)
        area = 0 if box is None else cv2.countNonZero(layer.mask[box[1] : box[3], box[0] : box[2]].view(np.uint8))
        self.area_label.setText(f"{area} px")
        prov = layer.provenance
        details = "" if prov is None else ", ".join(
            f"{k} {getattr(prov, k)}" for k in ("weights", "mode", "steps") if getattr(prov, k) is not None)
        kind = "—" if prov is None else ChangeKind(prov.kind).value
        self.provenance_label.setText(kind + (f" ({details})" if details else ""))
        self.score_label.setText("—")
        self.refined_label.setText("—")
        if self.store is not None:
            try:
                stored = self.store.instance(selected)
            except ProjectError:
                return
            if stored.score is not None:
                self.score_label.setText(f"{stored.score:.3f}")
            if stored.changed_pixels is not None:
                confidence = "" if stored.mean_confidence is None else f", mean confidence {stored.mean_confidence:.2f}"
                self.refined_label.setText(f"{stored.changed_pixels} px changed{confidence}")

    def _category_chosen(self, index: int) -> None:
        doc = self.doc
        if doc is not None and doc.selected_id is not None and index >= 0:
            doc.set_category(doc.selected_id, self.category_box.itemData(index))

    def _category_typed(self) -> None:
        """A typed name that is none of the project's categories goes back to the instance's own, and says so:
        the box picks among the categories, it does not make new ones."""
        text = self.category_box.currentText()
        if text and self.category_box.findText(text) < 0:
            self._show_instance()
            self.message.emit(f"No category is named \"{text}\": pick one of the project's")

    def _status_chosen(self, index: int) -> None:
        doc = self.doc
        if doc is not None and doc.selected_id is not None and index >= 0:
            doc.set_status(doc.selected_id, self.status_box.itemData(index))
