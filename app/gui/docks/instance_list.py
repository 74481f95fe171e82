"""The instance list: filter by category, status, score, area and change size; sort the review.

The model never holds the whole listing: the row count and pages of 64 rows come from the store's SQL
(``count_instances`` / ``list_instances`` with limit and offset) when the view asks for them, so a
245k-instance project scrolls as smoothly as a small one, and the refresh after each save re-reads only
the page on screen. The Area column shows the mask's pixels, read
for the rows on screen only (the store's ``area`` is the file's own, a polygon's float area, shown in the
tooltip); the category comes first so that it stays readable in a narrow dock.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import qtawesome as qta
from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QCompleter, QDoubleSpinBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
    QSpinBox, QTableView, QToolButton, QVBoxLayout, QWidget,
)

from app.core.records import ChangeKind, ReviewStatus, category_labels
from app.core.store.errors import ProjectError
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from app.core.store.rows import InstanceSummary
from app.services.stats import TO_REVIEW, pixel_area

Index = QModelIndex | QPersistentModelIndex
PAGE = 64
MAX_PAGES = 256
# The image comes after the figures: a review sorts by them, and the row's photo opens when it is picked.
STATUS, CATEGORY, ID, AREA, SCORE, CHANGE, CONFIDENCE, IMAGE, FLAGS = range(9)
COLUMNS = ("", "Category", "Id", "Area", "Score", "Change", "Conf.", "Image", "")
HEADER_TIPS = {
    STATUS: "Review status", AREA: "Pixels in the mask (the annotation file's own area in each row's tooltip)",
    CHANGE: "Pixels the last refinement changed", CONFIDENCE: "Mean confidence of the last refinement",
    IMAGE: "The image the instance is on (listed with All images)", FLAGS: "Locked, hidden or a crowd region",
}
NUMERIC = (ID, AREA, SCORE, CHANGE, CONFIDENCE)
TO_REVIEW_KEY = "to_review"
"""The status filter's "To review": every instance not accepted (unreviewed, needs work, rejected)."""
ALL_IMAGES = 1
"""The scope box's "All images" (0 is "This image")."""
PROPOSALS_KEY = "proposals"
"""The status filter's "Proposals": find-similar's proposals not reviewed yet (docs/decisions/0021)."""
SORTS: dict[str, tuple[str, bool]] = {
    "Id": ("id", False),
    "Largest change": ("changed_pixels", True),
    "Lowest confidence": ("mean_confidence", False),
    "Largest area": ("area", True),
    "Smallest area": ("area", False),
    "Lowest score": ("score", False),
    "Highest score": ("score", True),
}
STATUS_STYLE: dict[ReviewStatus, tuple[str, str]] = {
    ReviewStatus.UNREVIEWED: ("mdi6.circle-outline", "#9ca3af"),
    ReviewStatus.ACCEPTED: ("mdi6.check-circle", "#16a34a"),
    ReviewStatus.REJECTED: ("mdi6.close-circle", "#dc2626"),
    ReviewStatus.NEEDS_WORK: ("mdi6.alert-circle", "#f59e0b"),
}
STATUS_TEXT = {s: s.value.replace("_", " ") for s in ReviewStatus}
CATEGORY_WIDTH = 100
CELL_PADDING = 14


class InstanceTableModel(QAbstractTableModel):
    """Rows of ``store.list_instances(query)``, fetched a page at a time.

    A damaged project's rows cannot be listed: ``problem`` says so once per listing, and the rows that could
    not be read stay empty (a model that raised would leave Qt's view half drawn)."""

    problem = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._reported: str | None = None
        self._store: ProjectStore | None = None
        self._query = InstanceFilter()
        self._count = 0
        self._pages: OrderedDict[int, list[InstanceSummary]] = OrderedDict()
        self._labels: dict[int, str] = {}
        self._image_names: dict[int, str] = {}
        self._pixels: dict[int, int] = {}
        self._icons = {s: qta.icon(name, color=color) for s, (name, color) in STATUS_STYLE.items()}
        self._lock_icon = qta.icon("mdi6.lock", color="#9ca3af")
        self._hidden_icon = qta.icon("mdi6.eye-off", color="#9ca3af")
        self._crowd_icon = qta.icon("mdi6.account-group", color="#9ca3af")

    def set_store(self, store: ProjectStore | None) -> None:
        self._store = store
        try:
            self._labels = category_labels(store.categories()) if store is not None else {}
            self._image_names = {r.id: Path(r.file_name).name for r in store.images()} if store is not None else {}
        except ProjectError as e:
            self._labels, self._image_names = {}, {}
            self._report(e)
        self._pixels.clear()
        self.set_query(InstanceFilter())

    def _report(self, error: ProjectError) -> None:
        if str(error) != self._reported:
            self._reported = str(error)
            self.problem.emit(str(error))

    def _count_of(self, query: InstanceFilter) -> int:
        assert self._store is not None
        try:
            return self._store.count_instances(query)
        except ProjectError as e:
            self._report(e)
            return 0

    def forget_areas(self, instance_ids: set[int]) -> None:
        """Their masks changed: read their pixel areas again when shown."""
        for i in instance_ids:
            self._pixels.pop(i, None)

    def pixels(self, instance_id: int) -> int | None:
        """The instance's mask pixels (read from the store once, when its row is first shown)."""
        if instance_id not in self._pixels and self._store is not None:
            try:
                self._pixels[instance_id] = pixel_area(self._store, instance_id)
            except ProjectError:
                return None
        return self._pixels.get(instance_id)

    @property
    def query(self) -> InstanceFilter:
        return self._query

    def set_query(self, query: InstanceFilter) -> None:
        self.beginResetModel()
        self._query = query
        self._pages.clear()
        self._reported = None
        self._count = self._count_of(query) if self._store is not None else 0
        self.endResetModel()

    def refresh(self) -> None:
        """Re-read after an edit: rows keep their places when the count did not change."""
        if self._store is None:
            return
        count = self._count_of(self._query)
        if count != self._count:
            self.set_query(self._query)
            return
        self._pages.clear()
        if count:
            self.dataChanged.emit(self.index(0, 0), self.index(count - 1, len(COLUMNS) - 1))

    def summary(self, row: int) -> InstanceSummary | None:
        if not 0 <= row < self._count or self._store is None:
            return None
        page_no = row // PAGE
        page = self._pages.get(page_no)
        if page is None:
            query = replace(self._query, limit=PAGE, offset=page_no * PAGE)
            try:
                page = self._store.list_instances(query)
            except ProjectError as e:
                self._report(e)
                page = []
            self._pages[page_no] = page
            if len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        offset = row - page_no * PAGE
        return page[offset] if offset < len(page) else None

    def row_of(self, instance_id: int) -> int:
        """The row of an instance among the first and the cached pages (-1 when not among them)."""
        self.summary(0)
        for page_no, page in self._pages.items():
            for offset, summary in enumerate(page):
                if summary.id == instance_id:
                    return page_no * PAGE + offset
        return -1

    def widest(self, column: int) -> str:
        """The widest text the listing can have in the Id or Area column (its largest value, one query), so that
        a row scrolled to later is not cut."""
        if self._store is None or column not in (ID, AREA):
            return ""
        key = "id" if column == ID else "area"
        try:
            top = self._store.list_instances(replace(self._query, sort_by=key, descending=True, limit=1, offset=0))
        except ProjectError as e:
            self._report(e)
            return ""
        if not top:
            return ""
        return str(top[0].id) if column == ID else f"{top[0].area * 1.01 + 1:.0f}"  # pixels vs the file's area

    def category_name(self, category_id: int) -> str:
        return self._labels.get(category_id, str(category_id))

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS.get(section)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        s = self.summary(index.row())
        if s is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.UserRole:
            return s.id
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(s, column)
        if role == Qt.ItemDataRole.DecorationRole:
            if column == STATUS:
                return self._icons[s.status]
            if column == FLAGS:
                return (self._lock_icon if s.locked else self._hidden_icon if s.hidden
                        else self._crowd_icon if s.iscrowd else None)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and s.hidden:
            return QColor("#9ca3af")
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(s, column)
        return None

    def _tooltip(self, s: InstanceSummary, column: int) -> str:
        flags = (" (locked)" if s.locked else "") + (" (hidden)" if s.hidden else "") + (
            " (crowd region)" if s.iscrowd else "")
        image = self._image_names.get(s.image_id, f"image {s.image_id}")
        text = f"instance {s.id} on {image}: {self.category_name(s.category_id)}, {STATUS_TEXT[s.status]}"
        if column == AREA:
            pixels = self.pixels(s.id)
            mask = "" if pixels is None else f"{pixels:,} px in the mask; "
            return f"{mask}area in the annotation file: {s.area:,.2f}"
        return text + flags

    def _display(self, s: InstanceSummary, column: int) -> Any:
        if column == ID:
            return s.id
        if column == CATEGORY:
            return self.category_name(s.category_id)
        if column == SCORE:
            return "" if s.score is None else f"{s.score:.2f}"
        if column == AREA:
            pixels = self.pixels(s.id)
            return "" if pixels is None else pixels
        if column == CHANGE:
            return "" if s.changed_pixels is None else s.changed_pixels
        if column == CONFIDENCE:
            return "" if s.mean_confidence is None else f"{s.mean_confidence:.2f}"
        if column == IMAGE:
            return self._image_names.get(s.image_id, str(s.image_id))
        return None


class TypingReplacesAny(QObject):
    """A filter showing its "any" text takes a typed number in its place: Qt keeps the text and refuses the digit
    unless the user first selects it, so typing 500 into "area ≥ any" did nothing."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.KeyPress and isinstance(watched, (QSpinBox, QDoubleSpinBox)):
            typed = event.text()  # type: ignore[attr-defined]
            if typed and (typed.isdigit() or typed in ".,") and watched.text() == watched.specialValueText():
                watched.selectAll()
        return False


class InstanceListPanel(QWidget):
    """Filters, sort and the instance table; lock / hide / z-order buttons act on the selection."""

    instance_activated = Signal("qint64")
    filters_changed = Signal()

    def __init__(self, layer_actions: list[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = InstanceTableModel(self)
        self._build_filters()
        self.view = QTableView()
        self.view.setObjectName("instanceTable")
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setAlternatingRowColors(True)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)  # fitted on new listings, not per save
        header.setResizeContentsPrecision(0)  # fit to the rows on screen, not the first thousand (each a query)
        header.setMinimumSectionSize(22)
        header.setStretchLastSection(True)  # the flags column takes the rest: no bare strip beside the table
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.view.activated.connect(self._activated)
        self.view.clicked.connect(self._activated)
        buttons = QHBoxLayout()
        for action in layer_actions:
            button = QToolButton()
            button.setDefaultAction(action)
            button.setAutoRaise(True)
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.count_label = QLabel()
        buttons.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self.filter_form)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)

    def _build_filters(self) -> None:
        self.scope_box = QComboBox()
        self.scope_box.addItems(["This image", "All images"])  # indices 0 and ALL_IMAGES
        self.category_box = QComboBox()
        self.category_box.setEditable(True)
        self.category_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.category_box.completer().setFilterMode(Qt.MatchFlag.MatchContains)
        self.category_box.completer().setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.status_box = QComboBox()
        self.status_box.addItem("Any status", None)
        self.status_box.addItem(qta.icon("mdi6.progress-question"), "To review", TO_REVIEW_KEY)
        self.status_box.setItemData(1, "Every instance not accepted yet: unreviewed, needs work or rejected",
                                    Qt.ItemDataRole.ToolTipRole)
        self.status_box.addItem(qta.icon("mdi6.image-search"), "Proposals", PROPOSALS_KEY)
        self.status_box.setItemData(2, "Find Similar's proposals not reviewed yet (accept keeps one, reject marks it)",
                                    Qt.ItemDataRole.ToolTipRole)
        for status in ReviewStatus:
            self.status_box.addItem(qta.icon(STATUS_STYLE[status][0], color=STATUS_STYLE[status][1]),
                                    STATUS_TEXT[status], status.value)
        self.sort_box = QComboBox()
        self.sort_box.addItems(list(SORTS))
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(0.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setSpecialValueText("any")
        self.min_area = QSpinBox()
        self.min_area.setRange(0, 100_000_000)
        self.min_area.setSingleStep(100)
        self.min_area.setSpecialValueText("any")
        self.min_area.setSuffix(" px")
        self.min_change = QSpinBox()
        self.min_change.setRange(0, 100_000_000)
        self.min_change.setSingleStep(50)
        self.min_change.setSpecialValueText("any")
        self.min_change.setSuffix(" px")
        self.min_change.setToolTip("Only instances whose last refinement changed at least this many pixels")
        self._typing = TypingReplacesAny(self)
        for box in (self.min_score, self.min_area, self.min_change):
            box.installEventFilter(self._typing)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        row1 = QHBoxLayout()
        row1.addWidget(self.scope_box)
        row1.addWidget(self.status_box)
        form.addRow("Show", row1)
        form.addRow("Category", self.category_box)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("score ≥"))
        row2.addWidget(self.min_score)
        row2.addWidget(QLabel("area ≥"))
        row2.addWidget(self.min_area)
        form.addRow("Min", row2)
        row3 = QHBoxLayout()
        row3.addWidget(self.min_change)
        row3.addWidget(QLabel("Sort"))
        row3.addWidget(self.sort_box, 1)
        form.addRow("Change ≥", row3)
        self.filter_form = form
        self._compact()
        for box in (self.scope_box, self.status_box, self.sort_box):
            box.currentIndexChanged.connect(self._changed)
        self.category_box.activated.connect(self._changed)
        self.category_box.lineEdit().editingFinished.connect(self._category_typed)
        for spin in (self.min_score, self.min_area, self.min_change):
            spin.valueChanged.connect(self._changed)

    def _compact(self) -> None:
        """Let the filters narrow with the dock: a combo box asks for its longest item by default and a spin box
        for its largest value (100,000,000 px), which kept the dock 366 px wide and a small window's photo a
        strip; given room they still grow (the form's fields grow)."""
        for box, letters in ((self.scope_box, 7), (self.status_box, 7), (self.sort_box, 7), (self.category_box, 10)):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(letters)
        for spin in (self.min_area, self.min_change):
            spin.setMinimumWidth(spin.fontMetrics().horizontalAdvance("0000 px") + 24)

    # ----- state
    def set_store(self, store: ProjectStore | None) -> None:
        self.category_box.blockSignals(True)
        self.category_box.clear()
        self.category_box.addItem("All categories", None)
        if store is not None:
            categories = store.categories()
            labels = category_labels(categories)
            for cat in categories:
                self.category_box.addItem(labels[cat.id], cat.id)
        self.category_box.blockSignals(False)
        self.model.set_store(store)
        scored = store is not None and store.count_instances(InstanceFilter(min_score=float("-inf"))) > 0
        self.view.setColumnHidden(SCORE, not scored)  # ground truth has no scores: the room goes to the rest
        self._update_count()

    def reveal_scores(self) -> None:
        """Show the score column (scored instances were just added: find-similar's proposals)."""
        self.view.setColumnHidden(SCORE, False)

    def filters(self) -> dict[str, Any]:
        """The filter widgets' values, as kept in the session state."""
        return {
            "scope": self.scope_box.currentIndex(),
            "category": self.category_box.currentData(),
            "status": self.status_box.currentData(),
            "min_score": self.min_score.value(),
            "min_area": self.min_area.value(),
            "min_change": self.min_change.value(),
            "sort": self.sort_box.currentText(),
        }

    def set_filters(self, values: dict[str, Any]) -> None:
        widgets = (self.scope_box, self.category_box, self.status_box, self.sort_box,
                   self.min_score, self.min_area, self.min_change)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.scope_box.setCurrentIndex(int(values.get("scope", 0)))
            self.category_box.setCurrentIndex(max(0, self.category_box.findData(values.get("category"))))
            self.status_box.setCurrentIndex(max(0, self.status_box.findData(values.get("status"))))
            self.sort_box.setCurrentText(str(values.get("sort", "Id")))
            self.min_score.setValue(float(values.get("min_score", 0.0)))
            self.min_area.setValue(int(values.get("min_area", 0)))
            self.min_change.setValue(int(values.get("min_change", 0)))
        finally:
            for w in widgets:
                w.blockSignals(False)

    def build_query(self, image_id: int | None) -> InstanceFilter:
        f = self.filters()
        sort_by, descending = SORTS.get(f["sort"], SORTS["Id"])
        proposals = f["status"] == PROPOSALS_KEY
        return InstanceFilter(
            image_id=None if f["scope"] == ALL_IMAGES else image_id,
            category_ids=None if f["category"] is None else [f["category"]],
            statuses=None if f["status"] is None else TO_REVIEW if f["status"] == TO_REVIEW_KEY else [
                ReviewStatus.UNREVIEWED] if proposals else [ReviewStatus(f["status"])],
            provenance_kinds=[ChangeKind.PROPOSED] if proposals else None,
            min_score=f["min_score"] or None,
            min_area=f["min_area"] or None,
            min_changed_pixels=f["min_change"] or None,
            sort_by=sort_by,
            descending=descending,
        )

    def apply(self, image_id: int | None) -> None:
        """Re-run the listing for the open image (the 'This image' scope)."""
        self.model.set_query(self.build_query(image_id))
        self.view.setColumnHidden(IMAGE, self.filters()["scope"] != ALL_IMAGES)  # one image: it is the open one
        self._update_count()
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Columns to their contents on screen, the category at least ``CATEGORY_WIDTH``: once per listing
        (fitting them after every save would read every visible cell again)."""
        for column in range(len(COLUMNS)):
            self.view.resizeColumnToContents(column)
        self.view.setColumnWidth(CATEGORY, max(CATEGORY_WIDTH, self.view.columnWidth(CATEGORY)))
        self._widen_numbers()

    def _widen_numbers(self) -> None:
        """The Id and Area columns at least as wide as their widest value in the listing (one query each)."""
        metrics = self.view.fontMetrics()
        for column in (ID, AREA):
            needed = metrics.horizontalAdvance(self.model.widest(column)) + CELL_PADDING
            self.view.setColumnWidth(column, max(needed, self.view.columnWidth(column)))

    def refresh(self, changed: set[int] | None = None) -> None:
        """Re-read the rows after edits; ``changed`` instances' masks may have changed too (a mask that grew a
        digit widens the Area column)."""
        self.model.forget_areas(changed or set())
        self.model.refresh()
        self._update_count()
        if changed:
            self._widen_numbers()

    def show_current(self, instance_id: int | None) -> None:
        """Highlight the selected instance when it is in the loaded rows."""
        row = -1 if instance_id is None else self.model.row_of(instance_id)
        if row < 0:
            self.view.clearSelection()
            return
        self.view.selectRow(row)
        self.view.scrollTo(self.model.index(row, 0))

    # ----- internals
    def _changed(self) -> None:
        self.filters_changed.emit()

    def _category_typed(self) -> None:
        index = self.category_box.findText(self.category_box.currentText(), Qt.MatchFlag.MatchFixedString)
        if index >= 0 and index != self.category_box.currentIndex():
            self.category_box.setCurrentIndex(index)
        self._changed()

    def _update_count(self) -> None:
        count = self.model.rowCount()
        what = {TO_REVIEW_KEY: " to review (not accepted)", PROPOSALS_KEY: " proposed, to review"}.get(
            self.status_box.currentData(), "")
        self.count_label.setText(f"{count} instance{'' if count == 1 else 's'}{what}")

    def _activated(self, index: QModelIndex) -> None:
        instance_id = self.model.data(index, Qt.ItemDataRole.UserRole)
        if instance_id is not None:
            self.instance_activated.emit(instance_id)
