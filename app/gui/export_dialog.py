"""The export dialog: COCO, LVIS, results or PNG masks; masks as imported, RLE or polygons; all or accepted only.

The export itself is the command line's (``app.services.datasets.export_project``), run on the thread pool against its own
read-only connection to the project, so the window stays usable and the file is written atomically. The
bar follows the instances written; Cancel stops the export (nothing is written). When it is done the
dialog stays open on the export's report: what was written, what its "source format" counts mean in words,
and every instance it could not write as asked (a polygon that cannot represent its mask, say).

The export goes by default into a visible ``exports`` folder beside the project, or, for a project kept in
a hidden or the application's own folder (the demo's), into Documents/SegRefiner Studio/exports.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QStandardPaths, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPlainTextEdit, QProgressBar, QPushButton, QRadioButton, QVBoxLayout, QWidget,
)

from app.core.formats.coco_export import SegmentationMode
from app.core.report import ExportReport
from app.core.wording import plural
from app.gui import import_dialogs
from app.gui.tasks import Task, TaskRunner
from app.services.datasets import explain_source_formats, export_project
from app.services.formats import EXPORT_FORMATS, default_export_format

MAX_LISTED_PROBLEMS = 200
EXPORTS = "exports"


def default_export_dir(project: Path) -> Path:
    """``exports`` beside the project, unless the project lives in a hidden or the application's own folder
    (then Documents/SegRefiner Studio/exports): an export is meant to be found."""
    folder = project.resolve().parent
    app_data = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)).resolve()
    hidden = any(part.startswith(".") for part in folder.parts) or folder.is_relative_to(app_data)
    return (import_dialogs.default_projects_dir() if hidden else folder) / EXPORTS


@dataclass(frozen=True)
class ExportChoice:
    """``export_project``'s arguments as the dialog is set."""

    fmt: str
    out: Path
    segmentation: SegmentationMode
    accepted_only: bool

    def run(self, project: Path, progress: Callable[[int, int], None]) -> ExportReport:
        return export_project(project, self.fmt, self.out, segmentation=self.segmentation,
                              accepted_only=self.accepted_only, progress=progress)


class ExportDialog(QDialog):
    """Choose format, options and destination; the export runs in the background with a progress bar,
    then the dialog shows its report."""

    exported = Signal(str)   # destination
    failed = Signal(str)     # message

    def __init__(self, project: Path, kind: str, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setObjectName("exportDialog")
        self.project = project
        self.tasks = tasks
        self.task: Task | None = None
        self.report: ExportReport | None = None
        self.format_box = QComboBox()
        for fmt in EXPORT_FORMATS.values():
            self.format_box.addItem(fmt.description, fmt.name)
        self.format_box.setCurrentIndex(self.format_box.findData(default_export_format(kind)))
        self.source_button = QRadioButton("As imported; masks changed here as RLE (exact)")
        self.rle_button = QRadioButton("RLE for every instance (exact)")
        self.polygon_button = QRadioButton("Polygons (RLE where a polygon cannot be exact)")
        self.source_button.setChecked(True)
        self.accepted_only = QCheckBox("Only instances marked accepted")
        self.path_edit = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.report_view = QPlainTextEdit()
        self.report_view.setReadOnly(True)
        self.report_view.setObjectName("exportReport")
        self.report_view.hide()
        form = QFormLayout()
        form.addRow("Format", self.format_box)
        form.addRow("Masks", self.source_button)
        form.addRow("", self.rle_button)
        form.addRow("", self.polygon_button)
        form.addRow("", self.accepted_only)
        form.addRow("Save to", path_row)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.report_view, 1)
        layout.addWidget(self.buttons)
        self.format_box.currentIndexChanged.connect(self._format_changed)
        self._format_changed()

    @property
    def fmt(self) -> str:
        return self.format_box.currentData()

    @property
    def to_folder(self) -> bool:
        return EXPORT_FORMATS[self.fmt].target == "folder"

    def _default_path(self) -> Path:
        stem = self.project.with_suffix("").name
        folder = default_export_dir(self.project)
        return folder / (f"{stem}-{self.fmt}" if self.to_folder else f"{stem}-{self.fmt}.json")

    def _format_changed(self) -> None:
        for button in (self.source_button, self.rle_button, self.polygon_button):
            button.setEnabled(EXPORT_FORMATS[self.fmt].json)
        self.path_edit.setText(str(self._default_path()))

    def _browse(self) -> None:
        if self.to_folder:
            path = QFileDialog.getExistingDirectory(self, "Export masks to", str(Path(self.path_edit.text()).parent))
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path_edit.text(), "JSON (*.json)")
        if path:
            self.path_edit.setText(path)

    def choice(self) -> ExportChoice:
        """What to export, as the dialog is set."""
        return ExportChoice(
            fmt=self.fmt,
            out=Path(self.path_edit.text().strip()).expanduser(),
            segmentation=self._segmentation(),
            accepted_only=self.accepted_only.isChecked(),
        )

    def _segmentation(self) -> SegmentationMode:
        if self.rle_button.isChecked():
            return "rle"
        return "polygon" if self.polygon_button.isChecked() else "source"

    def start(self) -> None:
        """Run the export on the thread pool; the report shows here when it is written."""
        if not self.path_edit.text().strip():
            self.status.setText("Choose where to save the export")
            return
        choice = self.choice()
        try:
            choice.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            self.status.setText(f"Cannot create the folder {choice.out.parent}: {error.strerror or error}")
            return
        self.report = None
        self.report_view.hide()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting to {choice.out}…")
        self.task = self.tasks.start(
            lambda progress: choice.run(self.project, progress), f"export to {choice.out}",
            lambda report: self._done(report, choice.out), self._failed, self._progress,
        )

    def reject(self) -> None:
        """Cancel stops a running export (nothing is written) and closes the dialog."""
        if self.task is not None:
            self.task.cancel()
        super().reject()

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(done)
        if total:
            self.status.setText(f"Exporting… {done} of {total} instances")

    def _done(self, report: ExportReport, destination: Path) -> None:
        self.task = None
        self.report = report
        self.progress.hide()
        problems = len(report.problems)
        warning = f"; {plural(problems, 'instance')} not written as asked, see below" if problems else ""
        self.status.setText(f"Exported to {destination}{warning}")
        words = explain_source_formats(dict(report.counts))
        self.report_view.setPlainText(report.summary(max_problems=MAX_LISTED_PROBLEMS) + (f"\n\n{words}" if words else ""))
        self.report_view.show()
        self.export_button.setEnabled(True)
        self.export_button.setText("Export again")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Close")
        self.exported.emit(str(destination))

    def _failed(self, message: str) -> None:
        cancelled = self.task is not None and self.task.cancelled
        self.task = None
        self.progress.hide()
        self.export_button.setEnabled(True)
        if cancelled:
            self.status.setText("Export cancelled; nothing was written")
            return
        self.status.setText(f"Export failed: {message}")
        self.failed.emit(message)
