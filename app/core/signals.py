"""SIGTERM and SIGHUP as a request to stop, honoured between records, so that a headless job stopped by a
service manager, a closed terminal or ``kill`` ends like Ctrl+C: temporary files are removed
(``app.core.atomic``), a new project being built is thrown away, an open transaction is rolled back and the
project's lock file removed. Python's default for both signals ends the process on the spot, leaving all of
those behind.

The handler only notes the signal; long jobs call ``check_stop`` between records (instances exported,
annotations parsed, instances stored, images refined), which raises ``Terminated`` there. An exception
raised by the handler itself would land wherever the interpreter happens to be, including inside a C
extension calling back into Python (numpy asking pycocotools for an array), which can swallow it or turn
it into an unrelated error. A job in one long C call (parsing a JSON file, building an index) stops after it.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

HANDLED = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)
_received: list[int] = []


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM or SIGHUP. A KeyboardInterrupt, so every ``except KeyboardInterrupt`` that
    saves or reports on the way out (``refine``'s, say) does so for these signals as for Ctrl+C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


def check_stop() -> None:
    """Raise ``Terminated`` if SIGTERM or SIGHUP arrived while ``terminate_on_signals`` was in force; long
    jobs call this where stopping leaves nothing half done."""
    if _received:
        raise Terminated(_received[0])


def stop_requested() -> bool:
    """Whether SIGTERM or SIGHUP arrived (for loops that stop on their own terms, like a refine queue)."""
    return bool(_received)


@contextmanager
def terminate_on_signals(*, restore: bool = True) -> Iterator[None]:
    """Note SIGTERM and SIGHUP for ``check_stop`` while the block runs. At the end the previous handlers come
    back, or with ``restore=False`` (a process about to exit) the signals stay ignored: one arriving while
    the interpreter shuts down must not turn a finished job into a killed one. Off the main thread (where
    Python cannot install handlers) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, _frame: FrameType | None) -> None:
        _received.append(signum)

    previous = {s: signal.signal(s, note) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if restore else signal.SIG_IGN)
        _received.clear()
