"""A damaged project file in the window: one message naming the project and what is damaged, the project
open before stays open, and an image with a mask that cannot be decoded opens without that instance only."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.gui.main_window import MainWindow

from .conftest import wait_saved
from .test_window import paint_a_brush_stroke, select_the_next_instance


def damaged_copy(window: MainWindow, tmp_path: Path, sql: str) -> Path:
    """A copy of the window's project (its edits flushed) with ``sql`` run on it."""
    store = window.project.store
    assert store is not None
    window.project.flush()
    copy = tmp_path / "damaged.srproj"
    source = sqlite3.connect(store.path)
    target = sqlite3.connect(copy)
    with target:
        source.backup(target)
        target.execute(sql)
    source.close()
    target.close()
    return copy


@pytest.mark.parametrize("sql, words", [
    ("UPDATE images SET width = '2543571b' WHERE id = 1", "image 1: damaged (ValueError: width is '2543571b')"),
    ("UPDATE categories SET synonyms = '{' WHERE id = 1", "category 1: damaged"),
    ("UPDATE meta SET value = CAST(X'A3FF22' AS TEXT) WHERE key = 'kind'", "damaged: it holds text that is not UTF-8"),
])
def test_a_damaged_project_is_refused_and_the_open_one_stays(window: MainWindow, tmp_path: Path, sql: str,
                                                             words: str) -> None:
    before = window.project.store
    assert before is not None
    damaged = damaged_copy(window, tmp_path, sql)
    assert window.project.open_project(damaged) is False
    assert window.last_error is not None
    title, message = window.last_error
    assert title == "Cannot open the project" and damaged.name in message and words in message
    assert window.project.store is before and not before._conn.in_transaction  # the demo is still open
    assert not (tmp_path / "damaged.srproj.lock").exists()  # the refused project's lock is let go


def test_damaged_instance_rows_are_named_and_the_rest_keeps_working(window: MainWindow, qtbot: QtBot,
                                                                    tmp_path: Path) -> None:
    """A row the listing and the image both read (its status is not one of ours)."""
    damaged = damaged_copy(window, tmp_path, "UPDATE instances SET status = 'bogus' WHERE id = 1")
    errors: list[tuple[str, str]] = []
    window.project.error.connect(lambda title, text: errors.append((title, text)))
    window.instance_panel.model.problem.connect(lambda text: errors.append(("list", text)))
    assert window.project.open_project(damaged)
    qtbot.waitUntil(lambda: any(title == "Cannot load the image" for title, _ in errors), timeout=20_000)
    assert all(damaged.name in text and "instance 1: damaged" in text for _, text in errors)
    assert window.project.store is not None and window.project.store.path == damaged
    with qtbot.waitSignal(window.project.document_changed, timeout=20_000):
        window.project.open_image(window.project.images[1].id)  # an image without the damaged row opens
    assert window.project.doc is not None and window.project.doc.layers()


def test_an_image_with_a_damaged_mask_opens_without_it(window: MainWindow, qtbot: QtBot) -> None:
    """A mask whose RLE cannot be decoded (damage to the project file) leaves out that instance only: the image
    opens with the others, one message names the project and the instance, the list shows no area for it, and
    nothing is written to it."""
    project = window.project
    store = project.store
    assert store is not None and project.doc is not None
    other = next(img for img in project.images if img.id != project.doc.image_id)
    ids = [inst.id for inst in store.instances_for_image(other.id)]
    damaged = ids[0]
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE instance_masks SET counts = '2543571b' WHERE instance_id = ?", (damaged,))
    conn.close()
    with qtbot.waitSignal(project.document_changed, timeout=20_000):
        project.open_image(other.id)
    doc = project.doc
    assert doc is not None and doc.image_id == other.id
    assert sorted(layer.id for layer in doc.layers()) == ids[1:]
    assert window.last_error is not None
    title, message = window.last_error
    assert title == "Damaged instances" and str(store.path) in message
    assert f"instance {damaged}: its mask's RLE counts are not a compressed RLE string" in message
    panel = window.instance_panel.model
    panel.forget_areas(set(ids))  # as when their rows are first shown
    assert panel.pixels(damaged) is None and panel.pixels(ids[1]) == int(doc.layer(ids[1]).mask.sum())
    messages: list[str] = []
    project.message.connect(messages.append)
    project.select_instance(damaged)  # from the list: said, not opened again
    assert project.doc is doc and messages == [f"Instance {damaged} has a damaged mask: it is not shown and cannot be "
                                                "edited"]
    wait_saved(qtbot, window)
    assert store._conn.execute("SELECT counts FROM instance_masks WHERE instance_id = ?", (damaged,)).fetchone()[0] \
        == "2543571b"


def test_a_damaged_image_is_reported_once_and_its_instance_named_from_another_image(window: MainWindow,
                                                                                   qtbot: QtBot) -> None:
    """Selecting a damaged instance from another image opens its image, lists the damage in one dialog and names
    the instance; opening that image again says it on the status bar instead of the same dialog."""
    project = window.project
    store = project.store
    assert store is not None and project.doc is not None
    first = project.doc.image_id
    other = next(img for img in project.images if img.id != first)
    damaged = store.instances_for_image(other.id)[0].id
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE instance_masks SET counts = '2543571b' WHERE instance_id = ?", (damaged,))
    conn.close()
    dialogs: list[str] = []
    messages: list[str] = []
    project.error.connect(lambda title, text: dialogs.append(title))
    project.message.connect(messages.append)
    with qtbot.waitSignal(project.document_changed, timeout=20_000):
        project.select_instance(damaged)
    assert project.doc is not None and project.doc.image_id == other.id
    assert dialogs == ["Damaged instances"]
    assert messages == [f"Instance {damaged} has a damaged mask: it is not shown and cannot be edited"]
    for image_id in (first, other.id):
        with qtbot.waitSignal(project.document_changed, timeout=20_000):
            project.open_image(image_id)
    assert dialogs == ["Damaged instances"]
    assert messages[-1] == f"1 instance of {other.file_name} has a damaged mask and is not shown"


def test_a_damaged_edit_row_is_named_in_the_edit_history(window: MainWindow, qtbot: QtBot) -> None:
    _, selected = select_the_next_instance(window)
    paint_a_brush_stroke(window)
    wait_saved(qtbot, window)
    store = window.project.store
    assert store is not None
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE edits SET action = 'bogus' WHERE instance_id = ?", (selected,))
    conn.close()
    panel = window.edit_history
    window.edits_dock.raise_()
    qtbot.waitUntil(lambda: "cannot be read" in panel.title.text(), timeout=5_000)
    assert f"Instance {selected}: its saved edits cannot be read" in panel.title.text()
    assert "damaged" in panel.title.text() and panel.list.count() == 0 and not panel.revert_button.isEnabled()
