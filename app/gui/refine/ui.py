"""What the window shows of the refiner's long work: the model loading (started in the background as soon
as the window shows its first image), the dataset queue's confirmation with an estimate of the time it
takes, its progress with the time left, and the time per instance remembered for the next estimate.
"""
from __future__ import annotations

import logging
from typing import Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QLabel, QMessageBox, QProgressBar, QWidget

from app.core.wording import plural
from app.gui.refine.controller import RefineController, unreviewed
from app.gui.refine.panel import RefinePanel
from app.gui.refine.queue import estimate_text, skipped_text
from app.gui.refine.worker import PRELOAD_JOB, RefineService
from app.gui.settings import AppSettings, timing_key, weights_label
from app.refiner.options import RefineOptions

log = logging.getLogger(__name__)

PRELOAD_DELAY_MS = 50
"""After the first image is on screen: its paint comes first, then the model loads on the refine thread (0019)."""


def _timing_key(options: RefineOptions) -> str:
    return timing_key(options.weights, options.device, options.mode, options.steps)


class RefineFeedback(QObject):
    """Keeps the refine panel, the status bar's progress and the device label in step with the refiner."""

    def __init__(self, parent: QWidget, settings: AppSettings, service: RefineService, refine: RefineController,
                 panel: RefinePanel, progress_bar: QProgressBar, device_label: QLabel,
                 message: Callable[[str], None]) -> None:
        super().__init__(parent)
        self.window = parent
        self.settings = settings
        self.service = service
        self.refine = refine
        self.panel = panel
        self.progress_bar = progress_bar
        self.device_label = device_label
        self.message = message
        self.loading: str | None = None
        self.loaded: str | None = None
        self.preload_started = False
        self.confirmation: QMessageBox | None = None
        worker = service.worker
        worker.loading.connect(self._loading)
        worker.loaded.connect(self._loaded)
        worker.failed.connect(self._failed)
        refine.queue_progress.connect(self.show_queue_progress)
        refine.queue_measured.connect(
            lambda options, seconds: settings.remember_seconds_per_instance(_timing_key(options), seconds))

    # ----- the model
    def schedule_preload(self) -> None:
        """Load the model soon (once), unless the settings say not to or the chosen weights cannot run."""
        if not self.preload_started and self.settings.preload_refiner and self.panel.problem() is None:
            self.preload_started = True
            self.panel.set_idle_text(f"Loading model {weights_label(self.panel.options().weights)}…", self._idle())
            QTimer.singleShot(PRELOAD_DELAY_MS, self._preload)

    def _preload(self) -> None:
        if self.panel.problem() is None:
            self.service.preload(self.panel.options())

    def _idle(self) -> bool:
        return self.refine.session is None and not self.refine.queue_active

    def _loading(self, name: str) -> None:
        self.loading = name
        self.device_label.setText(f"refiner: loading {name}…")
        self.panel.set_idle_text(f"Loading model {name}…", self._idle())
        if self.refine.running and not self.refine.step_count:
            self.panel.step_label.setText(f"Loading model {name}… the refinement starts when it is ready")

    def _loaded(self, name: str, device: str) -> None:
        self.loading, self.loaded = None, name
        self.device_label.setText(f"{name} · {device}")
        self.panel.set_idle_text(f"Model {name} ready on {device}: R refines the selected instance", self._idle())

    def _failed(self, job_id: int, message: str) -> None:
        if job_id == PRELOAD_JOB:
            self.loading = None
            self.device_label.setText("refiner: not loaded (see the refine panel)")
            self.panel.set_idle_text(f"The model could not be loaded: {message}", self._idle())

    def run_started(self) -> None:
        """A refinement was asked for: say so while the model is still loading (or has not started to)."""
        loading = self.loading or (None if self.loaded else weights_label(self.panel.options().weights))
        if loading is not None and not self.refine.step_count:
            self.panel.step_label.setText(f"Loading model {loading}… the refinement starts when it is ready")

    # ----- the dataset queue
    def confirm_dataset(self, options: RefineOptions) -> bool:
        """Ask before refining every unreviewed instance: how many, about how long, what is left out."""
        plan = self.refine.plan(unreviewed(options))
        if plan is None:
            return False
        if not plan.total:
            return self.refine.start_queue(options, plan, "the project")
        measured = self.settings.seconds_per_instance(_timing_key(options))
        skipped = skipped_text(plan.skipped)
        lines = [estimate_text(plan.total, measured)]
        if skipped:
            lines.append(f"Left out: {skipped} (never refined).")
        lines.append("Results are saved as they come. Pause (P) holds the queue after the instance in flight; "
                     "Stop (Esc) ends it and keeps what is done.")
        box = QMessageBox(QMessageBox.Icon.Question, "Refine All Unreviewed",
                          f"Refine {plural(plan.total, 'unreviewed instance')} "
                          f"on {plural(len(plan.by_image), 'image')}?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self.window)
        box.setObjectName("queueConfirmation")
        box.setInformativeText("\n\n".join(lines))
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: box.standardButton(button) == QMessageBox.StandardButton.Yes
                                  and self.refine.start_queue(options, plan, "the project"))
        box.finished.connect(lambda _result: self.confirmation is box and setattr(self, "confirmation", None))
        self.confirmation = box
        box.open()
        return True

    def show_queue_progress(self, done: int, total: int) -> None:
        stats = self.refine.stats
        text = "" if stats is None else stats.progress_text(self.refine.queue_paused)
        self.panel.set_queue_progress(done, total, text)
        bar = self.progress_bar
        if not self.refine.queue_active:
            bar.hide()
            return
        bar.setRange(0, max(1, total))
        bar.setValue(done)
        bar.setFormat(text.replace("%", "%%"))
        bar.show()
