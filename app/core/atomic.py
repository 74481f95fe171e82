"""Atomic file writes: every export and report goes to a temporary file beside the target, is flushed to
disk, and is renamed over the target in one step. A crash or an exception mid-write leaves the target as
it was (absent, or its previous complete content), never half a file; the temporary file is removed on
an exception, and on SIGTERM / SIGHUP too (``app.core.signals`` turns them into one).

A SIGKILL can leave a hidden ``.<name>.<8 hex digits>.tmp`` behind. While it is written, a temporary file
holds an OS lock (``flock``) that dies with its process, so ``remove_stale_temporaries`` can tell a
leftover from a file another process is still writing, and the next export to a folder removes them.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from app.core.errors import DatasetError

if sys.platform != "win32":
    import fcntl

log = logging.getLogger(__name__)

TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
"""How our temporary files are named: ``.<target name>.<8 hex digits>.tmp``."""


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the ``with`` block ends cleanly.

    ``mode`` is "w" (text) or "wb" (binary). The temporary file is created with the usual permissions
    (0o666 less the umask), like a plain ``open`` would.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only, mode 'w' or 'wb', not {mode!r}")
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:  # everything from the creation on: an exception (or a signal turned into one) anywhere removes it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            _mark_in_use(fd)
            if mode == "wb":
                f: IO[Any] = os.fdopen(fd, "wb", buffering=1 << 20)
            else:
                f = os.fdopen(fd, "w", encoding=encoding, newline="\n", buffering=1 << 20)
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if sys.platform != "win32":
                os.replace(tmp, target)  # while still open and locked: never seen unlocked under its tmp name
        if sys.platform == "win32":
            os.replace(tmp, target)  # Windows renames only closed files
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _mark_in_use(fd: int) -> None:
    """Lock a new temporary file so ``remove_stale_temporaries`` leaves it alone while we live (a file
    system without ``flock`` gets no mark; there the sweep cannot lock it either, and skips it)."""
    if sys.platform == "win32":
        return  # an open file cannot be removed there
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove our temporary files in ``folder`` that no process is writing (what a SIGKILL left); the
    ones removed. A file still locked by its writer, or open on Windows, is left alone."""
    try:
        entries = [e for e in os.scandir(folder) if TEMPORARY_NAME.match(e.name) and e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    removed = [Path(e.path) for e in entries if _remove_if_abandoned(Path(e.path))]
    if removed:
        log.info("removed %d temporary file(s) left in %s by an interrupted write", len(removed), folder)
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    if sys.platform == "win32":
        try:
            path.unlink()  # fails while its writer has it open
        except OSError:
            return False
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
        return True
    except OSError:  # locked by a live writer, or gone
        return False
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open a directory and needs no such step."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_output(path: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """Check, before any long work, that ``path`` can be written (a file, or with ``folder`` a folder of
    files), and make its missing folders. Raises ``DatasetError`` naming the path and the folder at fault: a
    run must not find out after minutes of work that its output has nowhere to go."""
    target = Path(path)
    if target.exists() and target.is_dir() != folder:
        raise DatasetError(target, "is a folder: give the file to write" if not folder
                           else "is a file: give a folder to write into")
    parent = target if folder else target.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DatasetError(target, f"cannot write: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DatasetError(target, f"cannot write: the folder {existing} is not writable")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(target, f"cannot make the folder {parent}: {e.strerror or e}") from None
    return target
