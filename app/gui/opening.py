"""How the window opens things: the Open / Import / Locate Images dialogs, the recent projects, and files
dropped on it. An import asks what to import (app/gui/import_dialogs.py) and then where to save the project.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from app.core.errors import DatasetError
from app.gui.controller import ProjectController
from app.gui.import_dialogs import ask_import, ask_import_of, ask_project_path, remember_folder, start_folder
from app.gui.settings import AppSettings
from app.services.datasets import PROJECT_SUFFIX, ImportRequest


class Opener(QObject):
    """The window's file dialogs; ``error(title, message)`` reports what cannot be opened."""

    def __init__(self, window: QWidget, project: ProjectController, settings: AppSettings,
                 error: Callable[[str, str], None]) -> None:
        super().__init__(window)
        self.window = window
        self.project = project
        self.settings = settings
        self.error = error

    def open_project_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open project", start_folder(self.settings.qsettings),
                                              f"Projects (*{PROJECT_SUFFIX});;All files (*)")
        if path:
            remember_folder(self.settings.qsettings, path)
            self.project.open_project(Path(path))

    def import_dialog(self, kind: str) -> None:
        """``kind``: "json" (COCO / LVIS), "results" (predictions) or "png" (a folder of masks)."""
        self._import(ask_import(self.window, kind, self.settings.qsettings))

    def _import(self, request: ImportRequest | None) -> None:
        if request is None:
            return
        project = ask_project_path(self.window, request.source)
        if project is not None:
            self.project.import_dataset(request.source, request.fmt, request.images_dir, request.images_file,
                                        project=project)

    def images_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Folder holding the project's images")
        if folder:
            self.project.set_images_dir(Path(folder))

    def fill_recent(self, menu: QMenu) -> None:
        menu.clear()
        for path in self.settings.recent_projects:
            action = menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.project.open_project(Path(p)))
        if menu.isEmpty():
            menu.addAction("No recent projects").setEnabled(False)

    def open_path(self, path: Path) -> None:
        """What a dropped file does: open a project, import a JSON or a folder of PNG masks."""
        if path.suffix == PROJECT_SUFFIX:
            self.project.open_project(path)
            return
        try:
            request = ask_import_of(self.window, path)
        except DatasetError as error:
            self.error("Cannot open", f"{error}\nDrop a project ({PROJECT_SUFFIX}), a COCO/LVIS JSON or a "
                                      "folder of PNG masks")
            return
        self._import(request)
