"""The main window: canvas in the centre, docks around it, every command from the action registry.

The window wires widgets to the two controllers (project and refinement) and shows what they report:
messages in the status bar, errors in a non-blocking message box and the log, progress in the status
bar. It holds no project state of its own. A project another window holds opens read-only: the title and
the status bar say so, every action that would change it is disabled, and quitting asks before dropping
an edit that still reached the screen.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import QInputDialog, QMainWindow, QMessageBox, QWidget

from app.core.records import ReviewStatus, category_labels
from app.core.store.history import Edit
from app.gui import popups
from app.gui.actions import ALWAYS_EDITABLE, EDIT_ACTIONS, INSTANCE_ACTIONS, TOOLS, ActionRegistry, give_fields_their_keys
from app.gui.context_menus import ContextMenus
from app.gui.controller import ProjectController
from app.gui.docks.edit_history import revert_edit
from app.gui.editor.canvas import Canvas
from app.gui.editor.document import ImageDocument
from app.gui.export_dialog import ExportDialog
from app.gui.help import ShortcutSheet, about_box
from app.gui.opening import Opener
from app.gui.prompt_controller import PromptController
from app.gui.prompt_worker import PromptService
from app.gui.refine.controller import RefineController
from app.gui.refine.ui import RefineFeedback
from app.gui.refine.worker import PROBE_JOB, Environment, RefineService
from app.gui.settings import AppSettings, SettingsDialog, weights_label
from app.gui.similar_dialog import SimilarDialog, open_find_similar
from app.gui.tasks import TaskRunner
from app.gui.window_layout import WindowLayout

log = logging.getLogger(__name__)

APP_TITLE = "SegRefiner Studio"
REFRESH_DELAY_MS = 150
MESSAGE_MS = 8000


class MainWindow(WindowLayout, QMainWindow):
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
        self.opener = Opener(self, self.project, self.settings, self.show_error)
        self.environment: Environment | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.shortcut_sheet: ShortcutSheet | None = None
        self.last_error: tuple[str, str] | None = None
        self._zoom_to_selection = False
        self._fresh_id: int | None = None
        self._new_category: int | None = None
        self._saved_ids: set[int] = set()
        self._shut_down = False
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
        self.feedback = RefineFeedback(self, self.settings, self.service, self.refine, self.refine_panel,
                                       self.progress_bar, self.device_label, self.show_message)
        self.prompt_service = PromptService(self)
        self.prompts = PromptController(self.project, self.canvas, self.settings, self.prompt_service, self,
                                        self.show_message, self.show_error)
        self.context_menus = ContextMenus(self, self.actions, self.project, self.canvas, self.instance_panel,
                                          self.image_panel)
        self._connect()
        give_fields_their_keys(self)
        self._restore_layout()
        self._update_document_actions()
        self._refine_state_changed()

    def _connect(self) -> None:
        a, p, r, o = self.actions, self.project, self.refine, self.opener
        handlers = {
            "file.open_demo": p.open_demo,
            "file.open_project": o.open_project_dialog,
            "file.import_coco": lambda: o.import_dialog("json"),
            "file.import_results": lambda: o.import_dialog("results"),
            "file.import_png": lambda: o.import_dialog("png"),
            "file.images_folder": o.images_folder_dialog,
            "file.save": self._save,
            "file.export": self.open_export_dialog,
            "file.settings": self.open_settings,
            "file.quit": self.close,
            "edit.undo": lambda: self._with_doc(lambda d: d.undo()),
            "edit.redo": lambda: self._with_doc(lambda d: d.redo()),
            "edit.clear_guidance": lambda: self._with_doc(lambda d: d.clear_guidance()),
            "edit.find_similar": self.open_find_similar,
            "brush.smaller": self.canvas.shrink_brush,
            "brush.larger": self.canvas.grow_brush,
            "instance.new": self.new_instance,
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
            "review.reject_proposals": p.reject_proposals,
            "refine.run": self.refine_selected,
            "refine.image": lambda: self._run_checked(r.refine_image),
            "refine.dataset": lambda: self._run_checked(self.feedback.confirm_dataset),
            "refine.stop": r.stop,
            "refine.accept": r.accept,
            "refine.accept_next": self.accept_and_next,
            "refine.reject": r.reject,
            "refine.step_back": lambda: r.show_step(r.shown - 1),
            "refine.step_forward": lambda: r.show_step(r.shown + 1),
            "view.fit": self.canvas.zoom_fit,
            "view.actual": self.canvas.zoom_100,
            "view.zoom_instance": lambda: self._with_selected(lambda _d, i: self.canvas.zoom_to_instance(i)),
            "help.shortcuts": self.open_shortcuts,
            "help.about": self.open_about,
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
        self.brush_size_box.valueChanged.connect(lambda size: setattr(self.canvas, "brush_size", size))
        self.canvas.brush_size_changed.connect(self.brush_size_box.setValue)

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
        self.instance_panel.model.problem.connect(lambda text: self.show_error("Cannot list the instances", text))
        group = p.undo.group
        group.canUndoChanged.connect(lambda _can: self._update_document_actions())
        group.canRedoChanged.connect(lambda _can: self._update_document_actions())

        r.state_changed.connect(self._refine_state_changed)
        r.step_shown.connect(self.refine_panel.show_step)
        r.message.connect(self.show_message)
        r.error.connect(self.show_error)
        self.refine_panel.scrubbed.connect(r.show_step)
        self.refine_panel.choice_changed.connect(self._refine_state_changed)
        self.refine_panel.environment_wanted.connect(self.service.probe)

        w = self.service.worker
        w.probed.connect(self._environment_ready)
        w.notice.connect(self.show_message)
        w.failed.connect(self._worker_failed)

        self.image_panel.image_activated.connect(self._image_activated)
        self.instance_panel.instance_activated.connect(self._instance_activated)
        self.instance_panel.filters_changed.connect(self._filters_changed)
        self.edit_history.revert_requested.connect(self._revert_edit)

    # ------------------------------------------------------------------------------- opening
    def open_startup(self, project: Path | None = None) -> None:
        """Open ``project`` if given, else the demo project (what a plain ``segrefiner-studio`` does)."""
        if project is not None:
            self.project.open_project(project)
        else:
            self.project.open_demo()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        QTimer.singleShot(3000, self._preload)  # no image on screen by then: load the model anyway

    def _preload(self) -> None:
        if not self.read_only:
            self.feedback.schedule_preload()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt override)
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.opener.open_path(paths[0])

    # ------------------------------------------------------------------------------- project state
    @property
    def read_only(self) -> bool:
        store = self.project.store
        return store is not None and store.read_only

    def _project_changed(self) -> None:
        store = self.project.store
        self.image_panel.model.set_store(store)
        self.instance_panel.set_store(store)
        self.instance_panel.set_filters(self.project.session.get("filters") or {})
        self.properties_panel.set_categories(list(self.project.categories.values()))
        self.refine.discard()
        self.read_only_label.setVisible(self.read_only)
        if store is not None and store.read_only:
            self.read_only_label.setText(f"Read-only: {store.read_only_reason}")
            self.read_only_label.setToolTip("Another window (or program) has this project open for writing; "
                                            "nothing can be changed or saved here")
            self.canvas.set_tool("select")
        self.refine_panel.set_read_only(self.read_only)
        self.properties_panel.set_editable(not self.read_only)
        self.edit_history.set_read_only(self.read_only)
        self._refine_state_changed()
        self._update_title()

    def _document_changed(self, doc: ImageDocument | None) -> None:
        self.canvas.set_document(doc)
        record = self.project.record(doc.image_id) if doc is not None else None
        text = "" if record is None else f"{record.file_name} ({record.width}×{record.height}, id {record.id})"
        self.properties_panel.set_context(doc, self.project.store, text)
        self.edit_history.set_context(doc, self.project.store, self.project.categories)
        self.instance_panel.apply(doc.image_id if doc is not None else None)
        self._show_selection_in_list()
        self._fresh_id = None
        if self.statusBar().currentMessage().startswith("Loading image"):
            self.statusBar().clearMessage()
        if doc is not None:
            doc.read_only = self.read_only
            self.image_panel.show_current(doc.image_id)
            doc.selection_changed.connect(self._selection_changed)
            doc.instances_changed.connect(self.properties_panel.show_instance)
            self._preload()
        self._update_document_actions()
        self._update_title()

    def _update_title(self) -> None:
        parts = [APP_TITLE]
        if self.project.project_path is not None:
            parts.append(self.project.project_path.name + (" [read-only]" if self.read_only else ""))
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
        self._refine_state_changed()  # what can be refined follows what is open and selected

    def _lock_editing(self) -> None:
        """Refine only what exists (an instance, an image, a project); a read-only window changes nothing:
        every editing action off, the tools too."""
        doc = self.project.doc
        for name, needs in (("refine.run", doc is not None and doc.selected_id is not None),
                            ("refine.image", doc is not None), ("refine.dataset", self.project.store is not None)):
            if not needs:
                self.actions[name].setEnabled(False)
        for name in EDIT_ACTIONS if self.read_only else ALWAYS_EDITABLE:  # a writable project after a read-only one
            self.actions[name].setEnabled(not self.read_only)

    def _selection_changed(self, instance_id: int) -> None:
        selected = None if instance_id < 0 else instance_id
        self.properties_panel.show_instance()
        self.instance_panel.show_current(selected)
        self.edit_history.show_instance(selected)
        self._update_document_actions()
        if self.refine.session is not None and self.refine.session.job.instance_ids[0] != instance_id:
            self.refine.discard()
        if selected is not None and self._zoom_to_selection:
            self.canvas.zoom_to_instance(selected)
        self._zoom_to_selection = False
        doc, fresh = self.project.doc, self._fresh_id
        if fresh is not None and fresh != selected:
            self._fresh_id = None
            if doc is not None and doc.has_layer(fresh) and not doc.layer(fresh).mask.any():
                self.show_message(f"Instance {fresh} is still empty (0 px): paint it, or delete it (Delete)")

    def _instance_saved(self, instance_id: int) -> None:
        self._saved_ids.add(instance_id)
        self._refresh_timer.start()
        doc = self.project.doc
        if doc is not None and doc.selected_id == instance_id:
            self.properties_panel.show_instance()

    def _refresh_lists(self) -> None:
        self.instance_panel.refresh(self._saved_ids)
        self.image_panel.model.refresh_counts(self.project.store)
        self._show_selection_in_list()
        if self.edit_history.instance_id in self._saved_ids:
            self.edit_history.refresh()
        self._saved_ids.clear()

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

    def new_instance(self) -> int | None:
        """Ctrl+N: ask the new instance's category, add it, list it, and hand over the brush to paint it."""
        doc = self.project.doc
        if doc is None:
            return None
        wanted = doc.layer(doc.selected_id).category_id if doc.selected_id is not None else self._new_category
        category = popups.pick_category(self, list(self.project.categories.values()), wanted)
        if category is None:
            return None
        instance_id = self.project.new_instance(category.id)
        if instance_id is None:
            return None
        self._new_category, self._fresh_id = category.id, instance_id
        self.actions["tool.brush"].trigger()
        self._refresh_lists()
        self.show_message(f"New instance #{instance_id} ({category.name}): paint it with the brush (B); Ctrl+Z "
                          "removes it")
        return instance_id

    def _choose_category(self) -> None:
        doc = self.project.doc
        if doc is None or doc.selected_id is None:
            return
        cats = list(self.project.categories.values())
        labels = category_labels(cats)
        names = [labels[c.id] for c in cats]
        current = next((k for k, c in enumerate(cats) if c.id == doc.layer(doc.selected_id).category_id), 0)
        name, ok = QInputDialog.getItem(self, "Change category", "Category", names, current, True)
        if ok and name in names:
            doc.set_category(doc.selected_id, cats[names.index(name)].id)

    def _revert_edit(self, edit: Edit) -> None:
        doc = self.project.doc
        if self.read_only or doc is None or not doc.has_layer(edit.instance_id):
            return
        self.show_message(revert_edit(doc, edit))

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
        started = self._run_checked(self.refine.refine_selected)
        if started:
            self.feedback.run_started()
        return started

    def accept_and_next(self) -> None:
        """Enter: apply the shown refinement (if any), mark the instance accepted, go to the next unreviewed."""
        if self.refine.running:
            self.show_message("The refiner is still running: wait for it or stop it (Esc)")
            return
        doc = self.project.doc
        selected = None if doc is None else doc.selected_id
        status = selected is not None and doc.layer(selected).status != ReviewStatus.ACCEPTED.value
        both = self.refine.reviewing and status  # then one undo step for the two: one Ctrl+Z takes both back
        if both:
            doc.undo_stack.beginMacro(f"Accept and next #{selected}")
        if self.refine.reviewing:
            self.refine.accept()
        if status:
            doc.set_status(selected, ReviewStatus.ACCEPTED.value)
        if both:
            doc.undo_stack.endMacro()
        self._next_unreviewed()

    def _refine_state_changed(self) -> None:
        r = self.refine
        self.refine_panel.set_state(r.running, r.reviewing, r.queue_active, r.queue_paused, not self.read_only)
        if r.queue_active:
            self.refine_panel.step_label.setText("The queue applies each result as it comes: P pauses, Esc stops")
        elif r.session is None:
            self.refine_panel.clear_steps()
        self._lock_editing()

    def _environment_ready(self, environment: Environment) -> None:
        self.environment = environment
        self.refine_panel.set_environment(environment)
        if self.settings_dialog is not None:
            self.settings_dialog.set_choices(environment.devices, [w.name for w in environment.weights])
        if self.feedback.loaded is None and self.feedback.loading is None:
            self.device_label.setText(f"refiner: {self.settings.device} ({', '.join(environment.devices)} available)")
        self._refine_state_changed()

    def _worker_failed(self, job_id: int, message: str) -> None:
        if job_id == PROBE_JOB:
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

    def open_find_similar(self) -> SimilarDialog | None:
        return open_find_similar(self.project, self.prompt_service, self.settings, self.canvas, self.instance_panel,
                                 self, self.show_message)

    def open_shortcuts(self) -> ShortcutSheet:
        """The keyboard cheat-sheet, from the registry as it is now (non-modal: keep it open while working)."""
        if self.shortcut_sheet is not None:
            self.shortcut_sheet.close()
        self.shortcut_sheet = ShortcutSheet(self.actions, self)
        self.shortcut_sheet.show()
        return self.shortcut_sheet

    def open_about(self) -> QMessageBox:
        loaded = self.device_label.text() if self.feedback.loaded else "not loaded yet"
        box = about_box(f"{weights_label(self.settings.weights)} ({loaded})", self)
        box.open()
        return box

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
    def _may_close(self) -> bool:
        """In a read-only window, ask before dropping edits that reached the screen but not the project."""
        store, doc = self.project.store, self.project.doc
        if store is None or not store.read_only or doc is None or doc.undo_stack.isClean():
            return True
        answer = QMessageBox.warning(
            self, "Close without saving?",
            f"This window opened {store.path.name} read-only ({store.read_only_reason}), so the changes on "
            "screen are not saved and will be lost.",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Discard

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        if not self._shut_down and not self._may_close():
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the work in flight, write what is pending and close the project (releasing its lock); once."""
        if self._shut_down:
            return
        self._shut_down = True
        self.project.cancel_import()
        self.refine.discard()
        self.refine.cancel_queue()
        self.service.shutdown()
        self.prompt_service.shutdown()
        self.project.close_project()
        self.project.writer.shutdown()
        self.tasks.wait()
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
