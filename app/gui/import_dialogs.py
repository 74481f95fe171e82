"""The file dialogs that ask what to import: the annotation file or mask folder, the images folder, and
for a results file the COCO/LVIS file of its images. The answer is an ``ImportRequest`` for the import
service; the format of a dropped file is detected by the same ``detect_format`` the command line uses.

Then ``ask_project_path`` asks where the new project goes (with its lock and import report): by default a
folder of the user's documents, never the dataset's own folder unasked, which may be read-only or shared.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.services.datasets import PROJECT_SUFFIX, ImportRequest, detect_format

JSON_FILTER = "JSON (*.json)"
APP_FOLDER = "SegRefiner Studio"


def default_projects_dir() -> Path:
    """Where new projects and exports go unless the user says otherwise: Documents/SegRefiner Studio."""
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(documents or Path.home()) / APP_FOLDER


LAST_FOLDER = "dialogs/last_folder"


def start_folder(settings: QSettings) -> str:
    """Where an open or import dialog starts: the folder of the last file chosen in one, else Documents (not
    the folder the app happened to be started from)."""
    last = settings.value(LAST_FOLDER)
    if isinstance(last, str) and Path(last).is_dir():
        return last
    return QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())


def remember_folder(settings: QSettings, chosen: str | Path) -> None:
    """The next dialog starts beside ``chosen`` (a file: its folder; a folder: its parent)."""
    if chosen:
        settings.setValue(LAST_FOLDER, str(Path(chosen).parent))


def ask_project_path(parent: QWidget, source: Path) -> Path | None:
    """Where to save the project made from ``source`` (None: the user cancelled)."""
    folder = default_projects_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)  # so the dialog opens there
    except OSError:
        folder = Path.home()
    suggestion = folder / (source.stem if source.is_file() else source.name or "project")
    suggestion = suggestion.with_name(suggestion.name + PROJECT_SUFFIX)
    while True:  # the dialog does not offer to replace a project: an import never overwrites one
        path, _ = QFileDialog.getSaveFileName(parent, f"Save the project made from {source.name} as", str(suggestion),
                                              f"Projects (*{PROJECT_SUFFIX})",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if not path:
            return None
        chosen = Path(path) if Path(path).suffix == PROJECT_SUFFIX else Path(path + PROJECT_SUFFIX)
        if not chosen.exists():
            return chosen
        answer = QMessageBox.question(
            parent, "The project exists", f"{chosen.name} already exists. Open it as it is instead (nothing is "
            "imported)?\n\nNo: choose another name for the new project.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            return chosen
        if answer != QMessageBox.StandardButton.No:
            return None
        suggestion = chosen


def ask_import(parent: QWidget, kind: str, settings: QSettings) -> ImportRequest | None:
    """``kind``: "json" (COCO or LVIS), "results" (a model's predictions) or "png" (a folder of masks)."""
    if kind == "png":
        folder = QFileDialog.getExistingDirectory(parent, "Folder of PNG masks", start_folder(settings))
        remember_folder(settings, folder)
        return _with_images(parent, Path(folder), None) if folder else None
    title = "COCO results file (predictions)" if kind == "results" else "Import COCO or LVIS JSON"
    path, _ = QFileDialog.getOpenFileName(parent, title, start_folder(settings), JSON_FILTER)
    if not path:
        return None
    remember_folder(settings, path)
    return _results(parent, Path(path)) if kind == "results" else _with_images(parent, Path(path), None)


def ask_import_of(parent: QWidget, source: Path) -> ImportRequest | None:
    """The import of a dropped file or folder; DatasetError naming it when it is none of ours."""
    fmt = detect_format(source)
    return _results(parent, source) if fmt == "results" else _with_images(parent, source, None)


def _results(parent: QWidget, results: Path) -> ImportRequest | None:
    images_file, _ = QFileDialog.getOpenFileName(
        parent, "COCO / LVIS file giving the images and categories", str(results.parent), JSON_FILTER)
    return _with_images(parent, results, Path(images_file), "results") if images_file else None


def _with_images(parent: QWidget, source: Path, images_file: Path | None, fmt: str | None = None) -> ImportRequest | None:
    folder = QFileDialog.getExistingDirectory(parent, f"Image folder for {source.name}", str(source.parent))
    return ImportRequest(source, fmt, Path(folder), images_file) if folder else None
