"""Exports that must not run out of memory or leave files behind (issue 16 cases 7 and 8): a project that
claims a huge image is refused before anything is allocated; SIGTERM and SIGHUP remove the export's
temporary file; what a SIGKILL left is removed by the next export to the same folder."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from app.core.atomic import atomic_open
from app.core.records import Category, Dataset, ImageRecord, Instance, encode_mask
from app.core.store.project import ProjectStore
from tests.core.codec_samples import write

REPO = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and resource limits")
OUR_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def _ours(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if OUR_TEMPORARY.match(p.name))


# ------------------------------------------------------------------------------------- 7: huge images
LIMITED = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # 3 GiB: the 60000x60000 map needs 3.4
    from app.main import main
    sys.exit(main(sys.argv[1:]))
""")


def _square_runs(side: int = 60000, start: int = 5, size: int = 45) -> list[int]:
    """Uncompressed (column-major) RLE of a size x size square at (start, start) in a side x side image,
    made without the 3.6 GB mask."""
    runs = [start * side + start]
    for _ in range(size - 1):
        runs += [size, side - size]
    runs += [size, side * side - sum(runs) - size]
    return runs


@pytest.fixture(scope="module")
def huge_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("huge")
    data = {
        "images": [{"id": 1, "file_name": "huge.jpg", "width": 60000, "height": 60000},
                   {"id": 2, "file_name": "small.jpg", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [60000, 60000], "counts": _square_runs()},
             "area": 2025, "bbox": [5, 5, 45, 45], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[5, 5, 20, 5, 20, 20]], "area": 112.5,
             "bbox": [5, 5, 15, 15], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    source = write(folder / "huge.json", data)
    result = subprocess.run([sys.executable, "-m", "app", "import", str(source)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return folder / "huge.srproj"


@posix_only
@pytest.mark.parametrize("fmt, extra", [("png-labels", []), ("png-instances", []),
                                        ("coco", ["--segmentation", "polygon"])])
def test_an_export_of_a_huge_image_is_refused_before_allocating(
    huge_project: Path, tmp_path: Path, fmt: str, extra: list[str]
) -> None:
    out = tmp_path / ("out.json" if fmt == "coco" else "out")
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, "export", "--project", str(huge_project), "--format", fmt, "--out", str(out),
         *extra], cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    problem = [line for line in result.stdout.splitlines() if "60000x60000" in line]
    assert len(problem) == 1 and "too large" in problem[0], result.stdout
    assert ("image 1" in problem[0]) if fmt.startswith("png") else ("annotation 1" in problem[0])
    saved = json.loads((tmp_path / "out.export-report.json").read_text())  # beside the file or the folder
    assert len(saved["problems"]) == 1
    assert "60000x60000" in saved["problems"][0]["problem"]
    if fmt == "png-labels":
        assert sorted(p.name for p in out.iterdir()) == ["small_mask.png"]
    elif fmt == "png-instances":
        assert sorted(p.name for p in out.iterdir()) == ["small_2.png"]
    else:
        exported = json.loads(out.read_text())
        assert [type(a["segmentation"]).__name__ for a in exported["annotations"]] == ["dict", "list"]


# ------------------------------------------------------------------------------------- 8: signals and leftovers
@pytest.fixture(scope="module")
def busy_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough instances that a polygon export takes seconds (each mask is vectorised and checked)."""
    rng = np.random.default_rng(0)
    images = {i: ImageRecord(i, f"{i}.jpg", 320, 240) for i in range(1, 41)}
    instances = []
    for iid in range(1, 4001):
        mask = np.zeros((240, 320), bool)
        y, x = rng.integers(0, 200), rng.integers(0, 280)
        mask[y:y + 40, x:x + 40] = True
        mask[y + 10:y + 20, x + 10:x + 20] = False
        instances.append(Instance(iid, int(rng.integers(1, 41)), 1, encode_mask(mask)))
    path = tmp_path_factory.mktemp("busy") / "busy.srproj"
    ProjectStore.create(path, Dataset(images, {1: Category(1, "thing")}, instances)).close()
    return path


def _start_export(project: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "export", "--project", str(project), "--format", "coco", "--out", str(out),
         "--segmentation", "polygon"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_temporary(folder: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the export has a temporary file of its own (not one an earlier export left)."""
    before = set(_ours(folder))
    deadline = time.monotonic() + timeout
    while not set(_ours(folder)) - before:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.02)


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_during_export_removes_its_temporary_file(busy_project: Path, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "out.json"
    proc = _start_export(busy_project, out)
    _wait_for_temporary(tmp_path, proc)
    time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name}" in err
    assert list(tmp_path.iterdir()) == []
    assert not Path(f"{busy_project}.lock").exists()


HOLDER = textwrap.dedent("""
    import sys
    from app.core.atomic import atomic_open
    with atomic_open(sys.argv[1]) as f:
        f.write("partial")
        print("writing", flush=True)
        sys.stdin.readline()
""")


@posix_only
def test_the_next_export_removes_what_a_killed_one_left(busy_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    kept = []
    for _ in range(2):
        proc = _start_export(busy_project, out)
        _wait_for_temporary(tmp_path, proc)
        proc.kill()
        proc.wait(timeout=30)
        kept.append(_ours(tmp_path))
    assert len(kept[0]) == 1 and len(kept[1]) == 1 and kept[0] != kept[1]  # the second removed the first's
    leftovers = kept[1]
    (tmp_path / "notes.tmp").write_text("not ours")
    (tmp_path / ".hidden.tmp").write_text("not ours either")
    live = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "other.json")], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "writing"
        [live_temporary] = set(_ours(tmp_path)) - set(leftovers)
        result = subprocess.run([sys.executable, "-m", "app", "export", "--project", str(busy_project), "--out",
                                 str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert _ours(tmp_path) == [live_temporary]  # another process is still writing that one
        assert (tmp_path / "notes.tmp").exists() and (tmp_path / ".hidden.tmp").exists()
    finally:
        live.communicate("\n", timeout=30)
    assert _ours(tmp_path) == [] and (tmp_path / "other.json").read_text() == "partial"


def test_a_clean_export_leaves_no_temporary_file(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "a.txt") as f:
        f.write("x")
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "b.txt") as f:
        f.write("y")
        raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_summary_cut_short_names_the_file_that_holds_every_problem(tmp_path: Path) -> None:
    from app.core.report import ExportReport

    report = ExportReport("out.json")
    for k in range(25):
        report.add(f"mask {k} is broken", record=f"annotation {k}")
    assert report.summary().splitlines()[-1] == "  ... and 5 more"
    report.write_json(tmp_path / "out.export-report.json")
    assert report.summary().splitlines()[-1] == f"  ... and 5 more (every one in {tmp_path / 'out.export-report.json'})"
    assert len(json.loads((tmp_path / "out.export-report.json").read_text())["problems"]) == 25
