"""The window's "Refine All Unreviewed" and the headless ``refine`` take the same instances and read the same
image files on the same project: crowd and locked instances never, already-refined ones only when asked,
hidden ones like the others, and LVIS' ``val2017/x.jpg`` file names found in a flat images folder."""
from __future__ import annotations

import shutil
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core.formats.coco import load_coco
from app.core.package_data import demo_dir
from app.core.records import ChangeKind, Provenance, ReviewStatus
from app.core.store.project import ProjectStore
from app.gui.settings import AppSettings
from app.refiner.api import Refiner
from app.refiner.options import RefineOptions
from app.services.refine import refine_project
from app.services.selection import Selection, image_file, select_instances

from .conftest import open_window, start_dataset_queue, wait_saved

EARLIER = Provenance.refined("earlier-weights", "instance", 6, 0.9)


def lvis_layout_project(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """The demo as an LVIS-style project: file names ``val2017/<name>`` with the photos in one flat folder,
    and one instance each crowd, locked, hidden, accepted and refined before."""
    images = tmp_path / "images"
    shutil.copytree(demo_dir(), images)
    dataset, _ = load_coco(images / "demo.json")
    for record in dataset.images.values():
        record.file_name = f"val2017/{record.file_name}"
    ids = sorted(i.id for i in dataset.instances)
    special = dict(zip(("crowd", "locked", "hidden", "accepted", "refined"), ids))
    next(i for i in dataset.instances if i.id == special["crowd"]).iscrowd = 1
    path = tmp_path / "lvis-layout.srproj"
    with ProjectStore.create(path, dataset, images_dir=images) as store:
        store.set_layer(special["locked"], locked=True)
        store.set_layer(special["hidden"], hidden=True)
        store.set_status(special["accepted"], ReviewStatus.ACCEPTED)
        store.set_mask(special["refined"], store.instance(special["refined"]).mask(), provenance=EARLIER)
    return path, special


def refined_now(project: Path) -> set[int]:
    with ProjectStore.open(project, read_only=True) as store:
        return {i.id for i in store.iter_instances()
                if i.provenance.kind is ChangeKind.REFINED and i.provenance.weights != EARLIER.weights}


def test_window_queue_and_headless_refine_take_the_same_instances_and_files(
    qtbot: QtBot, app_settings: AppSettings, tmp_path: Path, random_weights: Path, one_torch_thread: None,
) -> None:
    source, special = lvis_layout_project(tmp_path)
    headless, windowed = tmp_path / "headless.srproj", tmp_path / "window.srproj"
    shutil.copy(source, headless)
    shutil.copy(source, windowed)
    with ProjectStore.open(source, read_only=True) as store:
        every = {i.id for i in store.iter_instances()}
        files = {r.id: image_file(store, r) for r in store.images()}  # the LVIS names resolve in the flat folder
        assert all(path.parent == tmp_path / "images" for path in files.values())
        expected = every - {special[k] for k in ("crowd", "locked", "accepted", "refined")}
        assert {i for ids in select_instances(store, Selection()).values() for i in ids} == expected

    with ProjectStore.open(headless) as store:
        report = refine_project(store, Refiner(str(random_weights), "cpu"), RefineOptions(steps=1), Selection())
    assert not report.problems and report.images == len(files)

    app_settings.add_weights_file(random_weights)
    app_settings.steps = 1
    app_settings.min_frame_ms = 0
    window = open_window(qtbot, app_settings, tmp_path / "data")
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        assert window.project.open_project(windowed)
    start_dataset_queue(window)
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=60_000)
    wait_saved(qtbot, window)
    assert window.last_error is None
    window.project.close_project()

    assert refined_now(windowed) == refined_now(headless)
    assert refined_now(headless) <= expected and special["hidden"] in expected
    passed_through = expected - refined_now(headless)  # too small for the refiner: the same in both
    assert len(passed_through) == report.passed_through
