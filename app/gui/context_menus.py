"""Right-click menus on the canvas and the two lists: the registry's actions that apply there.

A right click first selects what is under the cursor (the instance on the canvas, the row of a list), so
the menu's actions act on it; the actions' enabled states are the window's as always.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu, QWidget

from app.gui.actions import CANVAS_MENU, INSTANCE_LIST_MENU, ActionRegistry
from app.gui.controller import ProjectController
from app.gui.docks.image_list import ImageListPanel
from app.gui.docks.instance_list import InstanceListPanel
from app.gui.editor.canvas import Canvas


class ContextMenus(QObject):
    """Builds the menus once and shows them where the user right-clicks."""

    def __init__(self, window: QWidget, actions: ActionRegistry, project: ProjectController, canvas: Canvas,
                 instances: InstanceListPanel, images: ImageListPanel) -> None:
        super().__init__(window)
        self.project = project
        self.canvas = canvas
        self.instances = instances
        self.images = images
        self.canvas_menu = self._menu(window, actions, CANVAS_MENU)
        self.instance_menu = self._menu(window, actions, INSTANCE_LIST_MENU)
        self.image_menu = QMenu(window)
        self.open_image = self.image_menu.addAction("Open Image")
        self.copy_name = self.image_menu.addAction("Copy File Name")
        self._image_id: int | None = None
        self._image_name = ""
        self.open_image.triggered.connect(lambda: self._image_id is not None
                                          and self.images.image_activated.emit(self._image_id))
        self.copy_name.triggered.connect(lambda: QGuiApplication.clipboard().setText(self._image_name))
        # The canvas itself, not its viewport: a scroll area takes its viewport's context-menu events and asks
        # its own policy, with the position in viewport coordinates.
        for widget, slot in ((canvas, self.on_canvas), (instances.view, self.on_instances),
                             (images.view, self.on_images)):
            widget.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            widget.customContextMenuRequested.connect(slot)

    @staticmethod
    def _menu(parent: QWidget, actions: ActionRegistry, names: tuple[str | None, ...]) -> QMenu:
        menu = QMenu(parent)
        for name in names:
            if name is None:
                menu.addSeparator()
            else:
                menu.addAction(actions[name])
        return menu

    def on_canvas(self, pos: QPoint) -> QMenu | None:
        """Select the instance under ``pos`` (viewport coordinates), then show the canvas menu (not while the
        click tool takes right clicks as negative clicks)."""
        if self.canvas.takes_right_button:
            return None
        doc = self.canvas.document
        if doc is not None:
            point = self.canvas.mapToScene(pos)
            hit = doc.instance_at(int(point.x() // 1), int(point.y() // 1))
            if hit is not None:
                doc.select(hit)
        self.canvas_menu.popup(self.canvas.viewport().mapToGlobal(pos))
        return self.canvas_menu

    def on_instances(self, pos: QPoint) -> QMenu | None:
        index = self.instances.view.indexAt(pos)
        if not index.isValid():
            return None
        self.instances.view.clicked.emit(index)
        self.instance_menu.popup(self.instances.view.viewport().mapToGlobal(pos))
        return self.instance_menu

    def on_images(self, pos: QPoint) -> QMenu | None:
        index = self.images.view.indexAt(pos)
        if not index.isValid():
            return None
        self._image_id = self.images.proxy.data(index, Qt.ItemDataRole.UserRole)
        self._image_name = self.images.proxy.data(index.siblingAtColumn(0), Qt.ItemDataRole.DisplayRole) or ""
        self.image_menu.popup(self.images.view.viewport().mapToGlobal(pos))
        return self.image_menu
