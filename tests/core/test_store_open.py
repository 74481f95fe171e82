"""Opening a project that is damaged, busy, on a full disk or in a read-only folder: one message that says
which, never a traceback and never "not a project" for a valid one; the writer lock's file goes with a
clean close (issue 16 cases 1, 2 and 4, issue 13 item 7)."""
from __future__ import annotations

import ctypes
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from app.core.records import ReviewStatus
from app.core.store import schema
from app.core.store.errors import ProjectError
from app.core.store.lock import lock_path_for
from app.core.store.project import ProjectStore
from tests.core.store_samples import sample_dataset

REPO = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and signals")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    ProjectStore.create(tmp_path / "p.srproj", sample_dataset()).close()
    return tmp_path / "p.srproj"


def _set_meta(project: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(project)
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.commit()
    conn.close()


# ------------------------------------------------------------------------------------- 1: format version
@pytest.mark.parametrize("value", ['"2"', "2.5", "true", "null", "-1", "not json", '{"v": 2}'])
def test_a_format_version_that_is_not_a_whole_number_is_named(project: Path, value: str) -> None:
    _set_meta(project, "format_version", value)
    with pytest.raises(ProjectError) as err:
        ProjectStore.open(project, read_only=True)
    assert str(err.value).startswith("p.srproj: ")
    assert "format version" in str(err.value)


@pytest.mark.parametrize("key, value, problem", [
    ("kind", "42", "'kind'"), ("extra", "[1]", "'extra'"), ("images_dir", "{", "'images_dir'"),
])
def test_damaged_meta_values_are_named(project: Path, key: str, value: str, problem: str) -> None:
    _set_meta(project, key, value) if key != "images_dir" else _insert_meta(project, key, value)
    with pytest.raises(ProjectError, match=f"p.srproj: .*{problem}"):
        ProjectStore.open(project, read_only=True)


def _insert_meta(project: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(project)
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
    conn.commit()
    conn.close()


# ------------------------------------------------------------------------------------- 2: another writer
@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_S", 0.3)
    return 0.3


def test_an_edit_while_another_program_writes_waits_then_says_so(project: Path, short_wait: float) -> None:
    with ProjectStore.open(project) as store:
        other = sqlite3.connect(project, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        start = time.monotonic()
        with pytest.raises(ProjectError) as err:
            store.set_status(7, ReviewStatus.ACCEPTED)
        assert time.monotonic() - start >= short_wait * 0.9
        assert str(err.value).startswith("p.srproj: ")
        assert "another program is writing" in str(err.value)
        other.execute("ROLLBACK")
        other.close()
        assert store.instance(7).status is ReviewStatus.UNREVIEWED
        store.set_status(7, ReviewStatus.ACCEPTED)  # free again: the edit goes through
        assert store.instance(7).status is ReviewStatus.ACCEPTED


def test_an_edit_waits_for_a_short_write_by_another_program(project: Path) -> None:
    other = sqlite3.connect(project, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE session_state SET value = value")
    releaser = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    with ProjectStore.open(project) as store:
        releaser.start()
        store.set_status(31, ReviewStatus.REJECTED)
        assert store.instance(31).status is ReviewStatus.REJECTED
    releaser.join()
    other.close()


def test_adding_a_dataset_while_another_program_writes_says_so(project: Path, short_wait: float) -> None:
    other = sqlite3.connect(project, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with ProjectStore.open(project) as store, pytest.raises(ProjectError, match="another program is writing"):
            store.add_dataset(sample_dataset())
    finally:
        other.close()


# ------------------------------------------------------------------------------------- 4: not "not a project"
def test_a_project_locked_by_another_program_is_not_called_foreign(project: Path, short_wait: float) -> None:
    other = sqlite3.connect(project, isolation_level=None)
    other.execute("PRAGMA locking_mode = EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ProjectError) as err:
            ProjectStore.open(project, read_only=True)
    finally:
        other.close()
    assert "not a SegRefiner Studio project" not in str(err.value)
    assert "another program" in str(err.value)
    with ProjectStore.open(project, read_only=True) as store:  # once it lets go, the project opens
        assert store.count_instances() == 4


CHILD_STATS = textwrap.dedent("""
    import sys
    from app.main import main
    code = main(["stats", "--project", sys.argv[1]])
    code = code or main(["export", "--project", sys.argv[1], "--format", "coco", "--out", sys.argv[2]])
    from app.core.store.project import ProjectStore
    with ProjectStore.open(sys.argv[1]) as store:
        print("read-only:", store.read_only_reason)
    sys.exit(code)
""")


def _unprivileged() -> dict:
    """Run a child whom file permissions bind: root ignores them through two capabilities, so a child of
    root gives them up (from its bounding set, which its capabilities after exec are taken from)."""
    if os.geteuid() != 0:
        return {}

    def drop() -> None:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "cannot drop a capability")

    return {"preexec_fn": drop}


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder the test makes read-only, writable again at the end so it can be removed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    try:
        yield folder
    finally:
        folder.chmod(0o755)


@posix_only
@pytest.mark.parametrize("leftovers", [False, True], ids=["clean", "with-empty-wal"])
def test_a_project_in_a_read_only_folder_can_be_read(read_only_dir: Path, tmp_path: Path, leftovers: bool) -> None:
    ro, out = read_only_dir, tmp_path / "out"
    out.mkdir()
    ProjectStore.create(ro / "p.srproj", sample_dataset()).close()
    if leftovers:  # what an earlier read-only open leaves: an empty -wal and the -shm
        conn = sqlite3.connect(f"file:{ro / 'p.srproj'}?mode=ro", uri=True)
        conn.execute("SELECT COUNT(*) FROM instances").fetchone()
        conn.close()
    ro.chmod(0o555)
    result = subprocess.run(
        [sys.executable, "-c", CHILD_STATS, str(ro / "p.srproj"), str(out / "x.json")], cwd=REPO,
        capture_output=True, text=True, timeout=120, **_unprivileged(),
    )
    assert result.returncode == 0, result.stderr
    assert "4 instances" in result.stdout and (out / "x.json").is_file()
    assert "read-only: " in result.stdout and str(ro) in result.stdout  # says the folder is why


@posix_only
def test_unmerged_changes_in_a_read_only_folder_are_explained(read_only_dir: Path) -> None:
    ro = read_only_dir
    project = ro / "p.srproj"
    ProjectStore.create(project, sample_dataset()).close()
    script = textwrap.dedent("""
        import os, sys
        from app.core.store.project import ProjectStore
        store = ProjectStore.open(sys.argv[1])
        store.set_status(7, "accepted")
        os._exit(0)  # as a crash would: the change stays in the -wal file, not merged
    """)
    subprocess.run([sys.executable, "-c", script, str(project)], cwd=REPO, check=True, timeout=60)
    (ro / "p.srproj-shm").unlink()
    assert (ro / "p.srproj-wal").stat().st_size > 0
    ro.chmod(0o555)
    result = subprocess.run(
        [sys.executable, "-m", "app", "stats", "--project", str(project)], cwd=REPO, capture_output=True,
        text=True, timeout=120, **_unprivileged(),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "p.srproj: " in result.stderr and "p.srproj-wal" in result.stderr and "read-only" in result.stderr


FULL_DISK = textwrap.dedent("""
    set -e
    mount -t tmpfs -o size=1m tmpfs "$1"
    cp "$2" "$1/p.srproj"
    head -c 2m /dev/zero > "$1/filler" 2>/dev/null || true
    "$3" -m app stats --project "$1/p.srproj" || echo "exit $?"
""")


@posix_only
def test_a_project_on_a_full_disk_says_the_disk_is_full(project: Path, tmp_path: Path) -> None:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount_point}"],
                           capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs a private mount namespace (unshare -m, as root) for a small full file system")
    result = subprocess.run(["unshare", "-m", "sh", "-c", FULL_DISK, "sh", str(mount_point), str(project),
                             sys.executable], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "exit 2" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "p.srproj: " in result.stderr and "disk is full" in result.stderr
    assert "not a SegRefiner Studio project" not in result.stderr


# ------------------------------------------------------------------------------------- the lock's file
def test_a_clean_close_removes_the_lock_file(project: Path) -> None:
    lock = lock_path_for(project)
    assert not lock.exists()  # create closed cleanly
    with ProjectStore.open(project) as store:
        assert lock.exists()
        with ProjectStore.open(project) as second:
            assert second.read_only and lock.exists()
        assert lock.exists()  # the read-only second window does not take the owner's file away
        store.set_status(7, ReviewStatus.ACCEPTED)
    assert not lock.exists()
    with ProjectStore.open(project, read_only=True):
        assert not lock.exists()


def test_an_import_from_the_command_line_leaves_no_lock_file(tmp_path: Path) -> None:
    from tests.core.codec_samples import tiny_coco, write

    source = write(tmp_path / "instances.json", tiny_coco())
    result = subprocess.run([sys.executable, "-m", "app", "import", str(source)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances.import-report.json", "instances.json",
                                                          "instances.srproj"]


WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from app.core.store.lock import ProjectLock
    project, marker = Path(sys.argv[1]), Path(sys.argv[2])
    held = 0
    deadline = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < deadline:
        lock = ProjectLock(project)
        if not lock.acquire():
            continue
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another holder is inside
        os.close(fd)
        os.unlink(marker)
        lock.release()
        held += 1
    print(held)
""")


@posix_only
def test_the_lock_stays_exclusive_while_holders_remove_its_file(tmp_path: Path) -> None:
    project, marker = tmp_path / "p.srproj", tmp_path / "inside"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(project), str(marker), "2.0"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err  # FileExistsError here: two holders at once
        assert int(out) > 0
    assert not lock_path_for(project).exists()
