"""Shared GUI test setup: Qt without a display, and a small document on a real photograph."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported below

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.gui.editor.canvas import Canvas
from app.core.package_data import demo_dir
from app.gui.editor.document import ImageDocument
from app.gui.editor.layers import InstanceLayer, palette_color
from app.gui.settings import AppSettings

DOC_SHAPE = (200, 300)


@pytest.fixture(autouse=True)
def no_blocking_dialogs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A modal dialog nobody answers would hang the test run: fail at once instead (a test that expects one
    monkeypatches it with the answer)."""
    from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

    def unexpected(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unexpected modal dialog: {args[1:3]}")

    from app.gui import popups

    for cls, names in ((QInputDialog, ("getItem", "getText", "getInt")),
                       (QFileDialog, ("getOpenFileName", "getSaveFileName", "getExistingDirectory")),
                       (QMessageBox, ("warning", "question", "information", "critical")),
                       (popups, ("pick_category",))):
        for name in names:
            monkeypatch.setattr(cls, name, unexpected)


@pytest.fixture
def image_document(qapp: object) -> ImageDocument:
    """The demo's astronaut photo (app/resources/demo) resized to 300x200, with three instances.

    1: a 60x80 box at x 40..100, y 30..110 with a 20x20 hole at x 60..80, y 50..70 (z 0, category 1);
    2: a disc of radius 30 at (180, 100) (z 1, category 2);
    3: a 30x30 box at x 220..250, y 140..170, locked (z 2, category 1).
    """
    photo = cv2.cvtColor(cv2.imread(str(demo_dir() / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    image = np.ascontiguousarray(cv2.resize(photo, (DOC_SHAPE[1], DOC_SHAPE[0]), interpolation=cv2.INTER_AREA))
    box = np.zeros(DOC_SHAPE, dtype=bool)
    box[30:110, 40:100] = True
    box[50:70, 60:80] = False
    disc = np.zeros(DOC_SHAPE, dtype=np.uint8)
    cv2.circle(disc, (180, 100), 30, 1, thickness=-1)
    small = np.zeros(DOC_SHAPE, dtype=bool)
    small[140:170, 220:250] = True
    layers = [
        InstanceLayer(1, 1, box, palette_color(1), z=0),
        InstanceLayer(2, 2, disc.astype(bool), palette_color(2), z=1),
        InstanceLayer(3, 1, small, palette_color(3), z=2, locked=True),
    ]
    return ImageDocument(image, image_id=7, layers=layers)


# ----------------------------------------------------------------------------- window fixtures (GUI-B)

TEST_STEPS = 3


@pytest.fixture
def app_settings(qapp: object, tmp_path: Path) -> AppSettings:
    """Settings in a temporary INI file: tests never read or write the user's."""
    from app.gui.app import configure_application

    configure_application(qapp)  # type: ignore[arg-type]
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained compact-style network (narrower than the preset, for speed) saved as our safetensors."""
    import torch

    from app.refiner.unet import PRESETS, DenoiseUNet
    from app.refiner.weights import save_weights

    torch.manual_seed(0)
    config = replace(PRESETS["compact"], channel_mult=(1, 1, 2, 2, 4), num_res_blocks=(0, 0, 0, 0, 1),
                     attention_strides=(), time_embed_dim=32)
    return save_weights(DenoiseUNet(config), tmp_path_factory.mktemp("weights") / "random-compact.safetensors")


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run the refiner on one intra-op thread: on a small shared CI machine two threads contend ten-fold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Where the window keeps the demo project."""
    return tmp_path / "data"


def open_window(qtbot: QtBot, settings: AppSettings, data_dir: Path):  # type: ignore[no-untyped-def]
    """A shown MainWindow with the demo project open and its first image loaded."""
    from app.gui.main_window import MainWindow

    window = MainWindow(settings, data_dir=data_dir)
    qtbot.addWidget(window)
    window.resize(1100, 700)
    window.show()
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        window.open_startup()
    return window


@pytest.fixture
def window(qtbot: QtBot, app_settings: AppSettings, data_dir: Path, random_weights: Path,  # type: ignore[no-untyped-def]
           one_torch_thread: None):
    """The real main window on the demo project, refining with ``random_weights`` in 3 steps."""
    app_settings.add_weights_file(random_weights)
    app_settings.steps = TEST_STEPS
    app_settings.min_frame_ms = 0
    return open_window(qtbot, app_settings, data_dir)


def wait_saved(qtbot: QtBot, window) -> None:  # type: ignore[no-untyped-def]
    """Let the autosave encode and write the edits made so far (it runs in the background)."""
    qtbot.waitUntil(lambda: not window.project.autosave.busy, timeout=10_000)


@pytest.fixture
def canvas(qtbot: QtBot, image_document: ImageDocument) -> Canvas:
    """A shown 640x440 canvas on ``image_document``."""
    view = Canvas()
    qtbot.addWidget(view)
    view.resize(640, 440)
    view.show()
    qtbot.waitExposed(view)
    view.set_document(image_document)
    return view


# ----------------------------------------------------------------------------- 64-bit ids (issue 13)

BIG_IMAGE_ID = 2**32 + 2
"""The demo's chelsea.png under an image id past 32 bits."""
BIG_ID = 2**33 + 5
"""An ordinary annotation id past 32 bits (one of the cat's eyes)."""
CROWD_ID = 900100000007
"""A crowd region with an id like COCO's (the cat's nose, marked iscrowd)."""


def edited_demo_project(tmp_path: Path, name: str, edit: Callable[[dict], None]) -> Path:
    """A project made from the demo's COCO file after ``edit`` changed it (in place), images copied beside it."""
    import json
    import shutil

    from app.core.formats.coco import load_coco
    from app.core.store.project import ProjectStore

    images = tmp_path / "images"
    shutil.copytree(demo_dir(), images)
    data = json.loads((images / "demo.json").read_text())
    edit(data)
    source = tmp_path / f"{name}.json"
    source.write_text(json.dumps(data))
    dataset, _ = load_coco(source)
    path = tmp_path / f"{name}.srproj"
    with ProjectStore.create(path, dataset, source_path=source, images_dir=images):
        pass
    return path


@pytest.fixture
def big_ids_project(tmp_path: Path) -> Path:
    """The demo as a project whose second image and two of its annotations have ids past 2**31, one of
    them a crowd region, as COCO's crowd annotations (900100184324, ...) have."""
    def edit(data: dict) -> None:
        for record in data["images"]:
            if record["id"] == 2:
                record["id"] = BIG_IMAGE_ID
        for ann in data["annotations"]:
            if ann["image_id"] == 2:
                ann["image_id"] = BIG_IMAGE_ID
            if ann["id"] == 5:
                ann["id"] = BIG_ID
            if ann["id"] == 7:
                ann["id"], ann["iscrowd"] = CROWD_ID, 1

    return edited_demo_project(tmp_path, "big-ids", edit)


def open_project(qtbot: QtBot, window, path: Path, image_id: int | None = None):  # type: ignore[no-untyped-def]
    """Open ``path`` in ``window`` (and then image ``image_id``); the open document."""
    assert window.project.open_project(path)
    qtbot.waitUntil(lambda: window.project.doc is not None, timeout=20_000)
    if image_id is not None and window.project.doc.image_id != image_id:
        with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
            window.project.open_image(image_id)
    return window.project.doc


def start_dataset_queue(window) -> None:  # type: ignore[no-untyped-def]
    """Refine All Unreviewed as the annotator does it: the action, then Yes in its confirmation."""
    from PySide6.QtWidgets import QMessageBox

    window.actions["refine.dataset"].trigger()
    box = window.feedback.confirmation
    assert box is not None and box.isVisible(), "Refine All Unreviewed asks first"
    box.button(QMessageBox.StandardButton.Yes).click()
