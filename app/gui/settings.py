"""The user's preferences (QSettings) and the settings dialog that edits them.

Everything the annotator chooses once and expects to find again lives here: refiner device, mode, steps,
seed and weights (plus checkpoint files they added), the box and click tools' coarse source (their own
prompt-head files or a SAM checkpoint among them) and last category, the animation's minimum frame time, overlay colours
and opacity, recent projects and keyboard shortcuts. Lists are kept as JSON strings because QSettings'
INI backend turns a one-element list into a plain string.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox, QColorDialog, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView,
    QKeySequenceEdit, QLabel, QLineEdit, QPushButton, QSlider, QSpinBox, QTableWidget, QTableWidgetItem, QTabWidget,
    QVBoxLayout, QWidget,
)

from app.gui.actions import ActionRegistry
from app.gui.import_dialogs import remember_folder, start_folder
from app.refiner.options import DEFAULT_WEIGHTS, MODES, NUM_TIMESTEPS, steps_range

log = logging.getLogger(__name__)

MAX_RECENT = 10
MAX_SEED = 2**31 - 1
"""The largest seed the refine panel's box holds (a C int)."""
MAX_FRAME_MS = 2000


@dataclass(frozen=True)
class _Key:
    name: str
    default: Any


DEVICE = _Key("refine/device", "auto")
MODE = _Key("refine/mode", "instance")
STEPS = _Key("refine/steps", NUM_TIMESTEPS)
SEED = _Key("refine/seed", 0)
SNAP = _Key("refine/snap", True)
WEIGHTS = _Key("refine/weights", DEFAULT_WEIGHTS)
EXTRA_WEIGHTS = _Key("refine/extra_weights", "[]")
MIN_FRAME_MS = _Key("refine/min_frame_ms", 120)
OPACITY = _Key("overlay/opacity", 0.45)
ADDED_COLOR = _Key("overlay/added_color", "#28dc5a")
REMOVED_COLOR = _Key("overlay/removed_color", "#eb28c8")
RECENT = _Key("files/recent_projects", "[]")
PRELOAD = _Key("refine/preload", True)
SECONDS_PER_INSTANCE = _Key("refine/seconds_per_instance", "{}")
PROMPT_SOURCE = _Key("prompt/source", "encoder")
SAM_CHECKPOINT = _Key("prompt/sam_checkpoint", "")
PROMPT_HEADS = _Key("prompt/heads", "[]")
PROMPT_CATEGORY = _Key("prompt/category_name", "")
HEADS_SEPARATOR = "; "
PROMPT_SOURCES = {"encoder": "Prompt heads on the encoder", "grabcut": "GrabCut (no weights)",
                  "sam": "Segment Anything checkpoint (.pth)"}
"""The box and click tools' coarse sources (app/services/prompt.py ``SOURCES``) as the settings list them."""
MODE_TEXT = {"instance": "Instance (objects)", "hr": "High resolution (one mask)"}
"""The refine modes in words (the refine panel and the settings dialog)."""


class AppSettings:
    """Typed access to the application's QSettings (``QSettings()`` of the app's organisation and name)."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.qsettings = store or QSettings()

    # ----- generic
    def _get(self, key: _Key) -> Any:
        """The stored value as the default's type; the default where the settings file holds something else.

        Converted here, not by Qt: Qt's conversion raises on some text ("nan" as an int: the window never
        showed) and turns other text into 0 ("{}" as the overlay's opacity), and a hand-edited or damaged
        settings file must neither keep the window from starting nor silently zero a setting."""
        raw = self.qsettings.value(key.name, key.default)
        kind = type(key.default)
        try:
            if kind is bool:
                value = raw if isinstance(raw, bool) else {"true": True, "false": False}[str(raw).strip().lower()]
            elif kind is int:
                value = raw if isinstance(raw, int) else int(str(raw).strip())
            elif kind is float:
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError("not finite")
            else:
                value = kind(raw)
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            log.warning("%s: setting %s is %r, not a %s (%s); using %r", self.qsettings.fileName(), key.name, raw,
                        kind.__name__, e, key.default)
            return key.default
        return value

    def _set(self, key: _Key, value: Any) -> None:
        self.qsettings.setValue(key.name, value)

    def _get_list(self, key: _Key) -> list[str]:
        try:
            value = json.loads(self._get(key))
        except (TypeError, json.JSONDecodeError):
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    # ----- refiner
    @property
    def device(self) -> str:
        return self._get(DEVICE)

    @device.setter
    def device(self, value: str) -> None:
        self._set(DEVICE, value)

    @property
    def mode(self) -> str:
        mode = self._get(MODE)
        return mode if mode in MODES else MODE.default

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {value!r}")
        self._set(MODE, value)

    @property
    def steps(self) -> int:
        """The remembered steps, within what the remembered mode accepts."""
        low, high = steps_range(self.mode)
        return min(high, max(low, self._get(STEPS)))

    @steps.setter
    def steps(self, value: int) -> None:
        self._set(STEPS, int(value))

    @property
    def seed(self) -> int:
        return min(MAX_SEED, max(0, self._get(SEED)))

    @seed.setter
    def seed(self, value: int) -> None:
        self._set(SEED, int(value))

    @property
    def snap(self) -> bool:
        """Snap the boundary the band network moved onto the image's edges (docs/decisions/0023)."""
        return bool(self._get(SNAP))

    @snap.setter
    def snap(self, value: bool) -> None:
        self._set(SNAP, bool(value))

    @property
    def weights(self) -> str:
        """A registry name or the path of a checkpoint file."""
        return self._get(WEIGHTS)

    @weights.setter
    def weights(self, value: str) -> None:
        self._set(WEIGHTS, value)

    @property
    def extra_weights(self) -> list[str]:
        """Checkpoint files the user added, newest first."""
        return self._get_list(EXTRA_WEIGHTS)

    def add_weights_file(self, path: str | Path) -> str:
        """Remember a checkpoint file and make it the current weights; returns its path as stored."""
        value = str(Path(path).resolve())
        files = [value] + [p for p in self.extra_weights if p != value]
        self._set(EXTRA_WEIGHTS, json.dumps(files))
        self.weights = value
        return value

    @property
    def min_frame_ms(self) -> int:
        """Shortest time a refine step stays on screen, so fast GPUs still animate."""
        return min(MAX_FRAME_MS, max(0, self._get(MIN_FRAME_MS)))

    @min_frame_ms.setter
    def min_frame_ms(self, value: int) -> None:
        self._set(MIN_FRAME_MS, int(value))

    @property
    def preload_refiner(self) -> bool:
        """Load the refiner in the background as soon as the window is up, so the first refinement starts at
        once (it costs the model's memory even when nothing is refined)."""
        return bool(self._get(PRELOAD))

    @preload_refiner.setter
    def preload_refiner(self, value: bool) -> None:
        self._set(PRELOAD, bool(value))

    def seconds_per_instance(self, key: str) -> float | None:
        """The time one instance took in the last refine queue run with these settings (``timing_key``)."""
        try:
            value = json.loads(self._get(SECONDS_PER_INSTANCE)).get(key)
        except (TypeError, AttributeError, json.JSONDecodeError):
            return None
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def remember_seconds_per_instance(self, key: str, seconds: float) -> None:
        try:
            table = json.loads(self._get(SECONDS_PER_INSTANCE))
        except (TypeError, json.JSONDecodeError):
            table = {}
        table = table if isinstance(table, dict) else {}
        table[key] = round(float(seconds), 4)
        self._set(SECONDS_PER_INSTANCE, json.dumps(table))

    # ----- prompt tools
    @property
    def prompt_source(self) -> str:
        """The box and click tools' coarse source: "encoder", "grabcut" or "sam" (with ``sam_checkpoint``)."""
        source = self._get(PROMPT_SOURCE)
        return source if source in PROMPT_SOURCES else PROMPT_SOURCE.default

    @prompt_source.setter
    def prompt_source(self, value: str) -> None:
        if value not in PROMPT_SOURCES:
            raise ValueError(f"the prompt source must be one of {', '.join(PROMPT_SOURCES)}, got {value!r}")
        self._set(PROMPT_SOURCE, value)

    @property
    def sam_checkpoint(self) -> str:
        """The user's SAM checkpoint file ("" when none was chosen); the app downloads nothing."""
        return self._get(SAM_CHECKPOINT)

    @sam_checkpoint.setter
    def sam_checkpoint(self, value: str) -> None:
        self._set(SAM_CHECKPOINT, str(value))

    @property
    def prompt_heads(self) -> list[str]:
        """Prompt-head weights files whose answers the tools average (empty: the shipped pair)."""
        return self._get_list(PROMPT_HEADS)

    @prompt_heads.setter
    def prompt_heads(self, value: list[str]) -> None:
        self._set(PROMPT_HEADS, json.dumps([str(v) for v in value]))

    @property
    def prompt_category(self) -> str | None:
        """The name of the category last given to an instance made by a prompt (the popup offers it first). A
        name, not an id: in another project the same id is another category, the same name the same one."""
        return self._get(PROMPT_CATEGORY) or None

    @prompt_category.setter
    def prompt_category(self, value: str) -> None:
        self._set(PROMPT_CATEGORY, str(value))

    # ----- overlay
    @property
    def opacity(self) -> float:
        return min(1.0, max(0.0, self._get(OPACITY)))

    @opacity.setter
    def opacity(self, value: float) -> None:
        self._set(OPACITY, float(value))

    @property
    def added_color(self) -> QColor:
        return QColor(self._get(ADDED_COLOR))

    @added_color.setter
    def added_color(self, value: QColor) -> None:
        self._set(ADDED_COLOR, value.name())

    @property
    def removed_color(self) -> QColor:
        return QColor(self._get(REMOVED_COLOR))

    @removed_color.setter
    def removed_color(self, value: QColor) -> None:
        self._set(REMOVED_COLOR, value.name())

    # ----- files
    @property
    def recent_projects(self) -> list[str]:
        return self._get_list(RECENT)

    def add_recent_project(self, path: str | Path) -> None:
        value = str(Path(path).resolve())
        files = [value] + [p for p in self.recent_projects if p != value]
        self._set(RECENT, json.dumps(files[:MAX_RECENT]))

    def remove_recent_project(self, path: str | Path) -> None:
        value = str(Path(path).resolve())
        self._set(RECENT, json.dumps([p for p in self.recent_projects if p != value]))

    # ----- window
    def window_state(self) -> tuple[Any, Any]:
        return self.qsettings.value("window/geometry"), self.qsettings.value("window/state")

    def save_window_state(self, geometry: Any, state: Any) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    def sync(self) -> None:
        self.qsettings.sync()


def timing_key(weights: str, device: str, mode: str, steps: int) -> str:
    """What the time per instance depends on: the weights, the device, the mode and the steps."""
    return f"{weights}|{device}|{mode}|{steps}"


def weights_label(value: str) -> str:
    """How a weights choice reads in a list: the registry name, or a file's name with its folder."""
    path = Path(value)
    return value if len(path.parts) <= 1 else f"{path.name} ({path.parent})"


class SettingsDialog(QDialog):
    """Device, default mode and steps, weights, animation, overlay colours and opacity, shortcuts.

    ``applied`` follows every write of the settings (Apply or OK), so the window can take them up.
    """

    applied = Signal()

    def __init__(
        self, settings: AppSettings, actions: ActionRegistry, devices: Sequence[str],
        weights: Sequence[str], parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.settings = settings
        self.actions = actions
        self.resize(640, 520)
        tabs = QTabWidget(self)
        tabs.addTab(self._refiner_tab(devices, weights), "Refiner")
        tabs.addTab(self._prompt_tab(), "Prompts")
        tabs.addTab(self._overlay_tab(), "Overlay")
        tabs.addTab(self._shortcuts_tab(), "Shortcuts")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.Apply
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.Apply).clicked.connect(self.apply)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)

    # ----- tabs
    def _refiner_tab(self, devices: Sequence[str], weights: Sequence[str]) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.device_box = QComboBox()
        self.mode_box = QComboBox()
        for mode in MODES:
            self.mode_box.addItem(MODE_TEXT[mode], mode)  # the refine panel's words
        self.mode_box.setCurrentIndex(max(0, self.mode_box.findData(self.settings.mode)))
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, NUM_TIMESTEPS)
        self.steps_box.setValue(self.settings.steps)
        self.weights_box = QComboBox()
        self.set_choices(devices, weights)
        add = QPushButton("Add checkpoint file…")
        add.clicked.connect(self._add_weights)
        row = QHBoxLayout()
        row.addWidget(self.weights_box, 1)
        row.addWidget(add)
        self.frame_box = QSpinBox()
        self.frame_box.setRange(0, MAX_FRAME_MS)
        self.frame_box.setSuffix(" ms")
        self.frame_box.setValue(self.settings.min_frame_ms)
        self.frame_box.setToolTip("Shortest time each refine step stays on screen (0: as fast as computed)")
        form.addRow("Device", self.device_box)
        form.addRow("Default mode", self.mode_box)
        form.addRow("Default steps", self.steps_box)
        form.addRow("Weights", row)
        form.addRow("Minimum frame time", self.frame_box)
        self.preload_box = QCheckBox("Load the refiner when the window opens")
        self.preload_box.setChecked(self.settings.preload_refiner)
        self.preload_box.setToolTip("The first refinement then starts at once; the model stays in memory")
        form.addRow("", self.preload_box)
        return page

    def _prompt_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.source_box = QComboBox()
        for value, label in PROMPT_SOURCES.items():
            self.source_box.addItem(label, value)
        self.source_box.setCurrentIndex(self.source_box.findData(self.settings.prompt_source))
        self.sam_edit = QLineEdit(self.settings.sam_checkpoint)
        self.sam_edit.setPlaceholderText("sam_vit_b_01ec64.pth (SAM ViT-B / ViT-L / ViT-H, official .pth)")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_sam)
        row = QHBoxLayout()
        row.addWidget(self.sam_edit, 1)
        row.addWidget(browse)
        self.heads_edit = QLineEdit(HEADS_SEPARATOR.join(self.settings.prompt_heads))
        self.heads_edit.setPlaceholderText("the shipped pair (prompt-head-v2, prompt-head-wide-v1)")
        self.heads_edit.setToolTip("Prompt-head weights (.safetensors, scripts/train_prompt_head.py), separated "
                                   f"by '{HEADS_SEPARATOR.strip()}': the box and click tools and Find Similar "
                                   "average them")
        choose_heads = QPushButton("Choose…")
        choose_heads.clicked.connect(self._choose_heads)
        heads_row = QHBoxLayout()
        heads_row.addWidget(self.heads_edit, 1)
        heads_row.addWidget(choose_heads)
        form.addRow("Box and click tools", self.source_box)
        form.addRow("Prompt heads", heads_row)
        form.addRow("SAM checkpoint", row)
        note = QLabel("The SAM file and the prompt heads are read when a prompt tool first runs; a file that is not "
                      "one is named in the message then. MobileSAM is not supported.")
        note.setWordWrap(True)
        form.addRow("", note)
        return page

    def _start_folder(self) -> str:
        """File choosers start where the last file was chosen, as the open and import dialogs do."""
        return start_folder(self.settings.qsettings)

    def _choose_heads(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Choose prompt heads", self._start_folder(),
                                                "Prompt heads (*.safetensors)")
        if paths:
            remember_folder(self.settings.qsettings, paths[0])
            self.heads_edit.setText(HEADS_SEPARATOR.join(str(Path(p).resolve()) for p in paths))
            self.source_box.setCurrentIndex(self.source_box.findData("encoder"))

    def _choose_sam(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a SAM checkpoint", self._start_folder(),
                                              "PyTorch checkpoints (*.pth *.pt)")
        if path:
            remember_folder(self.settings.qsettings, path)
            self.sam_edit.setText(str(Path(path).resolve()))
            self.source_box.setCurrentIndex(self.source_box.findData("sam"))

    def _overlay_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.settings.opacity * 100))
        self.added_button = _ColorButton(self.settings.added_color)
        self.removed_button = _ColorButton(self.settings.removed_color)
        form.addRow("Mask opacity", self.opacity_slider)
        form.addRow("Refiner added pixels", self.added_button)
        form.addRow("Refiner removed pixels", self.removed_button)
        return page

    def _shortcuts_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        specs = self.actions.specs()
        self.shortcut_table = QTableWidget(len(specs), 2)
        self.shortcut_table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        self.shortcut_table.verticalHeader().setVisible(False)
        self.shortcut_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.shortcut_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._editors: dict[str, QKeySequenceEdit] = {}
        for row, spec in enumerate(specs):
            item = QTableWidgetItem(spec.text.replace("&", ""))
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            item.setToolTip(spec.name)
            self.shortcut_table.setItem(row, 0, item)
            editor = QKeySequenceEdit(self.actions.shortcut(spec.name))
            editor.setMaximumSequenceLength(1)
            editor.setClearButtonEnabled(True)
            editor.keySequenceChanged.connect(self._check_conflicts)
            self.shortcut_table.setCellWidget(row, 1, editor)
            self._editors[spec.name] = editor
        self.conflict_label = QLabel()
        self.conflict_label.setObjectName("warningLabel")
        self.conflict_label.setWordWrap(True)
        reset = QPushButton("Reset all to defaults")
        reset.clicked.connect(self._reset_shortcuts)
        layout.addWidget(self.shortcut_table)
        layout.addWidget(self.conflict_label)
        layout.addWidget(reset, 0, Qt.AlignmentFlag.AlignRight)
        return page

    # ----- behaviour
    def set_choices(self, devices: Sequence[str], weights: Sequence[str]) -> None:
        """List these devices and registry weights (the refiner's probe may answer after the dialog opened),
        keeping what is chosen."""
        device = self.device_box.currentText() or self.settings.device
        chosen = self.weights_box.currentData() or self.settings.weights
        self.device_box.clear()
        self.device_box.addItems(list(dict.fromkeys(["auto", *devices, device])))
        self.device_box.setCurrentText(device)
        self.weights_box.clear()
        for value in dict.fromkeys([*weights, *self.settings.extra_weights]):
            self.weights_box.addItem(weights_label(value), value)
        self._select_weights(chosen)

    def shortcut_editor(self, name: str) -> QKeySequenceEdit:
        return self._editors[name]

    def conflicts(self) -> dict[str, list[str]]:
        """Shortcut text -> action names that would share it."""
        users: dict[str, list[str]] = {}
        for name, editor in self._editors.items():
            text = editor.keySequence().toString(QKeySequence.SequenceFormat.PortableText)
            if text:
                users.setdefault(text, []).append(name)
        return {k: v for k, v in users.items() if len(v) > 1}

    def _check_conflicts(self) -> None:
        clashes = self.conflicts()
        self.conflict_label.setText(
            "" if not clashes else "Shared shortcuts (only one will work): "
            + "; ".join(f"{k}: {', '.join(self._command_name(n) for n in v)}" for k, v in clashes.items())
        )

    def _command_name(self, name: str) -> str:
        return self.actions[name].text().replace("&", "").rstrip("…")

    def _reset_shortcuts(self) -> None:
        for spec in self.actions.specs():
            self._editors[spec.name].setKeySequence(QKeySequence(spec.shortcut))

    def _select_weights(self, value: str) -> None:
        index = self.weights_box.findData(value)
        if index < 0:
            self.weights_box.addItem(weights_label(value), value)
            index = self.weights_box.count() - 1
        self.weights_box.setCurrentIndex(index)

    def _add_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a checkpoint file", self._start_folder(), "Checkpoints (*.safetensors *.pth *.pt);;All files (*)"
        )
        if path:
            remember_folder(self.settings.qsettings, path)
            self._select_weights(str(Path(path).resolve()))

    def apply(self) -> None:
        """Write every field to the settings and the shortcuts to the action registry."""
        s = self.settings
        s.device = self.device_box.currentText()
        s.mode = self.mode_box.currentData()
        s.steps = self.steps_box.value()
        weights = self.weights_box.currentData()
        if Path(weights).suffix:
            s.add_weights_file(weights)
        else:
            s.weights = weights
        s.min_frame_ms = self.frame_box.value()
        s.prompt_source = self.source_box.currentData()
        s.sam_checkpoint = self.sam_edit.text().strip()
        s.prompt_heads = [h.strip() for h in self.heads_edit.text().split(HEADS_SEPARATOR.strip()) if h.strip()]
        s.preload_refiner = self.preload_box.isChecked()
        s.opacity = self.opacity_slider.value() / 100
        s.added_color = self.added_button.color
        s.removed_color = self.removed_button.color
        for name, editor in self._editors.items():
            self.actions.set_shortcut(name, editor.keySequence())
        s.sync()
        self.applied.emit()

    def accept(self) -> None:
        self.apply()
        super().accept()


class _ColorButton(QPushButton):
    """A button showing a colour that opens a colour picker."""

    def __init__(self, color: QColor) -> None:
        super().__init__()
        self.color = color
        self.clicked.connect(self._pick)
        self._show()

    def set_color(self, color: QColor) -> None:
        self.color = color
        self._show()

    def _pick(self) -> None:
        color = QColorDialog.getColor(self.color, self, "Choose a colour")
        if color.isValid():
            self.set_color(color)

    def _show(self) -> None:
        self.setText(self.color.name())
        self.setStyleSheet(f"background-color: {self.color.name()}; color: {_contrast(self.color)};")


def _contrast(color: QColor) -> str:
    return "#000000" if color.lightnessF() > 0.55 else "#ffffff"
