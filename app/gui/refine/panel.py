"""The refine panel: mode, weights, steps, device and seed; run / stop / accept / reject; the step
scrubber; the queue's progress. Choices are remembered in the settings as they change.

Until the refine thread has looked (``set_environment``), registry weights are listed as unchecked; a
registry checkpoint whose file is missing is marked and explained in the warning line, and the run
buttons stay disabled while the chosen weights cannot be used.
"""
from __future__ import annotations

from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QSlider,
    QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

from app.gui.actions import ActionRegistry
from app.gui.refine.worker import Environment
from app.gui.settings import MAX_SEED, MODE_TEXT, AppSettings, weights_label
from app.refiner.options import MODES, NUM_TIMESTEPS, RefineOptions, steps_range

RUN_ACTIONS = ("refine.run", "refine.image", "refine.dataset")


class _ComboBox(QComboBox):
    """A combo box that says when its list is about to open (the refiner's choices are probed then)."""

    opening = Signal()

    def showPopup(self) -> None:  # noqa: N802 (Qt override)
        self.opening.emit()
        super().showPopup()


READ_ONLY_TEXT = "This window is read-only: refining is off"


class RefinePanel(QWidget):
    """Refiner settings and controls. ``scrubbed(index)`` asks to show a step (0-based);
    ``environment_wanted`` says the user is choosing weights or a device, which needs the probe."""

    scrubbed = Signal(int)
    choice_changed = Signal()
    environment_wanted = Signal()

    def __init__(self, settings: AppSettings, actions: ActionRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.actions = actions
        self.environment: Environment | None = None
        self._build()
        self.reload_settings()

    # ----- layout
    def _build(self) -> None:
        self.mode_box = QComboBox()
        for mode in MODES:
            self.mode_box.addItem(MODE_TEXT[mode], mode)
        self.mode_box.setMinimumContentsLength(14)  # its longest item would set the dock's least width
        self.mode_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.weights_box = _ComboBox()
        self.weights_box.opening.connect(self.environment_wanted)
        self.weights_box.setMinimumContentsLength(14)
        self.weights_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        add = QToolButton()
        add.setIcon(qta.icon("mdi6.file-plus"))
        add.setToolTip("Add a checkpoint file (.safetensors, or an official SegRefiner .pth)")
        add.clicked.connect(self.add_weights_file)
        self.add_weights_button = add
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_box, 1)
        weights_row.addWidget(add)
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, NUM_TIMESTEPS)
        self.device_box = _ComboBox()
        self.device_box.opening.connect(self.environment_wanted)
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, MAX_SEED)
        self.snap_box = QCheckBox("Snap to image edges")
        self.snap_box.setToolTip("Where the network moved a boundary, put it on the image's colour edge to the pixel "
                                 "(band networks only)")
        form = QFormLayout()
        form.addRow("Mode", self.mode_box)
        form.addRow("Weights", weights_row)
        steps_row = QHBoxLayout()
        steps_row.addWidget(self.steps_box)
        steps_row.addWidget(QLabel("Seed"))
        steps_row.addWidget(self.seed_box)
        form.addRow("Steps", steps_row)
        form.addRow("Device", self.device_box)
        form.addRow("", self.snap_box)
        self.warning = QLabel()
        self.warning.setObjectName("warningLabel")
        self.warning.setWordWrap(True)
        self.warning.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning.hide()

        run_grid = QGridLayout()
        names = ("refine.run", "refine.stop", "refine.image", "refine.dataset", "refine.pause", "refine.reject",
                 "refine.accept", "refine.accept_next")
        for k, name in enumerate(names):
            run_grid.addWidget(self._button(name), k // 2, k % 2)

        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setObjectName("stepScrubber")
        self.scrubber.setRange(1, 1)
        self.scrubber.setPageStep(1)
        self.scrubber.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.scrubber.setTickInterval(1)
        self.scrubber.setEnabled(False)
        self.scrubber.valueChanged.connect(self._scrubbed)
        self.idle_text = "The refiner loads when the window is up"
        self.read_only = False
        self.step_label = QLabel(self.idle_text)
        self.step_label.setObjectName("stepLabel")
        self.step_label.setWordWrap(True)
        scrub_row = QHBoxLayout()
        scrub_row.addWidget(self._button("refine.step_back", text=False))
        scrub_row.addWidget(self.scrubber, 1)
        scrub_row.addWidget(self._button("refine.step_forward", text=False))

        self.queue_bar = QProgressBar()
        self.queue_bar.setFormat("%v / %m instances")
        self.queue_bar.hide()
        self.queue_label = QLabel()
        self.queue_label.setObjectName("queueLabel")
        self.queue_label.setWordWrap(True)
        self.queue_label.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        layout.addWidget(self.warning)
        layout.addLayout(run_grid)
        layout.addLayout(scrub_row)
        layout.addWidget(self.step_label)
        layout.addWidget(self.queue_bar)
        layout.addWidget(self.queue_label)
        layout.addStretch(1)

        self.mode_box.currentIndexChanged.connect(self._choice_edited)
        self.weights_box.currentIndexChanged.connect(self._choice_edited)
        self.steps_box.valueChanged.connect(self._choice_edited)
        self.device_box.currentIndexChanged.connect(self._choice_edited)
        self.seed_box.valueChanged.connect(self._choice_edited)
        self.snap_box.toggled.connect(self._choice_edited)

    def _button(self, name: str, text: bool = True) -> QToolButton:
        button = QToolButton()
        button.setDefaultAction(self.actions[name])
        button.setObjectName(name.replace(".", "_") + "_button")
        if text:
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        return button

    # ----- settings and environment
    def reload_settings(self) -> None:
        """Show the remembered choices (after start-up or the settings dialog)."""
        widgets = (self.mode_box, self.weights_box, self.steps_box, self.device_box, self.seed_box, self.snap_box)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.mode_box.setCurrentIndex(max(0, self.mode_box.findData(self.settings.mode)))
            self.steps_box.setValue(self.settings.steps)
            self.seed_box.setValue(self.settings.seed)
            self.snap_box.setChecked(self.settings.snap)
            self._fill_devices()
            self._fill_weights()
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._update_warning()

    def set_environment(self, environment: Environment) -> None:
        self.environment = environment
        self.reload_settings()

    def _fill_devices(self) -> None:
        devices = ["auto", *(self.environment.devices if self.environment else [])]
        if self.settings.device not in devices:
            devices.append(self.settings.device)
        self.device_box.clear()
        self.device_box.addItems(devices)
        self.device_box.setCurrentText(self.settings.device)

    def _fill_weights(self) -> None:
        self.weights_box.clear()
        if self.environment is not None:
            for choice in self.environment.weights:
                icon = qta.icon("mdi6.check", color="#16a34a") if choice.available else qta.icon(
                    "mdi6.alert", color="#d97706")
                self.weights_box.addItem(icon, choice.name, choice.name)
                self.weights_box.setItemData(self.weights_box.count() - 1, choice.description,
                                             Qt.ItemDataRole.ToolTipRole)
        for path in self.settings.extra_weights:
            self.weights_box.addItem(qta.icon("mdi6.file"), weights_label(path), path)
        current = self.settings.weights
        index = self.weights_box.findData(current)
        if index < 0:
            self.weights_box.addItem(weights_label(current), current)
            index = self.weights_box.count() - 1
        self.weights_box.setCurrentIndex(index)

    def add_weights_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a checkpoint file", "", "Checkpoints (*.safetensors *.pth *.pt);;All files (*)")
        if path:
            self.use_weights_file(Path(path))

    def use_weights_file(self, path: Path) -> None:
        self.settings.add_weights_file(path)
        self.reload_settings()
        self.choice_changed.emit()

    # ----- choice
    def options(self) -> RefineOptions:
        """The panel's choices as the one ``RefineOptions`` the refiner takes."""
        return RefineOptions(
            weights=self.weights_box.currentData() or self.settings.weights,
            device=self.device_box.currentText() or "auto",
            mode=self.mode_box.currentData(),
            steps=self.steps_box.value(),
            seed=self.seed_box.value(),
            snap=self.snap_box.isChecked(),
        )

    def problem(self) -> str | None:
        """Why the chosen weights cannot run, or None."""
        value = self.weights_box.currentData() or self.settings.weights
        if Path(value).suffix:
            return None if Path(value).is_file() else f"Checkpoint file not found: {value}"
        if self.environment is None:
            return None
        entry = next((w for w in self.environment.weights if w.name == value), None)
        if entry is None:
            return f"Unknown weights {value!r}"
        if entry.available:
            return None
        return f"No weights available for {value}. {entry.problem}. Or add a checkpoint file (the + button)."

    def _choice_edited(self) -> None:
        s = self.settings
        s.mode = self.mode_box.currentData()
        s.steps = self.steps_box.value()
        s.seed = self.seed_box.value()
        s.snap = self.snap_box.isChecked()
        if self.device_box.currentText():
            s.device = self.device_box.currentText()
        if self.weights_box.currentData():
            s.weights = self.weights_box.currentData()
        low, _ = steps_range(s.mode)
        if self.steps_box.value() < low:
            self.steps_box.setValue(low)
        self._update_warning()
        self.choice_changed.emit()

    def _update_warning(self) -> None:
        problem = self.problem()
        self.warning.setText(problem or "")
        self.warning.setVisible(problem is not None)

    # ----- run state
    def set_state(self, running: bool, reviewing: bool, queue_active: bool, queue_paused: bool,
                  editable: bool = True) -> None:
        """Enable the actions that make sense now (the refiner's options only where refining can happen)."""
        usable = self.problem() is None
        idle = not running and not queue_active
        for name in RUN_ACTIONS:
            self.actions[name].setEnabled(idle and usable)
        self.actions["refine.stop"].setEnabled(running or queue_active)
        pause = self.actions["refine.pause"]
        pause.setEnabled(queue_active)
        pause.setChecked(queue_paused)
        pause.setText("Resume Queue" if queue_paused else "Pause Queue")
        for name in ("refine.accept", "refine.reject", "refine.step_back", "refine.step_forward"):
            self.actions[name].setEnabled(reviewing)
        self.scrubber.setEnabled(reviewing or running)
        self.queue_bar.setVisible(queue_active)
        self.queue_label.setVisible(queue_active)
        for w in (self.mode_box, self.weights_box, self.steps_box, self.device_box, self.seed_box, self.snap_box,
                  self.add_weights_button):
            w.setEnabled(idle and editable)

    def show_step(self, shown: int, count: int, text: str) -> None:
        self.scrubber.blockSignals(True)
        self.scrubber.setRange(1, max(1, count))
        self.scrubber.setValue(shown)
        self.scrubber.blockSignals(False)
        if text:
            self.step_label.setText(text)

    def clear_steps(self) -> None:
        """No run to show: say what state the refiner is in (loading, ready, or not loaded yet)."""
        self.show_step(1, 1, READ_ONLY_TEXT if self.read_only else self.idle_text)

    def set_idle_text(self, text: str, showing: bool) -> None:
        """What the step line says while no run is shown (``showing``: none is shown now); a read-only window
        keeps saying that it is."""
        self.idle_text = text
        if showing and not self.read_only:
            self.step_label.setText(text)

    def set_read_only(self, read_only: bool) -> None:
        """Say that refining is off in a read-only window, and what the model is doing once it is not."""
        self.read_only = read_only
        self.step_label.setText(READ_ONLY_TEXT if read_only else self.idle_text)

    def set_queue_progress(self, done: int, total: int, text: str) -> None:
        self.queue_bar.setRange(0, max(1, total))
        self.queue_bar.setValue(done)
        self.queue_label.setText(text)

    def _scrubbed(self, value: int) -> None:
        self.scrubbed.emit(value - 1)
