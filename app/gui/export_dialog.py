"""The export dialog: COCO, LVIS, COCO results or PNG masks, RLE or polygons, all or accepted only.

The export itself is the CLI's (``cli_dataset.run_export``), run on the thread pool against its own
read-only connection to the project, so the window stays usable and the file is written atomically.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QProgressBar, QPushButton, QRadioButton, QVBoxLayout, QWidget,
)

from app.cli_dataset import run_export
from app.gui.workers import TaskRunner

FORMATS = {
    "coco": "COCO instances JSON",
    "lvis": "LVIS v1 JSON",
    "results": "COCO results (predictions) JSON",
    "png-label": "PNG label maps (one per image, z-order kept)",
    "png-binary": "PNG binary masks (one per instance)",
}


def default_format(kind: str) -> str:
    """The export format matching what the project was imported from."""
    if kind in ("coco", "lvis", "results"):
        return kind
    return "png-label" if kind.startswith("png") else "coco"


class ExportDialog(QDialog):
    """Choose format, options and destination; the export runs in the background with a busy bar."""

    exported = Signal(str)   # destination
    failed = Signal(str)     # message

    def __init__(self, project: Path, kind: str, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setObjectName("exportDialog")
        self.project = project
        self.tasks = tasks
        self.format_box = QComboBox()
        for key, text in FORMATS.items():
            self.format_box.addItem(text, key)
        self.format_box.setCurrentIndex(self.format_box.findData(default_format(kind)))
        self.rle_button = QRadioButton("RLE (exact)")
        self.polygon_button = QRadioButton("Polygons (RLE where a polygon cannot be exact)")
        self.rle_button.setChecked(True)
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
        form = QFormLayout()
        form.addRow("Format", self.format_box)
        form.addRow("Masks", self.rle_button)
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
        layout.addWidget(self.buttons)
        self.format_box.currentIndexChanged.connect(self._format_changed)
        self._format_changed()

    @property
    def fmt(self) -> str:
        return self.format_box.currentData()

    def _default_path(self) -> Path:
        stem = self.project.with_suffix("").name
        if self.fmt.startswith("png"):
            return self.project.parent / f"{stem}-masks"
        return self.project.parent / f"{stem}-{self.fmt}.json"

    def _format_changed(self) -> None:
        png = self.fmt.startswith("png")
        self.rle_button.setEnabled(not png)
        self.polygon_button.setEnabled(not png)
        self.path_edit.setText(str(self._default_path()))

    def _browse(self) -> None:
        if self.fmt.startswith("png"):
            path = QFileDialog.getExistingDirectory(self, "Export PNG masks to", str(self.project.parent))
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path_edit.text(), "JSON (*.json)")
        if path:
            self.path_edit.setText(path)

    def arguments(self) -> argparse.Namespace:
        """The CLI export's arguments for the chosen options."""
        fmt = self.fmt
        return argparse.Namespace(
            project=self.project,
            format="png" if fmt.startswith("png") else fmt,
            out=Path(self.path_edit.text()).expanduser(),
            polygons=self.polygon_button.isChecked() and not fmt.startswith("png"),
            accepted_only=self.accepted_only.isChecked(),
            png_layout="binary" if fmt == "png-binary" else "label",
        )

    def start(self) -> None:
        """Run the export on the thread pool; the dialog closes when it is written."""
        args = self.arguments()
        if not str(args.out).strip():
            self.status.setText("Choose where to save the export")
            return
        self.progress.show()
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting to {args.out}…")
        self.tasks.start(lambda _progress: run_export(args), f"export to {args.out}",
                         lambda _result: self._done(str(args.out)), self._failed)

    def _done(self, destination: str) -> None:
        self.progress.hide()
        self.exported.emit(destination)
        self.accept()

    def _failed(self, message: str) -> None:
        self.progress.hide()
        self.export_button.setEnabled(True)
        self.status.setText(f"Export failed: {message}")
        self.failed.emit(message)
