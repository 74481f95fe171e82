"""Opening a project file: checking it is one of ours, taking the writer lock, connecting, fsyncing, and
saying in words why SQLite refused.

SQLite's own messages name no file and mislead users: "database is locked" means another program is
writing, "disk I/O error" on opening usually means the disk is full, "attempt to write a readonly database"
on a read means the folder is read-only. ``sqlite_problem`` turns them into what happened.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from app.core.records import MaskError
from app.core.store import schema
from app.core.store.errors import DamagedRecord, ProjectError
from app.core.store.lock import ProjectLock
from app.core.store.schema import FORMAT_VERSION, configure

# SQLite's primary result codes (the low byte of the extended code Python reports).
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 5, 6, 8, 10, 11, 13, 14, 26
_NEARLY_FULL = 1 << 20  # bytes free below which an I/O error is taken for a full disk

# meta key -> (the Python types its JSON value may have, what it should be); absent keys get the default.
_META: dict[str, tuple[tuple[type, ...], str]] = {
    "kind": ((str,), "a format name"),
    "extra": ((dict,), "a JSON object"),
    "source_path": ((str, type(None)), "a path"),
    "images_dir": ((str, type(None)), "a path"),
    "created": ((int, float), "a time"),
}


def sqlite_problem(error: sqlite3.Error, path: Path) -> str:
    """What an SQLite error on the project at ``path`` means, in words (no file name: callers add it)."""
    primary = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if primary in (_BUSY, _LOCKED):
        return (f"another program is writing to the project (it stayed locked for {schema.BUSY_TIMEOUT_S:g} s); "
                "try again when it has finished")
    if primary == _FULL or (primary == _IOERR and _free_bytes(path) < _NEARLY_FULL):
        return f"the disk is full ({path.parent} has no room left for the project's journal files)"
    if primary in (_READONLY, _CANTOPEN, _PERM):
        where = path.parent if not os.access(path.parent, os.W_OK) else path
        return f"{where} cannot be written ({error})"
    if primary == _NOTADB:
        return "not a SegRefiner Studio project (not an SQLite database)"
    if primary == _CORRUPT:
        return f"the project file is damaged ({error})"
    if "decode to UTF-8" in str(error):  # Python's sqlite3 reading text that is not UTF-8
        return NOT_UTF8
    return str(error)


@contextmanager
def project_errors(path: Path) -> Iterator[None]:
    """Name the project in what reading it may raise: SQLite's errors (a damaged or busy file), damaged rows
    and masks that cannot be decoded become one ``ProjectError`` each, for jobs that read a whole project
    (stats, export)."""
    try:
        yield
    except DamagedRecord as e:
        raise ProjectError(path, f"damaged ({e.problem})", e.record) from None
    except MaskError as e:
        raise ProjectError(path, f"damaged: {e.problem}", f"instance {e.instance_id}") from None
    except sqlite3.Error as e:
        raise ProjectError(path, f"cannot read: {sqlite_problem(e, path)}") from e
    except UnicodeDecodeError:
        raise ProjectError(path, NOT_UTF8) from None


NOT_UTF8 = "damaged: it holds text that is not UTF-8"
T = TypeVar("T")


def reads(method: Callable[..., T]) -> Callable[..., T]:
    """A ``ProjectStore`` read that names the project when what it reads is damaged: ``DamagedRecord``, a mask
    that cannot be made, SQLite's errors and text that is not UTF-8 become one ``ProjectError``
    (``project_errors``), the error every caller already reports, so the window needs no other handler."""
    @functools.wraps(method)
    def read(self: Any, *args: Any, **kwargs: Any) -> T:
        with project_errors(self.path):
            return method(self, *args, **kwargs)
    return read


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return _NEARLY_FULL


def check_project(path: Path) -> None:
    """Refuse anything that is not one of our projects before a writable connection can touch it."""
    try:
        conn = connect(path, read_only=True, configure_it=False)
    except sqlite3.Error as e:
        raise ProjectError(path, f"cannot open: {sqlite_problem(e, path)}") from e
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    except UnicodeDecodeError:
        raise ProjectError(path, NOT_UTF8) from None
    except sqlite3.Error as e:
        if "no such table" in str(e):
            raise ProjectError(path, "not a SegRefiner Studio project (an SQLite file of something else)") from e
        raise ProjectError(path, f"cannot read: {sqlite_problem(e, path)}") from e
    finally:
        conn.close()
    if row is None:
        raise ProjectError(path, "not a SegRefiner Studio project (no format version)")
    try:
        version = json.loads(row[0])
    except (TypeError, ValueError):
        version = None
    if type(version) is not int or version < 1:
        raise ProjectError(path, f"damaged: its format version is {str(row[0])[:40]}, not a whole number from 1 up")
    if version > FORMAT_VERSION:
        raise ProjectError(
            path, f"made by a newer SegRefiner Studio (project format {version}; this one reads up to "
            f"{FORMAT_VERSION})"
        )


def read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
    """The meta table as values, each checked: a damaged value is named instead of failing later."""
    meta = {key: _json_value(path, key, value) for key, value in conn.execute("SELECT key, value FROM meta")}
    meta.setdefault("extra", {})
    for key, (types, what) in _META.items():
        if key not in meta and key != "kind":
            continue
        if not isinstance(meta.get(key), types) or isinstance(meta.get(key), bool):
            raise ProjectError(path, f"damaged: its {key!r} is {json.dumps(meta.get(key))[:40]}, not {what}")
    return meta


def _json_value(path: Path, key: str, text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise ProjectError(path, f"damaged: its {key!r} is {str(text)[:40]!r}, which is not JSON") from None


def take_lock(path: Path) -> tuple[ProjectLock | None, str | None]:
    """The writer lock, or None and the reason the project must open read-only."""
    if not os.access(path.parent, os.W_OK):
        return None, f"the folder {path.parent} is not writable"
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
    """A connection to the project; read-only ones also work in a read-only folder (see ``_read_only``)."""
    conn = _read_only(path) if read_only else sqlite3.connect(path, isolation_level=None, timeout=schema.BUSY_TIMEOUT_S)
    if configure_it:
        configure(conn, read_only=read_only)
    return conn


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that only reads.

    Where the project could be written, it is a read-write connection set to ``query_only``: SQLite lets
    only such a connection remove the ``-wal`` and ``-shm`` files when the last one closes, so reading a
    project (``stats``, ``export``) does not leave them behind. SQLite reads a WAL project through its
    shared-memory file beside it, which a read-only folder cannot hold; there the file is opened as
    immutable, which is safe while no ``-wal`` file holds changes not yet merged (nobody can be writing: a
    writer needs that folder too). With such changes waiting, reading without them would show an older
    project: the error says so.
    """
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode={'rw' if writable else 'ro'}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=schema.BUSY_TIMEOUT_S)
    try:
        if writable:
            conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA schema_version")  # opens the file and its shared memory now
        return conn
    except sqlite3.OperationalError as e:
        conn.close()
        primary = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
        if primary not in (_READONLY, _CANTOPEN) or os.access(path.parent, os.W_OK):
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise ProjectError(
            path, f"cannot be read in the read-only folder {path.parent}: changes not yet merged into it are in "
            f"{wal.name}, and SQLite must write beside the project to read them; open it once where it can be "
            f"written, or copy it together with {wal.name} to a writable folder"
        )
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)  # mode=ro here


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
