"""The store writer: writes leave the GUI thread, run in order, report back on the GUI thread, and a
read-only project refuses them at once."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.core.formats.coco import load_coco
from app.core.errors import DatasetError
from app.core.records import ReviewStatus
from app.core.store.project import ProjectStore
from app.core.package_data import demo_dir
from app.services.demo import DEMO_JSON
from app.gui.store_writer import StoreWriter


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    dataset, _ = load_coco(demo_dir() / DEMO_JSON)
    opened = ProjectStore.create(tmp_path / "demo.srproj", dataset, source_path=demo_dir() / DEMO_JSON, images_dir=demo_dir())
    yield opened
    opened.close()


def test_writes_run_in_order_off_the_gui_thread_and_report_back(qtbot: QtBot, store: ProjectStore) -> None:
    writer = StoreWriter()
    writer.attach(store)
    first = store.list_instances()[0].id
    threads: list[threading.Thread] = []
    done: list[object] = []

    def status(value: ReviewStatus):  # type: ignore[no-untyped-def]
        def write(st: ProjectStore) -> str:
            threads.append(threading.current_thread())
            st.set_status(first, value)
            return value.value

        return write

    for value in (ReviewStatus.REJECTED, ReviewStatus.NEEDS_WORK, ReviewStatus.ACCEPTED):
        writer.submit(status(value), done.append)
    writer.finish()
    assert not writer.busy
    assert store.instance(first).status is ReviewStatus.ACCEPTED  # the window's own connection sees it
    assert [e.after["status"] for e in store.history(first)[-3:]] == ["rejected", "needs_work", "accepted"]
    assert threads and all(t is not threading.main_thread() for t in threads)
    qtbot.waitUntil(lambda: len(done) == 3, timeout=5_000)
    assert done == ["rejected", "needs_work", "accepted"]  # callbacks on the GUI thread, in order
    empty = np.zeros((store.image(1).height, store.image(1).width), bool)
    new_id = writer.call(lambda st: st.create_instance(1, st.categories()[0].id, empty).instance_id)
    assert store.instance(new_id).image_id == 1
    writer.shutdown()


def test_a_failed_write_is_reported_and_the_next_ones_still_run(qtbot: QtBot, store: ProjectStore) -> None:
    writer = StoreWriter()
    writer.attach(store)
    errors: list[DatasetError] = []
    writer.submit(lambda st: st.set_status(999_999, ReviewStatus.ACCEPTED), on_error=errors.append)
    first = store.list_instances()[0].id
    writer.submit(lambda st: st.set_status(first, ReviewStatus.ACCEPTED))
    writer.finish()
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    assert "no instance with id 999999" in str(errors[0])
    assert store.instance(first).status is ReviewStatus.ACCEPTED
    writer.shutdown()


def test_a_read_only_project_refuses_writes_at_once(qtbot: QtBot, store: ProjectStore) -> None:
    read_only = ProjectStore.open(store.path)  # the lock is held by ``store``: read-only
    assert read_only.read_only
    writer = StoreWriter()
    writer.attach(read_only)
    errors: list[DatasetError] = []
    writer.submit(lambda st: st.set_status(1, ReviewStatus.ACCEPTED), on_error=errors.append)
    assert errors and "read-only" in str(errors[0])  # no thread, no waiting
    assert store.instance(1).status is ReviewStatus.UNREVIEWED
    writer.shutdown()
    read_only.close()
