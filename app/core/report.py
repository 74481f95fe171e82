"""Reports of what an import or export met: recoverable problems, what was done about each, and counts.

A problem that spoils one record (an annotation pointing to an unknown image, a polygon with two points)
is recorded here with the action taken ("skipped", "kept", "wrote RLE") and the rest of the file goes on.
The GUI shows ``summary()``; the CLI prints it and can write the whole report with ``write_json``.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from app.core.atomic import write_json_atomic
from app.core.wording import plural

# The counts named by a plural noun, and the noun for one ("1 image", not "1 images"); other counts are phrases
# ("excluded by status") that read the same for any number.
SINGULAR = {"images": "image", "categories": "category", "instances": "instance", "masks": "mask",
            "label maps": "label map"}


@dataclass(frozen=True)
class Problem:
    """One recoverable problem: where (file, record), what, and what was done about it."""

    file: str
    record: str | None
    problem: str
    action: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.record}" if self.record else self.file
        return f"{where}: {self.problem} ({self.action})"


@dataclass
class Report:
    """Problems and counts of one import or export of ``source`` (a file or a folder)."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    saved_to: str | None = None
    operation: ClassVar[str] = "operation"

    def add(self, problem: str, *, record: str | None = None, action: str = "skipped", file: str | None = None) -> None:
        """Record a problem; ``file`` defaults to the report's source."""
        self.problems.append(Problem(file or self.source, record, problem, action))

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "source": self.source,
            "counts": dict(self.counts),
            "problems": [asdict(p) for p in self.problems],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write the whole report as JSON (atomically, like every other file we write); the summary names it."""
        write_json_atomic(path, self.to_dict())
        self.saved_to = str(path)

    def summary(self, max_problems: int = 20) -> str:
        """A few lines for people: the counts, then the first ``max_problems`` problems."""
        counts = ", ".join(plural(v, SINGULAR.get(k, k), k) for k, v in self.counts.items()) or "nothing"
        lines = [f"{self.operation} {self.source}: {counts}; {plural(len(self.problems), 'problem')}"]
        lines += [f"  {p}" for p in self.problems[:max_problems]]
        if 0 < max_problems < len(self.problems):  # none listed: the count above says it all
            lines.append(f"  ... and {len(self.problems) - max_problems} more"
                         + (f" (every one in {self.saved_to})" if self.saved_to else ""))
        return "\n".join(lines)


@dataclass
class ImportReport(Report):
    """What an import read (counts of images, categories, instances) and the problems it skipped past."""

    operation: ClassVar[str] = "import"


@dataclass
class ExportReport(Report):
    """What an export wrote (counts per segmentation format, per source format, excluded by status) and
    the instances it could not write as asked (a polygon that cannot represent its mask, say)."""

    operation: ClassVar[str] = "export"
