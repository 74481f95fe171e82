"""The refine queue's bookkeeping: what is left, what was refined, what was left out and why, the time an
instance takes and the time left. Qt-free: the refine controller (controller.py) drives it, the window
shows its texts.

The queue refines one instance per job, so Pause holds it after the instance in flight, progress moves
instance by instance, and the time per instance is measured directly (docs/decisions/0019).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from app.core.wording import plural
from app.services.selection import CROWD, EMPTY, LOCKED, TOO_SMALL

MISSING_FILE = "missing file"
GONE = "deleted"
REASONS = {
    GONE: ("instance deleted before its turn", "instances deleted before their turn"),
    CROWD: ("crowd region", "crowd regions"),
    LOCKED: ("locked instance", "locked instances"),
    EMPTY: ("empty instance", "empty instances"),
    TOO_SMALL: ("instance too small to refine", "instances too small to refine"),
    MISSING_FILE: ("instance whose image file is missing", "instances whose image file is missing"),
}


@dataclass(frozen=True)
class QueueItem:
    """One instance to refine, and its image."""

    image_id: int
    instance_id: int


def duration_text(seconds: float) -> str:
    """A duration as people say it: "40 s", "3 min", "1 h 20 min"."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def estimate_text(count: int, seconds_per_instance: float | None) -> str:
    """What refining ``count`` instances will take, from a measured time per instance (None: not measured)."""
    if seconds_per_instance is None:
        return ("The time per instance has not been measured on this computer yet; the progress bar shows the "
                "time left once the first instances are done.")
    return (f"About {duration_text(count * seconds_per_instance)} ({count} × {seconds_per_instance:.1f} s, the "
            "time an instance took here with these settings).")


def skipped_text(skipped: Counter[str]) -> str:
    """ "11 crowd regions and 3 locked instances" (empty when nothing was left out)."""
    parts = [plural(n, *REASONS[reason]) for reason, n in sorted(skipped.items()) if n and reason in REASONS]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + f" and {parts[-1]}"


@dataclass
class QueueStats:
    """One queue run: ``total`` instances planned; ``skipped`` counts those the rules kept out (from the plan,
    and any found locked, gone or without an image file when their turn came)."""

    what: str
    total: int
    min_area: int
    skipped: Counter[str] = field(default_factory=Counter)
    done: int = 0
    refined: int = 0
    too_small: int = 0
    busy_s: float = 0.0
    _since: float | None = None

    def run(self, now: float | None = None) -> None:
        """The queue runs (again) from ``now``: time spent paused does not count."""
        if self._since is None:
            self._since = time.monotonic() if now is None else now

    def hold(self, now: float | None = None) -> None:
        """The queue stops running (paused or over)."""
        if self._since is not None:
            self.busy_s += (time.monotonic() if now is None else now) - self._since
            self._since = None

    def elapsed(self, now: float | None = None) -> float:
        running = 0.0 if self._since is None else (time.monotonic() if now is None else now) - self._since
        return self.busy_s + running

    def finished(self, refined: bool) -> None:
        """An instance's job ended: refined, or passed through by the refiner as too small."""
        self.done += 1
        if refined:
            self.refined += 1
        else:
            self.too_small += 1

    def left_out(self, reason: str) -> None:
        """An instance found unfit when its turn came (locked meanwhile, deleted, no image file)."""
        self.done += 1
        self.skipped[reason] += 1

    def seconds_per_instance(self, now: float | None = None) -> float | None:
        computed = self.refined + self.too_small
        return None if computed == 0 else self.elapsed(now) / computed

    def eta_s(self, now: float | None = None) -> float | None:
        per = self.seconds_per_instance(now)
        return None if per is None else per * (self.total - self.done)

    def progress_text(self, paused: bool, now: float | None = None) -> str:
        """ "Refining 3/12 · about 40 s left", or the paused state."""
        if paused:
            return f"Paused at {self.done}/{self.total} · P resumes"
        eta = self.eta_s(now)
        left = "" if eta is None else f" · about {duration_text(eta)} left"
        return f"Refining {self.done}/{self.total}{left}"

    def report(self, cancelled: bool = False) -> str:
        """What the run did, in words, for the status bar."""
        head = (f"Refine queue cancelled after {self.done} of {self.total} instances" if cancelled
                else f"Refined {plural(self.refined, 'instance')} of {self.what}")
        parts = [f"{head} in {duration_text(self.elapsed())}"]
        if self.too_small:
            parts.append(f"{plural(self.too_small, 'instance')} under {self.min_area} px left as they were (too "
                         "small for the refiner)")
        skipped = skipped_text(self.skipped)
        if skipped:
            parts.append(f"skipped {skipped}")
        if not cancelled and self.refined:
            parts.append("sort the list by largest change to review")
        return "; ".join(parts)
