"""The project's error for bad input: one message naming the file, the record and the problem.

Codecs raise ``DatasetError`` for what stops an import or export outright (a file that is not JSON, an
empty file, a missing top-level key, an unreadable image) before anything is written. What spoils a
single record is not an error: it goes in the ``ImportReport`` and the rest of the file still imports.
"""
from __future__ import annotations

import os
from pathlib import Path


class DatasetError(Exception):
    """A dataset file (annotations, masks or images) cannot be read or written as asked.

    ``path`` is the file, ``record`` names the record within it ("annotation 17") or is None for the file
    as a whole, ``problem`` says what is wrong. The message reads
    ``instances.json: annotation 17: polygon has 2 points (needs at least 3)``.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, record: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.record = record
        parts = [self.path.name or str(self.path)]
        if record:
            parts.append(record)
        parts.append(problem)
        super().__init__(": ".join(parts))


def read_input(path: str | os.PathLike[str]) -> bytes:
    """The whole content of an input file; a missing, unreadable or empty file is a ``DatasetError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, f"file not found ({path})") from None
    except IsADirectoryError:
        raise DatasetError(path, "is a folder, not a file") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read: {e.strerror or e}") from None
    if not data:
        raise DatasetError(path, "file is empty (0 bytes)")
    return data
