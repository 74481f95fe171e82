"""Opening a project file: checking it is one of ours, taking the writer lock, connecting, fsyncing."""
from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
from pathlib import Path

from app.core.store.errors import ProjectError
from app.core.store.lock import ProjectLock
from app.core.store.schema import FORMAT_VERSION, configure


def check_project(path: Path) -> None:
    """Refuse anything that is not one of our projects before a writable connection can touch it."""
    try:
        conn = connect(path, read_only=True, configure_it=False)
    except sqlite3.Error as e:
        raise ProjectError(path, f"cannot open: {e}") from e
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    except sqlite3.Error as e:
        raise ProjectError(path, f"not a SegRefiner Studio project ({e})") from e
    finally:
        conn.close()
    if row is None:
        raise ProjectError(path, "not a SegRefiner Studio project (no format version)")
    version = json.loads(row[0])
    if version > FORMAT_VERSION:
        raise ProjectError(
            path, f"made by a newer SegRefiner Studio (project format {version}; this one reads up to "
            f"{FORMAT_VERSION})"
        )


def take_lock(path: Path) -> tuple[ProjectLock | None, str | None]:
    """The writer lock, or None and the reason the project must open read-only."""
    if not os.access(path, os.W_OK):
        return None, "the project file is not writable"
    lock = ProjectLock(path)
    try:
        if lock.acquire():
            return lock, None
    except OSError as e:
        return None, f"cannot create the lock file {lock.path}: {e.strerror}"
    return None, f"already open for writing by {lock.holder()}"


def connect(path: Path, *, read_only: bool, configure_it: bool = True) -> sqlite3.Connection:
    if read_only:
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
    if configure_it:
        configure(conn, read_only=read_only)
    return conn


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
