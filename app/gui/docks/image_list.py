"""The image list: every image of the project with its instance count and what is left to review.

Image records are few enough to hold (20k for LVIS val); counts come from two grouped SQL queries and
are refreshed when an edit changes a status. "To review" counts every instance not accepted yet
(unreviewed, needs work, rejected). Long file names are elided in the middle, where COCO's differ.
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLineEdit, QTableView, QVBoxLayout, QWidget

from app.core.records import ImageRecord
from app.core.store.errors import ProjectError
from app.core.store.project import ProjectStore
from app.services.stats import TO_REVIEW

log = logging.getLogger(__name__)

Index = QModelIndex | QPersistentModelIndex
COLUMNS = ("Image", "Size", "Instances", "To review")


class ImageListModel(QAbstractTableModel):
    """Rows are the project's images in file order."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._images: list[ImageRecord] = []
        self._rows: dict[int, int] = {}
        self._counts: dict[int, int] = {}
        self._todo: dict[int, int] = {}

    def set_store(self, store: ProjectStore | None) -> None:
        self.beginResetModel()
        self._images = store.images() if store is not None else []
        self._rows = {img.id: row for row, img in enumerate(self._images)}
        self._load_counts(store)
        self.endResetModel()

    def refresh_counts(self, store: ProjectStore | None) -> None:
        self._load_counts(store)
        if self._images:
            self.dataChanged.emit(self.index(0, 2), self.index(len(self._images) - 1, 3))

    def _load_counts(self, store: ProjectStore | None) -> None:
        """The per-image counts; none shown where a damaged project cannot be counted (the window has said
        so when it opened or listed it)."""
        try:
            self._counts = store.counts_by_image() if store is not None else {}
            self._todo = store.counts_by_image(TO_REVIEW) if store is not None else {}
        except ProjectError as e:
            log.warning("image counts: %s", e)
            self._counts, self._todo = {}, {}

    def row_of(self, image_id: int) -> int:
        return self._rows.get(image_id, -1)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._images)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal and section == 3:
            return "Instances not accepted yet: unreviewed, needs work or rejected"
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        img = self._images[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return img.file_name
            if column == 1:
                return f"{img.width}×{img.height}"
            return (self._counts if column == 2 else self._todo).get(img.id, 0)
        if role == Qt.ItemDataRole.UserRole:
            return img.id
        if role == Qt.ItemDataRole.ToolTipRole:
            todo = self._todo.get(img.id, 0)
            return (f"{img.file_name}\nimage {img.id}, {img.width}×{img.height}, {self._counts.get(img.id, 0)} "
                    f"instances, {todo} to review (not accepted)")
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class ImageListPanel(QWidget):
    """Filterable image table; activating a row asks to open that image."""

    image_activated = Signal("qint64")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ImageListModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(0)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by file name")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._filter)
        self._current: int | None = None
        self.view = QTableView()
        self.view.setObjectName("imageTable")
        self.view.setModel(self.proxy)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.view.horizontalHeader().setResizeContentsPrecision(0)  # the rows on screen: a refresh stays cheap
        self.view.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.view.setWordWrap(False)
        self.view.setAlternatingRowColors(True)
        self.view.activated.connect(self._activated)
        self.view.clicked.connect(self._activated)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view)

    def _activated(self, index: QModelIndex) -> None:
        self.image_activated.emit(self.proxy.data(index, Qt.ItemDataRole.UserRole))

    def _filter(self, text: str) -> None:
        """Show the file names holding ``text``; the open image stays highlighted when it is among them."""
        self.proxy.setFilterFixedString(text)
        if self._current is not None:
            self.show_current(self._current)

    def show_current(self, image_id: int) -> None:
        """Highlight the open image without re-emitting ``image_activated``."""
        self._current = image_id
        row = self.model.row_of(image_id)
        if row < 0:
            return
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if index.isValid():
            self.view.selectRow(index.row())
            self.view.scrollTo(index)
