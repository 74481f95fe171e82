"""A writer lock per project: an OS lock on a sidecar file, released by the OS when its process dies.

The first window to open a project takes the lock and writes who it is (pid, host, time) into the file;
a second window fails to take it, reads that line, and opens the project read-only naming the holder.
A crash or SIGKILL can never leave a stale lock, because the kernel drops it with the process.
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
        if self._file is None:
            return
        if sys.platform == "win32":
            self._file.seek(0)
            msvcrt.locking(self._file.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None
