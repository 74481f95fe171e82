"""Undo that survives changing image, an import that asks where to save, a read-only window that says so,
a new instance that asks for its category, and a quit that closes the project (issue 13)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.core.package_data import demo_dir
from app.core.records import ReviewStatus
from app.core.store.project import ProjectStore
from app.gui import import_dialogs, popups
from app.gui.main_window import MainWindow
from app.gui.settings import AppSettings
from app.services.demo import DEMO_JSON, demo_project_path

from .conftest import wait_saved
from .test_window import brush_the_next_instance, stored_mask


def test_undo_and_redo_survive_changing_image(window: MainWindow, qtbot: QtBot) -> None:
    doc, selected = brush_the_next_instance(window)
    first_image = doc.image_id
    wait_saved(qtbot, window)
    painted = doc.layer(selected).mask.copy()
    assert painted[20, 40]
    for action in ("image.next", "image.previous"):
        with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
            window.actions[action].trigger()
    back = window.project.doc
    assert back is not None and back.image_id == first_image and back is not doc
    assert np.array_equal(back.layer(selected).mask, painted)
    assert window.actions["edit.undo"].isEnabled() and not window.actions["edit.redo"].isEnabled()
    assert window.undo_view.model().rowCount() == 2  # "Opened" and the stroke
    window.actions["edit.undo"].trigger()
    wait_saved(qtbot, window)
    assert not back.layer(selected).mask[20, 40] and np.array_equal(stored_mask(window, selected),
                                                                   back.layer(selected).mask)
    window.actions["edit.redo"].trigger()
    wait_saved(qtbot, window)
    assert np.array_equal(back.layer(selected).mask, painted)
    assert np.array_equal(stored_mask(window, selected), painted)


def mini_coco(folder: Path) -> Path:
    folder.mkdir()
    demo = json.loads((demo_dir() / DEMO_JSON).read_text())
    demo["images"] = demo["images"][1:2]
    demo["annotations"] = [a for a in demo["annotations"] if a["image_id"] == demo["images"][0]["id"]]
    source = folder / "mini.json"
    source.write_text(json.dumps(demo))
    return source


def test_import_asks_where_to_save_and_writes_nothing_beside_the_source(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    source = mini_coco(tmp_path / "dataset")
    before = sorted(p.name for p in source.parent.iterdir())
    user_folder = tmp_path / "Documents" / "SegRefiner Studio"
    chosen = tmp_path / "elsewhere" / "cats.srproj"
    chosen.parent.mkdir()
    asked: dict[str, str] = {}

    def save_as(_parent, _title, directory, *_args, **_kwargs):  # type: ignore[no-untyped-def]
        asked["directory"] = directory
        return str(chosen), ""

    monkeypatch.setattr(import_dialogs, "default_projects_dir", lambda: user_folder)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(source), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: str(demo_dir()))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_as)
    window.actions["file.import_coco"].trigger()
    qtbot.waitUntil(lambda: window.project.project_path == chosen and window.project.doc is not None,
                    timeout=20_000)
    assert Path(asked["directory"]) == user_folder / "mini.srproj"
    assert sorted(p.name for p in source.parent.iterdir()) == before
    assert (chosen.parent / "cats.import-report.json").is_file()


def test_a_read_only_window_says_so_disables_editing_and_asks_before_losing_edits(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, data_dir: Path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    other = MainWindow(AppSettings(QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat)),
                       data_dir=data_dir)
    qtbot.addWidget(other)
    other.show()
    other.open_startup()
    qtbot.waitUntil(lambda: other.project.doc is not None, timeout=20_000)
    doc = other.project.doc
    assert doc is not None
    doc.select(doc.layers()[0].id)
    assert "read-only" in other.windowTitle()
    assert other.read_only_label.isVisible() and "read-only" in other.read_only_label.text().lower()
    for name in ("tool.brush", "tool.eraser", "instance.new", "instance.delete", "instance.lock", "review.accepted",
                 "refine.run", "refine.image", "refine.dataset", "refine.accept_next", "edit.clear_guidance"):
        assert not other.actions[name].isEnabled(), name
    assert other.actions["instance.next"].isEnabled() and other.actions["image.next"].isEnabled()
    assert not other.properties_panel.status_box.isEnabled()
    panel = other.refine_panel
    assert not any(w.isEnabled() for w in (panel.weights_box, panel.steps_box, panel.seed_box, panel.snap_box))
    assert window.refine_panel.steps_box.isEnabled()  # the window that writes keeps them
    doc.set_status(doc.selected_id, ReviewStatus.ACCEPTED.value)  # an edit that still reaches the screen
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard]
    asked: list[str] = []

    def warning(_parent, _title, text, *_args, **_kwargs):  # type: ignore[no-untyped-def]
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "warning", warning)
    other.close()
    assert other.isVisible() and len(asked) == 1 and "not saved" in asked[0]
    other.close()
    assert not other.isVisible() and not answers


def test_a_new_instance_asks_for_its_category_and_shows_in_the_list(
    window: MainWindow, qtbot: QtBot, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    doc = window.project.doc
    assert doc is not None
    count = window.instance_panel.model.rowCount()
    monkeypatch.setattr(popups, "pick_category", lambda *_a: None)
    window.actions["instance.new"].trigger()
    assert window.instance_panel.model.rowCount() == count and doc.undo_stack.count() == 0  # cancelled
    monkeypatch.setattr(popups, "pick_category",
                        lambda _w, categories, *_a: next(c for c in categories if c.name == "spoon"))
    window.actions["instance.new"].trigger()
    new_id = doc.selected_id
    assert new_id is not None and window.project.categories[doc.layer(new_id).category_id].name == "spoon"
    qtbot.waitUntil(lambda: window.instance_panel.model.row_of(new_id) >= 0, timeout=5_000)
    assert "spoon" in window.statusBar().currentMessage() and window.canvas.tool == "brush"


def test_quitting_closes_the_project_and_releases_it(window: MainWindow, data_dir: Path) -> None:
    window.actions["file.quit"].trigger()
    assert window.project.store is None
    with ProjectStore.open(demo_project_path(data_dir)) as store:
        assert not store.read_only


def test_a_dropped_annotation_file_also_asks_where_to_save(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    source = mini_coco(tmp_path / "dropped")
    chosen = tmp_path / "mine" / "dropped.srproj"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: str(demo_dir()))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_a, **_k: (str(chosen.with_suffix("")), ""))
    window.opener.open_path(source)
    qtbot.waitUntil(lambda: window.project.project_path == chosen and window.project.doc is not None, timeout=20_000)
    assert sorted(p.name for p in source.parent.iterdir()) == ["mini.json"]  # the suffix was added, not beside it


def test_an_image_whose_masks_the_queue_changed_meanwhile_forgets_its_undo_history(
    window: MainWindow, qtbot: QtBot,
) -> None:
    doc, _selected = brush_the_next_instance(window)
    first = doc.image_id
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        window.actions["image.next"].trigger()
    assert first in window.project.undo  # kept while the image is closed
    window.settings.steps = 1
    window.refine_panel.reload_settings()
    from .conftest import start_dataset_queue

    start_dataset_queue(window)  # refines the first image's instances in the store, behind its history
    qtbot.waitUntil(lambda: not window.refine.queue_active, timeout=120_000)
    assert first not in window.project.undo
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        window.actions["image.previous"].trigger()
    assert not window.actions["edit.undo"].isEnabled() and window.project.doc.undo_stack.count() == 0  # type: ignore[union-attr]



def test_opening_the_open_project_again_keeps_it_writable(window: MainWindow, qtbot: QtBot) -> None:
    store = window.project.store
    assert store is not None and not window.read_only
    assert window.project.open_project(store.path)
    assert window.project.store is store and not window.read_only  # not read-only against its own lock
    assert window.actions["tool.brush"].isEnabled()


def test_a_writable_project_after_a_read_only_one_can_be_edited_again(
        window: MainWindow, qtbot: QtBot, tmp_path: Path) -> None:
    from .conftest import edited_demo_project, open_project

    held = edited_demo_project(tmp_path / "a", "held", lambda demo: None)
    free = edited_demo_project(tmp_path / "b", "free", lambda demo: None)
    with ProjectStore.open(held):  # another program writes it: this window may only look
        open_project(qtbot, window, held)
        assert window.read_only and not window.actions["tool.brush"].isEnabled()
        assert "read-only" in window.refine_panel.step_label.text()
    open_project(qtbot, window, free)
    assert not window.read_only
    assert all(window.actions[name].isEnabled() for name in ("tool.brush", "tool.eraser", "tool.box", "brush.larger"))
    assert "read-only" not in window.refine_panel.step_label.text()


def test_an_import_named_like_an_existing_project_asks_and_never_overwrites_it(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    source = mini_coco(tmp_path / "dataset")
    existing = tmp_path / "taken.srproj"
    existing.write_bytes(b"an existing project")
    fresh = tmp_path / "fresh.srproj"
    names = [existing, fresh]
    asked: list[str] = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(source), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: str(demo_dir()))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_a, **_k: (str(names.pop(0)), ""))
    monkeypatch.setattr(QMessageBox, "question",
                        lambda _p, _t, text, *_a, **_k: asked.append(text) or QMessageBox.StandardButton.No)
    window.actions["file.import_coco"].trigger()
    qtbot.waitUntil(lambda: window.project.project_path == fresh and window.project.doc is not None, timeout=20_000)
    assert len(asked) == 1 and "taken.srproj already exists" in asked[0]
    assert existing.read_bytes() == b"an existing project"


def test_open_and_import_dialogs_start_where_the_last_file_was_chosen(
    window: MainWindow, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    source = mini_coco(tmp_path / "dataset")
    starts: list[str] = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda _p, _t, folder, *_a, **_k: starts.append(folder) or (str(source), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: "")  # then cancel the images folder
    window.actions["file.import_coco"].trigger()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda _p, _t, folder, *_a, **_k: starts.append(folder) or ("", ""))
    window.actions["file.open_project"].trigger()
    assert starts[0] != str(source.parent) and Path(starts[0]).is_dir()  # Documents the first time
    assert starts[1] == str(source.parent)  # then beside the file chosen last
