"""The main window: canvas in the centre, docks around it, every command from the action registry.

The window wires widgets to the two controllers (project and refinement) and shows what they report:
messages in the status bar, errors in a non-blocking message box and the log, progress in the status
bar. It holds no project state of its own.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox, QProgressBar, QSlider,
    QToolBar, QUndoView, QWidget,
)

from app.core.errors import DatasetError
from app.core.records import ReviewStatus
from app.gui.actions import INSTANCE_ACTIONS, MAIN_TOOLBAR, MENUS, TOOLS, TOOLS_TOOLBAR, ActionRegistry
from app.gui.controller import ProjectController
from app.gui.docks.image_list import ImageListPanel
from app.gui.docks.instance_list import InstanceListPanel
from app.gui.docks.properties import PropertiesPanel
from app.gui.editor.canvas import Canvas
from app.gui.editor.document import ImageDocument
from app.gui.editor.navigator import Navigator
from app.gui.export_dialog import ExportDialog
from app.gui.import_dialogs import ask_import, ask_import_of
from app.gui.refine.controller import RefineController
from app.gui.refine.panel import RefinePanel
from app.gui.refine.worker import Environment, RefineService
from app.gui.settings import AppSettings, SettingsDialog
from app.gui.tasks import TaskRunner
from app.services.datasets import PROJECT_SUFFIX

log = logging.getLogger(__name__)

APP_TITLE = "SegRefiner Studio"
REFRESH_DELAY_MS = 150
MESSAGE_MS = 8000

class MainWindow(QMainWindow):
    """The annotator's window. ``data_dir`` holds the demo project (default: the user's data folder)."""

    def __init__(self, settings: AppSettings | None = None, data_dir: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.settings = settings or AppSettings()
        self.actions = ActionRegistry(self, self.settings.qsettings)
        self.tasks = TaskRunner(self)
        self.service = RefineService(self)
        self.project = ProjectController(self.settings, self.tasks, data_dir, self)
        self.refine = RefineController(self.project, self.service, self)
        self.environment: Environment | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.last_error: tuple[str, str] | None = None
        self._zoom_to_selection = False
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_DELAY_MS)
        self._refresh_timer.timeout.connect(self._refresh_lists)

        self.canvas = Canvas(self)
        self.canvas.setObjectName("canvas")
        self.canvas.opacity = self.settings.opacity
        self._apply_overlay_colors()
        self.setCentralWidget(self.canvas)
        self._build_docks()
        self._build_menus()
        self._build_toolbars()
        self._build_status_bar()
        self._connect()
        self._restore_layout()
        self._update_document_actions()
        self._refine_state_changed()

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
        self.undo_view = QUndoView()
        self.undo_view.setEmptyLabel("Opened")
        self.navigator = Navigator(self.canvas)
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        self.image_dock = self._dock("Images", "imagesDock", self.image_panel, left)
        self.instance_dock = self._dock("Instances", "instancesDock", self.instance_panel, left)
        self.refine_dock = self._dock("Refine", "refineDock", self.refine_panel, right)
        self.properties_dock = self._dock("Properties", "propertiesDock", self.properties_panel, right)
        self.history_dock = self._dock("History", "historyDock", self.undo_view, right)
        self.navigator_dock = self._dock("Navigator", "navigatorDock", self.navigator, right)
        self.tabifyDockWidget(self.properties_dock, self.history_dock)
        self.tabifyDockWidget(self.properties_dock, self.navigator_dock)
        self.properties_dock.raise_()

    def _build_menus(self) -> None:
        bar = self.menuBar()
        for title, names in MENUS.items():
            menu = bar.addMenu(title)
            for name in names:
                if name is None:
                    menu.addSeparator()
                elif name == "@recent":
                    self.recent_menu = menu.addMenu("Open &Recent")
                    self.recent_menu.aboutToShow.connect(self._fill_recent)
                elif name == "@docks":
                    for dock in (self.image_dock, self.instance_dock, self.refine_dock, self.properties_dock,
                                 self.history_dock, self.navigator_dock):
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

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.hide()
        self.cursor_label = QLabel("")
        self.zoom_label = QLabel("")
        self.device_label = QLabel("refiner: loads on first use")
        for widget in (self.progress_bar, self.cursor_label, self.zoom_label, self.device_label):
            bar.addPermanentWidget(widget)

    def _connect(self) -> None:
        a, p, r = self.actions, self.project, self.refine
        handlers = {
            "file.open_demo": p.open_demo,
            "file.open_project": self._open_project_dialog,
            "file.import_coco": lambda: self._import_dialog("json"),
            "file.import_results": lambda: self._import_dialog("results"),
            "file.import_png": lambda: self._import_dialog("png"),
            "file.images_folder": self._images_folder_dialog,
            "file.save": self._save,
            "file.export": self.open_export_dialog,
            "file.settings": self.open_settings,
            "file.quit": self.close,
            "edit.undo": self._undo,
            "edit.redo": self._redo,
            "edit.clear_guidance": lambda: self._with_doc(lambda d: d.clear_guidance()),
            "brush.smaller": self.canvas.shrink_brush,
            "brush.larger": self.canvas.grow_brush,
            "instance.new": self._new_instance,
            "instance.delete": lambda: self._with_selected(lambda d, i: d.delete_instance(i)),
            "instance.category": self._choose_category,
            "instance.lock": lambda: self._with_selected(lambda d, i: d.set_locked(i, not d.layer(i).locked)),
            "instance.hide": lambda: self._with_selected(lambda d, i: d.set_visible(i, not d.layer(i).visible)),
            "instance.raise": lambda: self._with_selected(lambda d, i: d.bring_to_front(i)),
            "instance.lower": lambda: self._with_selected(lambda d, i: d.send_to_back(i)),
            "instance.next": lambda: self._cycle(1),
            "instance.previous": lambda: self._cycle(-1),
            "image.next": lambda: p.step_image(1),
            "image.previous": lambda: p.step_image(-1),
            "review.accepted": lambda: p.set_status(ReviewStatus.ACCEPTED),
            "review.rejected": lambda: p.set_status(ReviewStatus.REJECTED),
            "review.needs_work": lambda: p.set_status(ReviewStatus.NEEDS_WORK),
            "review.next_unreviewed": self._next_unreviewed,
            "refine.run": self.refine_selected,
            "refine.image": lambda: self._run_checked(r.refine_image),
            "refine.dataset": lambda: self._run_checked(r.refine_dataset),
            "refine.stop": r.stop,
            "refine.accept": r.accept,
            "refine.accept_next": self.accept_and_next,
            "refine.reject": r.reject,
            "refine.step_back": lambda: r.show_step(r.shown - 1),
            "refine.step_forward": lambda: r.show_step(r.shown + 1),
            "view.fit": self.canvas.zoom_fit,
            "view.actual": self.canvas.zoom_100,
            "view.zoom_instance": lambda: self._with_selected(lambda _d, i: self.canvas.zoom_to_instance(i)),
        }
        for name, handler in handlers.items():
            a[name].triggered.connect(handler)
        for tool in TOOLS:
            a[f"tool.{tool}"].triggered.connect(lambda _checked=False, t=tool: self.canvas.set_tool(t))
        a["refine.pause"].toggled.connect(r.set_paused)
        a["view.contour_only"].toggled.connect(self.canvas.set_contour_only)
        a["view.selected_only"].toggled.connect(self.canvas.set_selected_only)
        a["view.color_by_category"].toggled.connect(
            lambda on: self.canvas.set_color_by("category" if on else "instance"))
        a["view.show_diff"].setChecked(self.canvas.show_diff)
        a["view.show_diff"].toggled.connect(self.canvas.set_show_diff)
        a["view.show_confidence"].toggled.connect(self._show_confidence)
        self.opacity_slider.valueChanged.connect(self._opacity_changed)

        self.canvas.tool_changed.connect(lambda name: a[f"tool.{name}"].setChecked(True))
        self.canvas.cursor_moved.connect(lambda x, y: self.cursor_label.setText(f"x {x}, y {y}"))
        self.canvas.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f}%"))
        self.canvas.message.connect(self.show_message)

        p.project_changed.connect(self._project_changed)
        p.document_changed.connect(self._document_changed)
        p.image_loading.connect(lambda image_id: self.show_message(f"Loading image {image_id}…", 2000))
        p.saved.connect(self._instance_saved)
        p.message.connect(self.show_message)
        p.error.connect(self.show_error)
        p.progress.connect(self._progress)

        r.state_changed.connect(self._refine_state_changed)
        r.step_shown.connect(self.refine_panel.show_step)
        r.queue_progress.connect(self._queue_progress)
        r.message.connect(self.show_message)
        r.error.connect(self.show_error)
        self.refine_panel.scrubbed.connect(r.show_step)
        self.refine_panel.choice_changed.connect(self._refine_state_changed)
        self.refine_panel.environment_wanted.connect(self.service.probe)

        w = self.service.worker
        w.probed.connect(self._environment_ready)
        w.loading.connect(lambda name: self.device_label.setText(f"refiner: loading {name}…"))
        w.loaded.connect(lambda name, device: self.device_label.setText(f"{name} · {device}"))
        w.notice.connect(self.show_message)
        w.failed.connect(self._worker_failed)

        self.image_panel.image_activated.connect(self._image_activated)
        self.instance_panel.instance_activated.connect(self._instance_activated)
        self.instance_panel.filters_changed.connect(self._filters_changed)

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
            self.resizeDocks([self.image_dock, self.refine_dock], [340, 330], Qt.Orientation.Horizontal)

    # ------------------------------------------------------------------------------- opening
    def open_startup(self, project: Path | None = None) -> None:
        """Open ``project`` if given, else the demo project (what a plain ``segrefiner-studio`` does)."""
        if project is not None:
            self.project.open_project(project)
        else:
            self.project.open_demo()

    def _open_project_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", f"Projects (*{PROJECT_SUFFIX});;All files (*)")
        if path:
            self.project.open_project(Path(path))

    def _import_dialog(self, kind: str) -> None:
        request = ask_import(self, kind)
        if request is not None:
            self.project.import_dataset(request.source, request.fmt, request.images_dir, request.images_file)

    def _images_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder holding the project's images")
        if folder:
            self.project.set_images_dir(Path(folder))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_projects:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.project.open_project(Path(p)))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("No recent projects").setEnabled(False)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt override)
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    def open_path(self, path: Path) -> None:
        """What a dropped file does: open a project, import a JSON or a folder of PNG masks."""
        if path.suffix == PROJECT_SUFFIX:
            self.project.open_project(path)
            return
        try:
            request = ask_import_of(self, path)
        except DatasetError as error:
            self.show_error("Cannot open", f"{error}\nDrop a project ({PROJECT_SUFFIX}), a COCO/LVIS JSON or a "
                                           "folder of PNG masks")
            return
        if request is not None:
            self.project.import_dataset(request.source, request.fmt, request.images_dir, request.images_file)

    # ------------------------------------------------------------------------------- project state
    def _project_changed(self) -> None:
        store = self.project.store
        self.image_panel.model.set_store(store)
        self.instance_panel.set_store(store)
        self.instance_panel.set_filters(self.project.session.get("filters") or {})
        self.properties_panel.set_categories(list(self.project.categories.values()))
        self.refine.discard()
        self._update_title()

    def _document_changed(self, doc: ImageDocument | None) -> None:
        self.canvas.set_document(doc)
        self.undo_view.setStack(doc.undo_stack if doc is not None else None)
        record = self.project.record(doc.image_id) if doc is not None else None
        text = "" if record is None else f"{record.file_name} ({record.width}×{record.height}, id {record.id})"
        self.properties_panel.set_context(doc, self.project.store, text)
        self.instance_panel.apply(doc.image_id if doc is not None else None)
        self._show_selection_in_list()
        if doc is not None:
            self.image_panel.show_current(doc.image_id)
            doc.selection_changed.connect(self._selection_changed)
            doc.instances_changed.connect(self.properties_panel.show_instance)
            doc.undo_stack.canUndoChanged.connect(self.actions["edit.undo"].setEnabled)
            doc.undo_stack.canRedoChanged.connect(self.actions["edit.redo"].setEnabled)
        self._update_document_actions()
        self._update_title()

    def _update_title(self) -> None:
        parts = [APP_TITLE]
        if self.project.project_path is not None:
            parts.append(self.project.project_path.name)
        doc = self.project.doc
        record = self.project.record(doc.image_id) if doc is not None else None
        if record is not None:
            parts.append(record.file_name)
        self.setWindowTitle(" — ".join(parts))

    def _update_document_actions(self) -> None:
        doc = self.project.doc
        has_doc = doc is not None
        for name in ("instance.new", "instance.next", "instance.previous", "view.fit", "view.actual",
                     "edit.clear_guidance", "review.next_unreviewed"):
            self.actions[name].setEnabled(has_doc)
        selected = has_doc and doc.selected_id is not None
        for name in INSTANCE_ACTIONS:
            self.actions[name].setEnabled(selected)
        self.actions["edit.undo"].setEnabled(has_doc and doc.undo_stack.canUndo())
        self.actions["edit.redo"].setEnabled(has_doc and doc.undo_stack.canRedo())
        has_project = self.project.store is not None
        for name in ("file.save", "file.export", "file.images_folder", "image.next", "image.previous"):
            self.actions[name].setEnabled(has_project)

    def _selection_changed(self, instance_id: int) -> None:
        self.properties_panel.show_instance()
        self.instance_panel.show_current(None if instance_id < 0 else instance_id)
        self._update_document_actions()
        if self.refine.session is not None and self.refine.session.job.instance_ids[0] != instance_id:
            self.refine.discard()
        if instance_id >= 0 and self._zoom_to_selection:
            self.canvas.zoom_to_instance(instance_id)
        self._zoom_to_selection = False

    def _instance_saved(self, instance_id: int) -> None:
        self._refresh_timer.start()
        doc = self.project.doc
        if doc is not None and doc.selected_id == instance_id:
            self.properties_panel.show_instance()

    def _refresh_lists(self) -> None:
        self.instance_panel.refresh()
        self.image_panel.model.refresh_counts(self.project.store)
        self._show_selection_in_list()

    def _filters_changed(self) -> None:
        doc = self.project.doc
        self.instance_panel.apply(doc.image_id if doc is not None else None)
        self.project.remember_filters(self.instance_panel.filters())
        self._show_selection_in_list()

    def _show_selection_in_list(self) -> None:
        doc = self.project.doc
        self.instance_panel.show_current(doc.selected_id if doc is not None else None)

    def _image_activated(self, image_id: int) -> None:
        doc = self.project.doc
        if doc is None or doc.image_id != image_id:
            self.project.open_image(image_id)

    def _instance_activated(self, instance_id: int) -> None:
        self._zoom_to_selection = True
        self.project.select_instance(instance_id)

    # ------------------------------------------------------------------------------- editing
    def _with_doc(self, fn) -> None:  # type: ignore[no-untyped-def]
        if self.project.doc is not None:
            fn(self.project.doc)

    def _with_selected(self, fn) -> None:  # type: ignore[no-untyped-def]
        doc = self.project.doc
        if doc is None or doc.selected_id is None:
            self.show_message("Select an instance first")
            return
        fn(doc, doc.selected_id)

    def _undo(self) -> None:
        self._with_doc(lambda d: d.undo())

    def _redo(self) -> None:
        self._with_doc(lambda d: d.redo())

    def _new_instance(self) -> None:
        if self.project.new_instance() is not None:
            self.actions["tool.brush"].trigger()
            self.show_message("New instance: paint it with the brush")

    def _choose_category(self) -> None:
        doc = self.project.doc
        if doc is None or doc.selected_id is None:
            return
        cats = list(self.project.categories.values())
        names = [c.name for c in cats]
        current = next((k for k, c in enumerate(cats) if c.id == doc.layer(doc.selected_id).category_id), 0)
        name, ok = QInputDialog.getItem(self, "Change category", "Category", names, current, True)
        if ok and name in names:
            doc.set_category(doc.selected_id, cats[names.index(name)].id)

    def _cycle(self, delta: int) -> None:
        instance_id = self.project.cycle_instance(delta)
        if instance_id is not None:
            self.canvas.zoom_to_instance(instance_id)

    def _next_unreviewed(self) -> None:
        self._zoom_to_selection = True
        if not self.project.next_unreviewed():
            self._zoom_to_selection = False

    def _save(self) -> None:
        self.project.flush()
        self.show_message("All changes are saved")

    def _opacity_changed(self, value: int) -> None:
        self.canvas.opacity = value / 100
        self.settings.opacity = value / 100

    def _show_confidence(self, on: bool) -> None:
        self.canvas.set_show_confidence(on)
        self.refine.want_confidence = on

    def _apply_overlay_colors(self) -> None:
        """The settings' diff colours on the canvas, and for previews the refine thread draws."""
        self.canvas.set_diff_colors(self.settings.added_color, self.settings.removed_color)
        self.refine.diff_colors = self.canvas.diff_colors

    # ------------------------------------------------------------------------------- refinement
    def _run_checked(self, start) -> bool:  # type: ignore[no-untyped-def]
        problem = self.refine_panel.problem()
        if problem is not None:
            self.show_error("Cannot refine", problem)
            return False
        self.service.probe()  # the devices and weights, for the panel, once torch is being loaded anyway
        self.refine.min_frame_s = self.settings.min_frame_ms / 1000
        return bool(start(self.refine_panel.options()))

    def refine_selected(self) -> bool:
        return self._run_checked(self.refine.refine_selected)

    def accept_and_next(self) -> None:
        """Enter: apply the shown refinement (if any), mark the instance accepted, go to the next unreviewed."""
        if self.refine.running:
            self.show_message("The refiner is still running: wait for it or stop it (Esc)")
            return
        if self.refine.reviewing:
            self.refine.accept()
        doc = self.project.doc
        if doc is not None and doc.selected_id is not None:
            doc.set_status(doc.selected_id, ReviewStatus.ACCEPTED.value)
        self._next_unreviewed()

    def _refine_state_changed(self) -> None:
        r = self.refine
        self.refine_panel.set_state(r.running, r.reviewing, r.queue_active, r.queue_paused)
        if r.session is None and not r.queue_active:
            self.refine_panel.clear_steps()

    def _queue_progress(self, done: int, total: int) -> None:
        self.refine_panel.set_queue_progress(done, total)
        self._progress("Refining", done, total)

    def _environment_ready(self, environment: Environment) -> None:
        self.environment = environment
        self.refine_panel.set_environment(environment)
        if self.settings_dialog is not None:
            self.settings_dialog.set_choices(environment.devices, [w.name for w in environment.weights])
        self.device_label.setText(f"refiner: {self.settings.device} ({', '.join(environment.devices)} available)")
        self._refine_state_changed()

    def _worker_failed(self, job_id: int, message: str) -> None:
        if job_id < 0:
            self.device_label.setText("refiner: unavailable")
            self.show_error("Refiner unavailable", message)

    # ------------------------------------------------------------------------------- dialogs
    def open_settings(self) -> SettingsDialog:
        self.service.probe()  # the dialog lists what it finds when it answers (_environment_ready)
        devices = self.environment.devices if self.environment is not None else []
        weights = [w.name for w in self.environment.weights] if self.environment is not None else []
        dialog = SettingsDialog(self.settings, self.actions, devices, weights, self)
        dialog.applied.connect(self._settings_applied)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda: setattr(self, "settings_dialog", None))
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    def _settings_applied(self) -> None:
        self.refine_panel.reload_settings()
        self.opacity_slider.setValue(round(self.settings.opacity * 100))
        self._apply_overlay_colors()
        self._refine_state_changed()

    def open_export_dialog(self) -> ExportDialog | None:
        store = self.project.store
        if store is None:
            return None
        self.project.flush()
        dialog = ExportDialog(store.path, store.kind, self.tasks, self)
        dialog.exported.connect(lambda dest: self.show_message(f"Exported to {dest}"))
        dialog.failed.connect(lambda message: self.show_error("Export failed", message))
        dialog.open()
        return dialog

    # ------------------------------------------------------------------------------- feedback
    def show_message(self, text: str, timeout_ms: int = MESSAGE_MS) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def show_error(self, title: str, message: str) -> None:
        """Log the problem and show it without blocking the window."""
        log.error("%s: %s", title, message)
        self.last_error = (title, message)
        self.statusBar().showMessage(f"{title}: {message.splitlines()[0]}", MESSAGE_MS)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _progress(self, what: str, done: int, total: int) -> None:
        bar = self.progress_bar
        if total > 0 and done >= total:
            bar.hide()
            return
        bar.setRange(0, max(0, total))
        bar.setValue(done)
        bar.setFormat(f"{what} %v/%m" if total else what)
        bar.show()

    # ------------------------------------------------------------------------------- closing
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.project.cancel_import()
        self.refine.discard()
        self.refine.cancel_queue()
        self.service.shutdown()
        self.project.close_project()
        self.project.writer.shutdown()
        self.tasks.wait()
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        super().closeEvent(event)
