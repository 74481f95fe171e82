"""Pausing Python's cyclic garbage collector around bulk loads.

Importing or exporting an LVIS-sized dataset creates millions of small objects (polygon coordinates,
records); each allocation burst triggers collections that rescan everything already loaded, which costs
about a third of the work. These objects form no reference cycles, so nothing is lost by collecting once,
afterwards.
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
