"""Every command of the window as one QAction, with its default shortcut and icon, in one registry.

Menus, toolbars, buttons and the settings dialog all take their actions from here, so a shortcut changed
in the settings applies everywhere at once and is remembered (QSettings ``shortcuts/<name>``; a name
stored with an empty value means the user cleared that shortcut).
"""
from __future__ import annotations

from dataclasses import dataclass

import qtawesome as qta
from PySide6.QtCore import QEvent, QObject, QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox, QComboBox, QKeySequenceEdit, QLineEdit, QPlainTextEdit, QTextEdit, QWidget,
)

SHORTCUT_PREFIX = "shortcuts/"


@dataclass(frozen=True)
class ActionSpec:
    """One command: registry name, menu text, default shortcut, qtawesome icon, tooltip."""

    name: str
    text: str
    shortcut: str = ""
    icon: str | None = None
    tip: str = ""
    checkable: bool = False
    alternate: str = ""
    """A second shortcut, kept while the action has its default and no other action uses it (Redo: Ctrl+Y, as
    most programs on Windows and many on Linux, besides Ctrl+Shift+Z)."""
    label: str = ""
    """A shorter text for a panel's button beside its icon (the action's icon text); menus keep ``text``. The Refine
    panel's two columns of buttons set how narrow its dock can be."""


# Canvas tool names (GUI-A's Canvas.set_tool) in toolbar order.
TOOLS = ("select", "brush", "eraser", "fill", "lasso_add", "lasso_subtract", "fg_brush", "bg_brush", "region_brush",
         "box", "clicks")

SPECS: tuple[ActionSpec, ...] = (
    # file
    ActionSpec("file.open_demo", "Open &Demo Project", "", "mdi6.image-multiple", "Open the bundled demo photos"),
    ActionSpec("file.open_project", "&Open Project…", "Ctrl+O", "mdi6.folder-open", "Open a project file (.srproj)"),
    ActionSpec("file.import_coco", "Import COCO / LVIS…", "Ctrl+I", "mdi6.file-import",
               "Create a project from a COCO or LVIS JSON and its image folder"),
    ActionSpec("file.import_results", "Import Predictions (COCO results)…", "Ctrl+Shift+I", "mdi6.database-import",
               "Create a project from a model's COCO results file"),
    ActionSpec("file.import_png", "Import PNG Masks…", "", "mdi6.folder-image",
               "Create a project from a folder of PNG masks and its image folder"),
    ActionSpec("file.images_folder", "Locate Images Folder…", "", "mdi6.folder-search",
               "Point the project at the folder its images are in"),
    ActionSpec("file.save", "&Save", "Ctrl+S", "mdi6.content-save", "Every edit is saved as it is made; this flushes"),
    ActionSpec("file.export", "&Export…", "Ctrl+E", "mdi6.export", "Export COCO, LVIS or PNG masks"),
    ActionSpec("file.settings", "Se&ttings…", "Ctrl+,", "mdi6.cog"),
    ActionSpec("file.quit", "&Quit", "Ctrl+Q"),
    # edit
    ActionSpec("edit.undo", "&Undo", "Ctrl+Z", "mdi6.undo"),
    ActionSpec("edit.redo", "&Redo", "Ctrl+Shift+Z", "mdi6.redo", alternate="Ctrl+Y"),
    ActionSpec("edit.clear_guidance", "Clear Guidance Strokes", "Ctrl+Shift+Backspace", "mdi6.broom",
               "Erase the foreground, background and region strokes"),
    # tools
    ActionSpec("tool.select", "Select", "V", "mdi6.cursor-default", "Select an instance (click; Tab cycles)", True),
    ActionSpec("tool.brush", "Brush", "B", "mdi6.brush", "Paint the selected instance ([ ] or Alt+drag: size)", True),
    ActionSpec("tool.eraser", "Eraser", "E", "mdi6.eraser", "Erase from the selected instance", True),
    ActionSpec("tool.fill", "Fill", "G", "mdi6.format-color-fill", "Fill a hole or region of the selected instance", True),
    ActionSpec("tool.lasso_add", "Lasso Add", "L", "mdi6.lasso", "Add a lasso polygon to the selected instance", True),
    ActionSpec("tool.lasso_subtract", "Lasso Subtract", "Shift+L", "mdi6.vector-polyline-minus",
               "Cut a lasso polygon out of the selected instance", True),
    ActionSpec("tool.fg_brush", "Must-Be-Foreground Brush", "K", "mdi6.plus-circle-outline",
               "Paint pixels the refiner must keep in the mask", True),
    ActionSpec("tool.bg_brush", "Must-Be-Background Brush", "Shift+K", "mdi6.minus-circle-outline",
               "Paint pixels the refiner must keep out of the mask", True),
    ActionSpec("tool.region_brush", "Refine-Region Brush", "J", "mdi6.selection-ellipse",
               "Paint the only area the refiner may change", True),
    ActionSpec("tool.box", "Box Prompt", "Shift+B", "mdi6.vector-square",
               "Drag a box around an object: its mask is made and refined, then you pick its category", True),
    ActionSpec("tool.clicks", "Click Prompt", "I", "mdi6.gesture-tap",
               "Click inside (left) or outside (right or Shift+click) the object: the selected instance (or a new "
               "one) follows, one undo step per click", True),
    ActionSpec("edit.find_similar", "Find Similar…", "Ctrl+F", "mdi6.image-search",
               "Propose instances like the selected one on this image or the whole project"),
    ActionSpec("brush.smaller", "Smaller Brush", "[", "mdi6.minus"),
    ActionSpec("brush.larger", "Larger Brush", "]", "mdi6.plus"),
    # instances
    ActionSpec("instance.new", "New Instance…", "Ctrl+N", "mdi6.shape-plus",
               "Add an instance of a category you choose, then paint it"),
    ActionSpec("instance.delete", "Delete Instance", "Delete", "mdi6.delete"),
    ActionSpec("instance.category", "Change Category…", "C", "mdi6.tag"),
    ActionSpec("instance.lock", "Lock / Unlock", "Ctrl+L", "mdi6.lock"),
    ActionSpec("instance.hide", "Hide / Show", "H", "mdi6.eye-off"),
    ActionSpec("instance.raise", "Bring to Front", "Ctrl+]", "mdi6.arrange-bring-forward"),
    ActionSpec("instance.lower", "Send to Back", "Ctrl+[", "mdi6.arrange-send-backward"),
    ActionSpec("instance.next", "Next Instance", "Tab", "mdi6.chevron-right"),
    ActionSpec("instance.previous", "Previous Instance", "Shift+Tab", "mdi6.chevron-left"),
    ActionSpec("image.next", "Next Image", "PgDown", "mdi6.skip-next"),
    ActionSpec("image.previous", "Previous Image", "PgUp", "mdi6.skip-previous"),
    # review
    ActionSpec("review.accepted", "Mark Accepted", "A", "mdi6.check-circle"),
    ActionSpec("review.rejected", "Mark Rejected", "X", "mdi6.close-circle"),
    ActionSpec("review.needs_work", "Mark Needs Work", "W", "mdi6.alert-circle"),
    ActionSpec("review.next_unreviewed", "Next Unreviewed", "N", "mdi6.skip-forward"),
    ActionSpec("review.reject_proposals", "Reject Remaining Proposals", "Shift+X", "mdi6.close-box-multiple",
               "Mark Find Similar's proposals on this image that are not reviewed yet rejected (one undo step)"),
    # refine
    ActionSpec("refine.run", "Refine Selected", "R", "mdi6.auto-fix", "Refine the selected instance step by step"),
    ActionSpec("refine.image", "Refine All of Image", "Shift+R", "mdi6.image-auto-adjust",
               "Refine every unlocked instance of this image (queued, applied as undoable edits)", label="Refine Image"),
    ActionSpec("refine.dataset", "Refine All Unreviewed", "Ctrl+Shift+R", "mdi6.play-box-multiple",
               "Refine every unreviewed instance of the project (queued; review them by largest change)",
               label="All Unreviewed"),
    ActionSpec("refine.stop", "Stop", "Esc", "mdi6.stop", "Stop after the current step; nothing is changed"),
    ActionSpec("refine.pause", "Pause Queue", "P", "mdi6.pause", "Pause or resume the refine queue", True),
    ActionSpec("refine.accept", "Accept Refinement", "Shift+Return", "mdi6.check",
               "Apply the shown step to the instance (one undo step)", label="Accept"),
    ActionSpec("refine.accept_next", "Accept and Next", "Return", "mdi6.check-all",
               "Apply the shown step (if any), mark the instance accepted, go to the next unreviewed"),
    ActionSpec("refine.reject", "Reject Refinement", "Backspace", "mdi6.close", "Discard the refinement", label="Reject"),
    ActionSpec("refine.step_back", "Previous Step", ",", "mdi6.step-backward"),
    ActionSpec("refine.step_forward", "Next Step", ".", "mdi6.step-forward"),
    # view
    ActionSpec("view.fit", "Zoom to Fit", "F", "mdi6.fit-to-screen"),
    ActionSpec("view.actual", "Zoom 100%", "1", "mdi6.magnify-plus-outline"),
    ActionSpec("view.zoom_instance", "Zoom to Instance", "Z", "mdi6.image-filter-center-focus"),
    ActionSpec("view.contour_only", "Contours Only", "O", "mdi6.border-outside", checkable=True),
    ActionSpec("view.selected_only", "Selected Instance Only", "S", "mdi6.select-all", checkable=True),
    ActionSpec("view.color_by_category", "Colour by Category", "Shift+C", "mdi6.palette", checkable=True),
    ActionSpec("view.show_diff", "Show Refiner Changes", "D", "mdi6.vector-difference",
               "Pixels the refiner added and removed, in two colours", True),
    ActionSpec("view.show_confidence", "Show Refiner Confidence", "U", "mdi6.thermometer",
               "Where the refiner is unsure, as a heatmap", True),
    # help
    ActionSpec("help.shortcuts", "&Keyboard Shortcuts", "F1", "mdi6.keyboard", "Every command and its shortcut"),
    ActionSpec("help.about", "&About SegRefiner Studio", "", "mdi6.information-outline",
               "Versions, the model and the licences"),
)


class ActionRegistry(QObject):
    """The QActions of one window, built from ``SPECS`` with the user's shortcuts applied."""

    def __init__(self, parent: QObject, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self._settings = settings or QSettings()
        self._specs = {spec.name: spec for spec in SPECS}
        self._actions: dict[str, QAction] = {}
        self.tool_group = QActionGroup(self)
        self.tool_group.setExclusive(True)
        for spec in SPECS:
            action = QAction(spec.text, parent)
            action.setObjectName(spec.name)
            if spec.label:
                action.setIconText(spec.label)
            if spec.icon:
                action.setIcon(qta.icon(spec.icon))
            action.setCheckable(spec.checkable)
            action.setIconVisibleInMenu(not spec.checkable)  # menus then draw a clear check mark instead
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self._actions[spec.name] = action
            if spec.name.startswith("tool."):
                self.tool_group.addAction(action)
            self._apply(spec.name, self.shortcut(spec.name))
        self._apply_alternates()
        self._actions["tool.select"].setChecked(True)

    def refresh_icons(self) -> None:
        """Re-create the icons (after the theme changed qtawesome's default colours)."""
        for spec in SPECS:
            if spec.icon:
                self._actions[spec.name].setIcon(qta.icon(spec.icon))

    def __getitem__(self, name: str) -> QAction:
        return self._actions[name]

    def specs(self) -> list[ActionSpec]:
        return list(self._specs.values())

    def shortcut(self, name: str) -> QKeySequence:
        """The user's shortcut for an action, or its default."""
        key = SHORTCUT_PREFIX + name
        if self._settings.contains(key):
            return QKeySequence(str(self._settings.value(key) or ""))
        return QKeySequence(self._specs[name].shortcut)

    def set_shortcut(self, name: str, sequence: QKeySequence | str) -> None:
        """Change and remember an action's shortcut (an empty sequence clears it)."""
        sequence = QKeySequence(sequence)
        default = QKeySequence(self._specs[name].shortcut)
        key = SHORTCUT_PREFIX + name
        if sequence == default:
            self._settings.remove(key)
        else:
            self._settings.setValue(key, sequence.toString(QKeySequence.SequenceFormat.PortableText))
        self._apply(name, sequence)
        self._apply_alternates()

    def _apply_alternates(self) -> None:
        for spec in self._specs.values():
            if not spec.alternate:
                continue
            action, extra = self._actions[spec.name], QKeySequence(spec.alternate)
            first = action.shortcut()
            taken = any(other.shortcut() == extra for other in self._actions.values() if other is not action)
            action.setShortcuts([first, extra] if first == QKeySequence(spec.shortcut) and not taken else [first])

    def _apply(self, name: str, sequence: QKeySequence) -> None:
        action = self._actions[name]
        action.setShortcut(sequence)
        spec = self._specs[name]
        tip = spec.tip or spec.text.replace("&", "").rstrip("…")
        shown = sequence.toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{tip} ({shown})" if shown else tip)


# Where the actions appear: menus (None: a separator; @recent, @docks: filled by the window), toolbars, and
# the actions that need a selected instance.
MENUS: dict[str, tuple[str | None, ...]] = {
    "&File": ("file.open_demo", "file.open_project", "@recent", None, "file.import_coco", "file.import_results",
              "file.import_png", "file.images_folder", None, "file.save", "file.export", None, "file.settings",
              None, "file.quit"),
    "&Edit": ("edit.undo", "edit.redo", None, "edit.clear_guidance", None, "edit.find_similar"),
    "&Tools": tuple(f"tool.{t}" for t in TOOLS) + (None, "brush.smaller", "brush.larger", None,
                                                   "edit.find_similar"),
    "&Instance": ("instance.new", "instance.delete", "instance.category", None, "instance.lock", "instance.hide",
                  "instance.raise", "instance.lower", None, "instance.next", "instance.previous", "image.next",
                  "image.previous"),
    "&Review": ("review.accepted", "review.rejected", "review.needs_work", None, "review.next_unreviewed", None,
                "review.reject_proposals"),
    "R&efine": ("refine.run", "refine.image", "refine.dataset", None, "refine.stop", "refine.pause", None,
                "refine.accept", "refine.accept_next", "refine.reject", None, "refine.step_back",
                "refine.step_forward"),
    "&View": ("view.fit", "view.actual", "view.zoom_instance", None, "view.contour_only", "view.selected_only",
              "view.color_by_category", None, "view.show_diff", "view.show_confidence", None, "@docks"),
    "&Help": ("help.shortcuts", "help.about"),
}
MAIN_TOOLBAR = ("file.open_project", "file.save", "file.export", None, "edit.undo", "edit.redo", None,
                "refine.run", "refine.stop", "refine.accept", "refine.reject", None, "review.accepted",
                "review.rejected", "review.needs_work", "review.next_unreviewed", None, "view.fit", "view.actual",
                "view.contour_only", "view.show_diff", "view.show_confidence")
TOOLS_TOOLBAR = tuple(f"tool.{t}" for t in TOOLS) + (None, "brush.smaller", "brush.larger", None, "instance.new",
                                                      "instance.delete", "instance.lock", "instance.hide",
                                                      "instance.raise", "instance.lower")
EDIT_ACTIONS = (
    *(f"tool.{t}" for t in TOOLS if t != "select"), "brush.smaller", "brush.larger", "edit.undo", "edit.redo",
    "edit.clear_guidance", "instance.new", "instance.delete", "instance.category", "instance.lock", "instance.hide",
    "instance.raise", "instance.lower", "review.accepted", "review.rejected", "review.needs_work", "refine.run",
    "refine.image", "refine.dataset", "refine.accept", "refine.accept_next", "file.images_folder", "edit.find_similar",
    "review.reject_proposals",
)
"""What changes the project: disabled in a read-only window."""
ALWAYS_EDITABLE = (*(f"tool.{t}" for t in TOOLS if t != "select"), "brush.smaller", "brush.larger")
"""Those of them nothing else enables again: on whenever the window can write."""
CANVAS_MENU = ("refine.run", "edit.find_similar", None, "review.accepted", "review.rejected", "review.needs_work",
               None, "instance.category", "instance.lock", "instance.hide", "instance.raise", "instance.lower",
               "instance.delete", None, "view.zoom_instance", "view.fit", None, "instance.new")
"""Right click on the canvas (on an instance, which it selects first; elsewhere the same, mostly disabled)."""
INSTANCE_LIST_MENU = ("view.zoom_instance", "refine.run", "edit.find_similar", None, "review.accepted",
                      "review.rejected", "review.needs_work", "review.reject_proposals", None, "instance.category",
                      "instance.lock", "instance.hide", "instance.delete")
INSTANCE_ACTIONS = ("instance.delete", "instance.category", "instance.lock", "instance.hide", "instance.raise",
                    "instance.lower", "review.accepted", "review.rejected", "review.needs_work",
                    "view.zoom_instance", "edit.find_similar")


# Keys that stay the window's even in a field: stop, help, image paging.
WINDOW_KEYS = frozenset({Qt.Key.Key_Escape, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown,
                         *range(Qt.Key.Key_F1, Qt.Key.Key_F35 + 1)})
FIELDS = (QLineEdit, QAbstractSpinBox, QComboBox, QTextEdit, QPlainTextEdit, QKeySequenceEdit)


class FieldKeysFirst(QObject):
    """Gives a focused field the plain keys it uses. The window's one-key shortcuts (Return accepts and moves on,
    Tab selects the next instance, Backspace rejects, letters mark a status) are window-wide, so without this
    typing a filter or a step count and pressing Return would accept an instance; Qt asks the focus widget first
    with a ShortcutOverride event, which this accepts for keys without Ctrl, Alt or Meta."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            chorded = event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                                           | Qt.KeyboardModifier.MetaModifier)
            if not chorded and event.key() not in WINDOW_KEYS:
                event.accept()
        return False


def give_fields_their_keys(root: QWidget) -> FieldKeysFirst:
    """Install :class:`FieldKeysFirst` on every field one types in under ``root`` (call once its widgets are
    built). A drop-down list one only picks from keeps the window's keys: after choosing a sort order, A still
    accepts the selected instance."""
    keeper = FieldKeysFirst(root)
    for field in root.findChildren(QWidget):
        if isinstance(field, FIELDS) and not (isinstance(field, QComboBox) and not field.isEditable()):
            field.installEventFilter(keeper)
    return keeper
