"""How the main window is laid out: its docks, menus, toolbars and status bar, built from the action
registry, and the saved layout restored. A base class of ``MainWindow`` (app/gui/main_window.py), which
connects what is built here."""
from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QProgressBar, QSlider, QSpinBox, QToolBar, QUndoView, QWidget

from app.gui.actions import MAIN_TOOLBAR, MENUS, TOOLS_TOOLBAR
from app.gui.docks.edit_history import EditHistoryPanel
from app.gui.docks.image_list import ImageListPanel
from app.gui.docks.instance_list import InstanceListPanel
from app.gui.docks.properties import PropertiesPanel
from app.gui.editor.canvas import MAX_BRUSH
from app.gui.editor.navigator import Navigator
from app.gui.refine.panel import RefinePanel


# The canvas keeps at least this share of the window's width when the window narrows, as far as the panels' own
# minimums allow: Qt takes the whole change from the central widget, and with docks widened to 600 / 500 px a
# window made 1200 px wide left the photo 70 px between them.
CANVAS_SHARE = 0.45


class WindowLayout(QMainWindow):
    """The window's widgets; expects ``actions``, ``settings``, ``project``, ``tasks``, ``canvas`` and
    ``opener`` to be set before ``_build_*`` are called."""

    # ------------------------------------------------------------------------------- building
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        a = self.actions
        self.image_panel = ImageListPanel()
        self.instance_panel = InstanceListPanel([a["instance.lock"], a["instance.hide"], a["instance.raise"],
                                                 a["instance.lower"], a["instance.delete"]])
        self.refine_panel = RefinePanel(self.settings, self.actions)
        self.properties_panel = PropertiesPanel()
        self.properties_panel.message.connect(lambda text: self.show_message(text))
        self.edit_history = EditHistoryPanel(self.tasks)
        self.undo_view = QUndoView(self.project.undo.group)
        self.undo_view.setEmptyLabel("Opened")
        self.navigator = Navigator(self.canvas)
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        self.image_dock = self._dock("Images", "imagesDock", self.image_panel, left)
        self.instance_dock = self._dock("Instances", "instancesDock", self.instance_panel, left)
        self.refine_dock = self._dock("Refine", "refineDock", self.refine_panel, right)
        self.properties_dock = self._dock("Properties", "propertiesDock", self.properties_panel, right)
        self.edits_dock = self._dock("Edit History", "editHistoryDock", self.edit_history, right)
        self.edits_dock.visibilityChanged.connect(self.edit_history.set_shown)
        self.history_dock = self._dock("Undo", "historyDock", self.undo_view, right)
        self.navigator_dock = self._dock("Navigator", "navigatorDock", self.navigator, right)
        for dock in (self.edits_dock, self.history_dock, self.navigator_dock):
            self.tabifyDockWidget(self.properties_dock, dock)
        self.properties_dock.raise_()
        self.docks = (self.image_dock, self.instance_dock, self.refine_dock, self.properties_dock, self.edits_dock,
                      self.history_dock, self.navigator_dock)
        self._squeezed: dict[QDockWidget, int] = {}
        """Side docks the window's narrowing squeezed, with the width each had: widening gives it back."""

    def _build_menus(self) -> None:
        bar = self.menuBar()
        for title, names in MENUS.items():
            menu = bar.addMenu(title)
            for name in names:
                if name is None:
                    menu.addSeparator()
                elif name == "@recent":
                    self.recent_menu = menu.addMenu("Open &Recent")
                    self.recent_menu.aboutToShow.connect(lambda: self.opener.fill_recent(self.recent_menu))
                elif name == "@docks":
                    for dock in self.docks:
                        menu.addAction(dock.toggleViewAction())
                else:
                    menu.addAction(self.actions[name])

    def _toolbar(self, title: str, names: tuple[str | None, ...], area: Qt.ToolBarArea) -> QToolBar:
        bar = QToolBar(title, self)
        bar.setObjectName(title.lower().replace(" ", "_") + "_toolbar")
        for name in names:
            if name is None:
                bar.addSeparator()
            else:
                bar.addAction(self.actions[name])
        self.addToolBar(area, bar)
        return bar

    def _build_toolbars(self) -> None:
        self.main_toolbar = self._toolbar("Main", MAIN_TOOLBAR, Qt.ToolBarArea.TopToolBarArea)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.settings.opacity * 100))
        self.opacity_slider.setFixedWidth(110)
        self.opacity_slider.setToolTip("Mask opacity")
        self.main_toolbar.addSeparator()
        self.main_toolbar.addWidget(QLabel(" Opacity "))
        self.main_toolbar.addWidget(self.opacity_slider)
        self.tools_toolbar = self._toolbar("Tools", TOOLS_TOOLBAR, Qt.ToolBarArea.LeftToolBarArea)
        self.brush_size_box = QSpinBox()
        self.brush_size_box.setObjectName("brushSize")
        self.brush_size_box.setRange(1, MAX_BRUSH)
        self.brush_size_box.setValue(self.canvas.brush_size)
        self.brush_size_box.setToolTip("Brush size in image pixels ([ and ] or Alt+drag change it too)")
        self.brush_size_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        brush_action = self.actions["brush.larger"]
        self.tools_toolbar.insertWidget(self.tools_toolbar.actions()[self.tools_toolbar.actions().index(brush_action)
                                                                     + 1], self.brush_size_box)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(320)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.hide()
        self.read_only_label = QLabel()
        self.read_only_label.setObjectName("readOnlyLabel")
        self.read_only_label.hide()
        self.cursor_label = QLabel("")
        self.zoom_label = QLabel("")
        self.device_label = QLabel("refiner: not loaded yet")
        for widget in (self.progress_bar, self.read_only_label, self.cursor_label, self.zoom_label,
                       self.device_label):
            bar.addPermanentWidget(widget)

    def _restore_layout(self) -> None:
        geometry, state = self.settings.window_state()
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 920)
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        else:
            self.resizeDocks([self.image_dock, self.instance_dock], [200, 480], Qt.Orientation.Vertical)
            # Room for the lists' columns and the panels' buttons; a small window squeezes them (see below).
            self.resizeDocks([self.image_dock, self.refine_dock], [380, 340], Qt.Orientation.Horizontal)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._share_width_with_canvas()

    def _share_width_with_canvas(self) -> None:
        """Narrow the side docks in proportion when they would leave the canvas under ``CANVAS_SHARE`` of the
        window (down to what their widgets need); a wide window keeps the widths the user gave them, and a window
        widened again gives back what narrowing took (a window made small and then large again kept its panels
        squeezed, their tabs cut short)."""
        sides = []
        for area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea):
            shown = [d for d in self.docks if d.isVisible() and not d.isFloating() and self.dockWidgetArea(d) == area]
            if shown:
                sides.append(max(shown, key=lambda d: d.width()))
        if not sides:
            return
        squeezed = self._squeezed
        for dock in [d for d in squeezed if d not in sides]:
            del squeezed[dock]
        taken = sum(d.width() for d in sides)
        room = int((1 - CANVAS_SHARE) * self.width())
        if taken > room:
            for dock in sides:
                squeezed.setdefault(dock, dock.width())
            self.resizeDocks(sides, [max(1, d.width() * room // taken) for d in sides], Qt.Orientation.Horizontal)
        elif squeezed:
            wanted = [squeezed.get(d, d.width()) for d in sides]
            scale = min(1.0, room / sum(wanted))
            widths = [max(d.width(), int(w * scale)) for d, w in zip(sides, wanted)]
            if widths != [d.width() for d in sides]:
                self.resizeDocks(sides, widths, Qt.Orientation.Horizontal)
            if scale == 1.0:
                squeezed.clear()
