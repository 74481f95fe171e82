"""A writer lock per project: an OS lock on a sidecar file, released by the OS when its process dies.

The first window to open a project takes the lock and writes who it is (pid, host, time) into the file;
a second window fails to take it, reads that line, and opens the project read-only naming the holder.
A crash or SIGKILL can never leave a stale lock, because the kernel drops it with the process (it leaves
the file, which the next holder reuses). A clean release removes the file, while still holding the lock:
a process that opened the old file meanwhile finds after locking it that the path now names another file
(or none) and tries again, so two processes never both think they hold it.
The holder line starts at byte 1: on Windows the lock covers byte 0 and locked bytes cannot be read.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl


def lock_path_for(project: Path) -> Path:
    """The sidecar lock file of a project file."""
    return project.with_name(project.name + ".lock")


class ProjectLock:
    """Exclusive, non-blocking writer lock for one project file."""

    def __init__(self, project: Path) -> None:
        self.path = lock_path_for(project)
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; False when another process (or window) does."""
        while True:
            f = open(self.path, "a+b")
            try:
                if sys.platform == "win32":
                    f.seek(0)
                    msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
                else:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                return False
            if _still_at(f, self.path):
                break
            f.close()  # the holder before us removed this file after we opened it: lock the one there now
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        f.seek(0)
        f.truncate()
        f.write(f"\npid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        f.flush()
        self._file = f
        return True

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it ("pid 123 on host since ...")."""
        try:
            with open(self.path, "rb") as f:
                f.seek(1)
                text = f.read(400).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def release(self) -> None:
        """Let go of the lock and remove its file (Windows: when no other process has it open)."""
        if self._file is None:
            return
        f, self._file = self._file, None
        if sys.platform == "win32":
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            f.close()
            _remove(self.path)
        else:
            _remove(self.path)
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()


def _still_at(f: IO[bytes], path: Path) -> bool:
    """Whether the open file ``f`` is still the one at ``path``."""
    if sys.platform == "win32":
        return True  # an open file cannot be removed there
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(f.fileno())
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # gone already, a read-only folder, or (Windows) another process has it open
        pass
