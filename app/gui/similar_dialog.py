"""Find Similar: the selected instance (or with it every instance of its category on the image) as the examples,
proposals of their category on this image or the whole project, made on the prompt thread by the service
(``find_similar``) with progress and stop.

The threshold slider previews live: the similarity map of the open image is computed once on the prompt
thread (``ProjectSimilar.similarity``, a stride-8 grid, cheap once the image's features are cached), and each
slider position only recolours that small grid here. Proposals are saved as unreviewed instances with a
PROPOSED provenance and their similarity as score (docs/decisions/0021); the window then shows them sorted by
score, to accept (it keeps them) or reject (they stay, marked, and are not proposed again) as any instance.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QProgressBar, QPushButton, QSlider,
    QVBoxLayout, QWidget,
)

from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from app.core.wording import plural
from app.gui import popups
from app.gui.controller import ProjectController
from app.gui.docks.instance_list import ALL_IMAGES, PROPOSALS_KEY, InstanceListPanel
from app.gui.editor.canvas import Canvas
from app.gui.prompt_controller import prompt_heads, refine_options
from app.gui.prompt_worker import PromptService, SimilarityJob, SimilarJob
from app.gui.settings import AppSettings
from app.refiner.similar import DEFAULT_THRESHOLD
from app.services.similar import SimilarReport, SimilarSettings

log = logging.getLogger(__name__)

SLIDER_SCALE = 100
"""The slider's integer steps per unit of cosine similarity."""
MAP_RGBA = (0, 170, 255, 110)


def map_image(similarity: np.ndarray, threshold: float) -> QImage:
    """The cells of a similarity map at or above ``threshold``, as a translucent grid image (a few thousand
    cells: cheap on the GUI thread)."""
    above = similarity >= threshold
    r, g, b, a = MAP_RGBA
    bgra = np.zeros((*above.shape, 4), np.uint8)
    bgra[above] = (b * a // 255, g * a // 255, r * a // 255, a)
    return QImage(bgra.data, bgra.shape[1], bgra.shape[0], bgra.shape[1] * 4,
                  QImage.Format.Format_ARGB32_Premultiplied).copy()


class SimilarDialog(QDialog):
    """Examples, scope, threshold (with a live preview on ``canvas``), Run / Stop, progress and the outcome.

    ``searched`` follows a finished search with its report (the window then shows the proposals).
    """

    searched = Signal(object)  # SimilarReport

    def __init__(self, store: ProjectStore, image_id: int, examples: Sequence[tuple[str, tuple[int, ...]]],
                 service: PromptService, settings: AppSettings, canvas: Canvas, parent: QWidget | None = None) -> None:
        """``examples``: the choices of example instances, (label, instance ids), the first one chosen."""
        super().__init__(parent)
        self.setWindowTitle("Find Similar")
        self.setObjectName("similarDialog")
        self.store, self.image_id = store, image_id
        self.service, self.settings, self.canvas = service, settings, canvas
        self.running: int | None = None
        self.report: SimilarReport | None = None
        self.similarity: np.ndarray | None = None
        self._map_job: int | None = None

        self.examples_box = QComboBox()
        for text, ids in examples:
            self.examples_box.addItem(text, ids)
        self.scope_box = QComboBox()
        self.scope_box.addItem("This image", "image")
        self.scope_box.addItem("Every image of the project", "project")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(-20, 80)
        self.slider.setValue(round(DEFAULT_THRESHOLD * SLIDER_SCALE))
        self.threshold_label = QLabel()
        self.preview_box = QCheckBox("Preview on the image")
        self.preview_box.setChecked(True)
        self.refine_box = QCheckBox("Refine the proposals (about a second each)")
        self.refine_box.setChecked(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Regions of the map above the threshold become proposals (status unreviewed, "
                             "with their similarity as score)")
        self.status.setWordWrap(True)
        self.run_button = QPushButton("Find")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.run_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.stop_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Examples", self.examples_box)
        form.addRow("Search", self.scope_box)
        form.addRow("Threshold", self.slider)
        form.addRow("", self.threshold_label)
        form.addRow("", self.preview_box)
        form.addRow("", self.refine_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.service.stop)
        self.slider.valueChanged.connect(self._threshold_changed)
        self.preview_box.toggled.connect(self._show_preview)
        self.examples_box.currentIndexChanged.connect(lambda _index: self.request_map())
        worker = self.service.worker
        worker.similar_progress.connect(self._progress)
        worker.similar_done.connect(self._done)
        worker.similarity.connect(self._map_ready)
        worker.failed.connect(self._failed)
        self.finished.connect(lambda _result: self._closed())
        self._threshold_changed()
        self.request_map()

    @property
    def instance_ids(self) -> tuple[int, ...]:
        """The examples searched for (several average into one prototype)."""
        return tuple(self.examples_box.currentData())

    @property
    def threshold(self) -> float:
        return self.slider.value() / SLIDER_SCALE

    def similar_settings(self) -> SimilarSettings:
        """The search's settings: the slider's threshold, refined by the window's refiner unless turned off."""
        refine = refine_options(self.settings) if self.refine_box.isChecked() else None
        return SimilarSettings(self.threshold, heads=prompt_heads(self.settings), refine=refine)

    # ----- the preview
    def request_map(self) -> None:
        """Ask the prompt thread for the open image's similarity map (features computed once, then cached)."""
        self._map_job = self.service.next_job_id()
        self.service.submit(SimilarityJob(self._map_job, self.store, self.instance_ids, self.image_id,
                                          self.similar_settings()))
        self.threshold_label.setText(f"{self.threshold:.2f} (computing the preview…)")

    def _map_ready(self, job_id: int, similarity: np.ndarray) -> None:
        if job_id != self._map_job:
            return
        self._map_job = None
        self.similarity = similarity
        self._threshold_changed()

    def _threshold_changed(self) -> None:
        if self._map_job is None:
            share = "" if self.similarity is None else \
                f": {np.mean(self.similarity >= self.threshold):.0%} of this image above it"
            self.threshold_label.setText(f"{self.threshold:.2f}{share}")
        self._show_preview()

    def _show_preview(self) -> None:
        if self.similarity is None or not self.preview_box.isChecked() or not self.isVisible() \
                or self.canvas.document is None or self.canvas.document.image_id != self.image_id:
            self.canvas.show_prompt_preview(None)
            return
        h, w = self.canvas.document.shape
        self.canvas.show_prompt_preview(map_image(self.similarity, self.threshold), (0, 0, w, h))

    # ----- the search
    def run(self) -> None:
        if self.running is not None:
            return
        scope = None if self.scope_box.currentData() == "project" else (self.image_id,)
        self.running = self.service.next_job_id()
        self.service.submit(SimilarJob(self.running, self.store, self.instance_ids, scope, self.similar_settings()))
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status.setText("Searching… (the first search loads the encoder and computes each image's features)")

    def _progress(self, job_id: int, done: int, total: int, what: str) -> None:
        if job_id == self.running:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.status.setText(what)

    def _done(self, job_id: int, report: SimilarReport) -> None:
        if job_id != self.running:
            return
        self._idle()
        if not self.isVisible():  # closed while searching: still show what the search saved
            self._release()
        self.report = report
        made = len(report.created)
        log.info("find similar on %s: %d proposal(s) on %d image(s), %.1f s%s", self.instance_ids, made,
                 report.searched, report.seconds, " (stopped)" if report.stopped else "")
        text = f"{plural(made, 'proposal')} added on {plural(report.searched, 'image')} in {report.seconds:.1f} s"
        if report.stopped:
            text += " (stopped; what was found is kept)"
        if report.problems:
            text += f"; {plural(len(report.problems), 'image')} skipped: {report.problems[0]}"
        self.status.setText(text + ("; review them in the instance list (highest score first)" if made else ""))
        self.searched.emit(report)

    def _failed(self, job_id: int, message: str) -> None:
        if job_id == self._map_job:
            self._map_job = None
            self.threshold_label.setText(f"{self.threshold:.2f} (no preview: {message})")
        elif job_id == self.running:
            self._idle()
            self.status.setText(f"Find similar failed: {message}")
            if not self.isVisible():
                self._release()

    def _idle(self) -> None:
        self.running = None
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.progress.setVisible(False)

    def _closed(self) -> None:
        """Closing takes the preview off the image and stops a search in progress after the image in flight;
        the dialog stays (hidden) until that search reports, so what it saved is still shown."""
        self.canvas.show_prompt_preview(None)
        if self.running is not None:
            self.service.stop()
        else:
            self._release()

    def _release(self) -> None:
        worker = self.service.worker
        for signal, slot in ((worker.similar_progress, self._progress), (worker.similar_done, self._done),
                             (worker.similarity, self._map_ready), (worker.failed, self._failed)):
            signal.disconnect(slot)
        self.deleteLater()



def open_find_similar(project: ProjectController, service: PromptService, settings: AppSettings, canvas: Canvas,
                      instances: InstanceListPanel, parent: QWidget, show_message: Callable[[str], None]
                      ) -> SimilarDialog | None:
    """Find Similar on the selected instance (Edit menu, context menus): the dialog, not modal, so the preview
    on the image stays in view; a finished search lists its proposals by score."""
    doc, store = project.doc, project.store
    if doc is None or store is None or doc.selected_id is None:
        show_message("Select an example instance first")
        return None
    project.flush()  # the example is searched for as it is on screen
    layer = doc.layer(doc.selected_id)
    category = project.categories.get(layer.category_id)
    name = category.name if category is not None else str(layer.category_id)
    examples = [(f"instance #{layer.id} ({name})", (layer.id,))]
    others = [other.id for other in doc.layers() if other.id != layer.id and other.category_id == layer.category_id
              and not other.crowd and not other.proposal and doc.layer_bbox(other.id) is not None]
    if others:
        examples.append((f"every {name} on this image ({len(others) + 1} instances)", (layer.id, *others)))
    dialog = SimilarDialog(store, doc.image_id, examples, service, settings, canvas, parent)
    dialog.searched.connect(lambda report: show_proposals(project, instances, report))
    dialog.adjustSize()
    height, width = doc.shape
    popups.place_beside(dialog, canvas.global_rect((0, 0, width, height)))  # the map's preview stays in view
    dialog.show()
    return dialog


def show_proposals(project: ProjectController, instances: InstanceListPanel, report: SimilarReport) -> None:
    """Put a search's proposals in view: the open image read again if it got some, the list showing the
    proposals to review, highest score first (of all images when some are on other images)."""
    if not report.created:
        return
    for instance_id in report.created:
        project.saved.emit(instance_id)
    doc, store = project.doc, project.store
    here = 0 if doc is None or store is None else store.count_instances(
        InstanceFilter(ids=list(report.created), image_id=doc.image_id))
    instances.reveal_scores()
    scope = {"scope": ALL_IMAGES} if here < len(report.created) else {}
    instances.set_filters({**instances.filters(), "status": PROPOSALS_KEY, "sort": "Highest score", **scope})
    instances.filters_changed.emit()
    if doc is not None and here:
        project.open_image(doc.image_id, doc.selected_id)
