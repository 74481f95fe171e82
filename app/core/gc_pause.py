"""Keeping Python's cyclic garbage collector out of the way of bulk loads and of the window.

Importing or exporting an LVIS-sized dataset creates millions of small objects (polygon coordinates,
records); each allocation burst triggers collections that rescan everything already loaded, which costs
about a third of the work. These objects form no reference cycles, so nothing is lost by collecting once,
afterwards.

A full collection scans every tracked object while holding the GIL, in whichever thread happened to allocate:
once torch, PySide6 and a project are loaded that is about 110 ms (measured in the window on an 8000x6000 photo,
benchmarks/bench_gui.py), during which the GUI thread cannot run. Objects that survive a big load (modules, the
model, a project's records) mostly live as long as the app: :func:`freeze_survivors` takes them out of the
collector's scans.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector inside the block (restoring its previous state after)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_survivors(collect_first: bool = True) -> None:
    """Collect once, then exclude every object still alive from later cyclic collections (``gc.freeze``).

    For the end of a big load (a project opened, a model loaded): the one collection costs what a full one does
    (0.1-0.2 s with torch loaded, the GIL held), once, instead of every few seconds of work; collecting first keeps
    what was left behind in reference cycles (a closed project's document and its photo, say) from being frozen and
    never reclaimed. ``collect_first=False`` freezes in constant time, where a collection would hold up work being
    waited for and little can be garbage. Frozen objects are still freed by reference counting.
    """
    if collect_first:
        gc.collect()
    gc.freeze()
