"""Atomic writes: a crash or an error mid-write never leaves half a file or spoils the previous one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.core.atomic import atomic_open, write_bytes_atomic, write_json_atomic

ROOT = Path(__file__).resolve().parents[2]


def test_write_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    write_json_atomic(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    write_bytes_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_an_error_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("new, but only half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_sigkill_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    child = (
        "import os, signal, sys\n"
        "from app.core.atomic import atomic_open\n"
        "with atomic_open(sys.argv[1]) as f:\n"
        "    f.write('x' * 5_000_000)\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", child, str(target)], cwd=ROOT, timeout=60)
    assert result.returncode != 0
    assert target.read_text() == "old"
    leftovers = [p for p in tmp_path.iterdir() if p.name != "out.json"]
    assert all(p.name.startswith(".out.json.") and p.name.endswith(".tmp") for p in leftovers)


def test_only_write_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "x", "a"):
            pass
