"""The refine thread and the task pool on their own: one self-contained frame per step, the minimum frame
time, stop, inputs read on the worker, and every failure turned into a message."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.core.package_data import demo_dir
from app.core.records import encode_mask
from app.gui.editor.layers import MaskCrop
from app.gui.editor.preview import DiffColors
from app.gui.refine import worker as worker_module
from app.gui.refine.frames import RefineFrame, RefineJob, build_frame
from app.gui.refine.worker import Environment, RefineService
from app.gui.tasks import TaskRunner, describe_error
from app.refiner.options import RefineOptions

TIMEOUT_MS = 60_000


@pytest.fixture
def service(qtbot: QtBot, one_torch_thread: None):  # type: ignore[no-untyped-def]
    svc = RefineService()
    yield svc
    svc.shutdown()


class Record:
    """Collects a worker's signals (they may arrive on the refine thread) for waitUntil."""

    def __init__(self, service: RefineService) -> None:
        self.steps: list[tuple[float, int, bool]] = []
        self.finished: list[tuple[int, bool]] = []
        self.failed: list[tuple[int, str]] = []
        w = service.worker
        w.frame.connect(lambda frame: self.steps.append((time.monotonic(), frame.step.step, frame.step.final)))
        w.finished.connect(lambda job_id, stopped: self.finished.append((job_id, stopped)))
        w.failed.connect(lambda job_id, message: self.failed.append((job_id, message)))


def square_job(service: RefineService, weights: Path, **overrides: object) -> RefineJob:
    image = np.zeros((96, 128, 3), np.uint8)
    image[20:70, 30:100] = 200
    mask = np.zeros((96, 128), bool)
    mask[24:66, 34:96] = True
    steps = overrides.pop("steps", 3)
    values: dict[str, object] = dict(
        job_id=service.next_job_id(), options=RefineOptions(weights=str(weights), device="cpu", steps=steps),
        image=image, masks=[mask], instance_ids=[7],
    )
    values.update(overrides)
    return RefineJob(**values)  # type: ignore[arg-type]


def test_one_signal_per_step_with_the_minimum_frame_time(service: RefineService, qtbot: QtBot, random_weights: Path) -> None:
    record = Record(service)
    loaded: list[tuple[str, str]] = []
    service.worker.loaded.connect(lambda name, device: loaded.append((name, device)))
    job = square_job(service, random_weights, min_frame_s=0.15)
    service.submit(job)
    qtbot.waitUntil(lambda: bool(record.finished), timeout=TIMEOUT_MS)
    assert record.finished == [(job.job_id, False)]
    assert [s[1] for s in record.steps] == [1, 2, 3] and [s[2] for s in record.steps] == [False, False, True]
    gaps = np.diff([s[0] for s in record.steps])
    assert (gaps >= 0.14).all()
    assert loaded == [("random-compact.safetensors", "cpu")]


def test_stop_between_steps_ends_the_job(service: RefineService, qtbot: QtBot, random_weights: Path) -> None:
    record = Record(service)
    job = square_job(service, random_weights, min_frame_s=30.0)
    service.submit(job)
    qtbot.waitUntil(lambda: bool(record.steps), timeout=TIMEOUT_MS)
    started = time.monotonic()
    service.stop()
    qtbot.waitUntil(lambda: bool(record.finished), timeout=10_000)
    assert time.monotonic() - started < 10  # woke from the 30 s frame wait
    assert record.finished == [(job.job_id, True)]
    assert [s[1] for s in record.steps] == [1]


def test_queued_job_after_stop_does_not_run(service: RefineService, qtbot: QtBot, random_weights: Path) -> None:
    record = Record(service)
    first = square_job(service, random_weights, min_frame_s=30.0)
    second = square_job(service, random_weights)
    service.submit(first)
    qtbot.waitUntil(lambda: bool(record.steps), timeout=TIMEOUT_MS)
    service.submit(second)
    service.stop()
    qtbot.waitUntil(lambda: len(record.finished) == 2, timeout=10_000)
    assert record.finished == [(first.job_id, True), (second.job_id, True)]
    assert len(record.steps) == 1


def test_image_path_and_rle_inputs_are_read_on_the_worker(service: RefineService, qtbot: QtBot, random_weights: Path) -> None:
    mask = np.zeros((400, 600), bool)
    mask[100:300, 150:450] = True
    results = []
    service.worker.frame.connect(lambda frame: results.append(frame.step))
    record = Record(service)
    job = square_job(service, random_weights, image=demo_dir() / "coffee.png", masks=[encode_mask(mask)], steps=1)
    service.submit(job)
    qtbot.waitUntil(lambda: bool(record.finished), timeout=TIMEOUT_MS)
    assert len(results) == 1 and results[0].image_size == (400, 600)


def test_frames_are_built_on_the_refine_thread_from_the_job_alone(
    service: RefineService, qtbot: QtBot, random_weights: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    mask = np.zeros((96, 128), bool)
    mask[24:66, 34:96] = True
    crop = MaskCrop((96, 128), (34, 24, 96, 66), mask[24:66, 34:96].copy())
    built_on: list[threading.Thread] = []

    def spy(job, step, masks, weights):  # type: ignore[no-untyped-def]
        built_on.append(threading.current_thread())
        assert len(masks) == 1 and np.array_equal(masks[0], mask)  # the crop, made whole
        return build_frame(job, step, masks, weights)

    monkeypatch.setattr(worker_module, "build_frame", spy)
    frames: list[RefineFrame] = []
    service.worker.frame.connect(frames.append)
    record = Record(service)
    job = square_job(service, random_weights, masks=[crop], base_versions={7: 4}, focus_id=7, colors=DiffColors(),
                     heat=True)
    service.submit(job)
    qtbot.waitUntil(lambda: bool(record.finished), timeout=TIMEOUT_MS)
    assert record.finished[0][1] is False and not record.failed
    assert [f.step.step for f in frames] == [1, 2, 3]
    assert len(built_on) == 3 and threading.main_thread() not in built_on
    for frame in frames:
        state = frame.instances[7]
        assert frame.job_id == job.job_id and state.preview is not None  # drawn off the GUI thread
        assert state.preview.base_version == 4 and state.preview.heat is not None
        assert state.provenance.weights == "random-compact.safetensors" and state.provenance.mode == "instance"
        assert state.provenance.steps == state.patch.reverse_steps == frame.step.step
    final = frames[-1].instances[7]
    assert final.update is not None and final.update.base_version == 4  # the crop was widened on the worker
    assert final.update.provenance == final.provenance and final.rle is None


@pytest.mark.parametrize("weights, expected", [
    ("no-such-weights.safetensors", "no-such-weights.safetensors: no such file"),
    ("compact-v1-typo", "not a known checkpoint name"),
])
def test_bad_weights_fail_with_a_message(service: RefineService, qtbot: QtBot, weights: str, expected: str) -> None:
    record = Record(service)
    job = square_job(service, Path(weights))
    service.submit(job)
    qtbot.waitUntil(lambda: bool(record.failed), timeout=TIMEOUT_MS)
    assert record.failed[0][0] == job.job_id and expected in record.failed[0][1]
    assert not record.finished


def test_missing_image_file_fails_with_its_name(service: RefineService, qtbot: QtBot, random_weights: Path, tmp_path: Path) -> None:
    record = Record(service)
    service.submit(square_job(service, random_weights, image=tmp_path / "gone.jpg"))
    qtbot.waitUntil(lambda: bool(record.failed), timeout=TIMEOUT_MS)
    assert "gone.jpg" in record.failed[0][1]


def test_a_damaged_rle_fails_the_job_naming_its_instance(service: RefineService, qtbot: QtBot,
                                                         random_weights: Path) -> None:
    record = Record(service)
    frames: list[object] = []
    service.worker.frame.connect(frames.append)
    service.submit(square_job(service, random_weights, masks=[{"size": [96, 128], "counts": "2543571b"}]))
    qtbot.waitUntil(lambda: bool(record.failed), timeout=TIMEOUT_MS)
    assert record.failed[0][1] == "instance 7: its mask's RLE counts are not a compressed RLE string" and not frames


def test_probe_lists_devices_and_registry_weights(service: RefineService, qtbot: QtBot) -> None:
    found: list[Environment] = []
    service.worker.probed.connect(found.append)
    service.probe()
    qtbot.waitUntil(lambda: bool(found), timeout=TIMEOUT_MS)
    env = found[0]
    assert isinstance(env, Environment) and "cpu" in env.devices
    names = {w.name for w in env.weights}
    assert {"compact-v1", "segrefiner-lr", "segrefiner-hr"} <= names
    for w in env.weights:
        assert w.available == (w.problem is None)


def test_describe_error_gives_advice_for_out_of_memory() -> None:
    assert describe_error(MemoryError()).startswith("Out of memory")
    assert "Out of memory" in describe_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert describe_error(ValueError("steps must be in 1..6")) == "steps must be in 1..6"
    assert describe_error(KeyError("x")) == "KeyError: 'x'"


def test_task_runner_reports_results_errors_and_cancellation(qtbot: QtBot) -> None:
    runner = TaskRunner()
    done: list[object] = []
    failed: list[str] = []
    progress: list[tuple[int, int]] = []

    def work(report):  # type: ignore[no-untyped-def]
        for k in range(3):
            report(k + 1, 3)
        return "ok"

    runner.start(work, "work", done.append, failed.append, lambda d, t: progress.append((d, t)))
    qtbot.waitUntil(lambda: done == ["ok"], timeout=5_000)
    assert progress[0] == (1, 3) and progress[-1] == (3, 3)

    def per_item(report):  # type: ignore[no-untyped-def]
        for k in range(20_000):
            report(k + 1, 20_000)
        return "many"

    progress.clear()
    runner.start(per_item, "per item", done.append, failed.append, lambda d, t: progress.append((d, t)))
    qtbot.waitUntil(lambda: done[-1] == "many", timeout=10_000)
    assert progress[-1] == (20_000, 20_000) and len(progress) < 200  # not one signal per item

    def broken(_report):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    runner.start(broken, "broken", done.append, failed.append)
    qtbot.waitUntil(lambda: len(failed) == 1, timeout=5_000)
    assert failed == ["OSError: disk full"]

    def endless(report):  # type: ignore[no-untyped-def]
        while True:
            report(0, 0)
            time.sleep(0.01)

    task = runner.start(endless, "endless job", done.append, failed.append)
    task.cancel()
    qtbot.waitUntil(lambda: len(failed) == 2, timeout=5_000)
    assert failed[1] == "endless job cancelled" and not runner.busy


def test_the_refine_thread_leaves_the_gui_thread_a_core(service: RefineService, qtbot: QtBot, random_weights: Path) -> None:
    assert worker_module.refine_threads(16) == 15 and worker_module.refine_threads(2) == 1
    assert worker_module.refine_threads(1) == 1
    import os
    import sys

    import torch

    tids: list[int] = []
    service.worker.started.connect(lambda _job: tids.append(threading.get_native_id()))  # runs on the refine thread
    record = Record(service)
    job = square_job(service, random_weights)
    service.submit(job)
    qtbot.waitUntil(lambda: bool(record.finished), timeout=TIMEOUT_MS)
    assert torch.get_num_threads() == worker_module.refine_threads()
    if sys.platform.startswith("linux"):
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert os.getpriority(os.PRIO_PROCESS, tids[0]) == min(19, ours + worker_module.REFINE_NICE)


def test_consecutive_jobs_on_one_image_file_read_it_once(
    service: RefineService, qtbot: QtBot, random_weights: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[Path] = []
    real = worker_module.read_image_rgb
    monkeypatch.setattr(worker_module, "read_image_rgb", lambda path: reads.append(path) or real(path))
    mask = np.zeros((400, 600), bool)
    mask[100:300, 150:450] = True
    record = Record(service)
    for image in ("coffee.png", "coffee.png", "chelsea.png"):
        job = square_job(service, random_weights, image=demo_dir() / image, masks=[encode_mask(mask)] if image ==
                         "coffee.png" else [encode_mask(np.ones((300, 451), bool))], steps=1)
        service.submit(job)
    qtbot.waitUntil(lambda: len(record.finished) == 3, timeout=TIMEOUT_MS)
    assert [p.name for p in reads] == ["coffee.png", "chelsea.png"] and not record.failed
