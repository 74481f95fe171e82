"""Errors of the project store. They are ``DatasetError``s, so every caller that reports bad input with one
clear message (the CLI, the GUI's error dialog) reports project problems the same way."""
from __future__ import annotations

from app.core.errors import DatasetError


class ProjectError(DatasetError):
    """A project file cannot be opened, read or changed as asked."""


class ReadOnlyProjectError(ProjectError):
    """A write was asked of a project opened read-only (another window holds it, or on request)."""


class DamagedRecord(ValueError):
    """A row of the project file holds a value this app never writes (a damaged file, or one changed by
    another program). ``files.project_errors`` turns it into a ``ProjectError`` naming the project."""

    def __init__(self, record: str, problem: str) -> None:
        self.record = record
        self.problem = problem
        super().__init__(f"{record}: damaged ({problem})")
