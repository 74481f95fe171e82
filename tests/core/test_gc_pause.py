"""The collector helpers: paused around bulk loads, and a load's survivors kept out of later scans."""
from __future__ import annotations

import gc
import weakref

from app.core.gc_pause import freeze_survivors, paused_gc


class Node:
    """A tracked object that can hold a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_paused_gc_restores_the_previous_state():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_frozen_survivors_leave_the_scans_and_are_still_freed_when_dropped():
    left_behind = Node()
    left_behind.other = left_behind  # garbage in a cycle when the load ends: collected, not frozen
    was_left = weakref.ref(left_behind)
    del left_behind
    loaded = [Node() for _ in range(1000)]
    alone = Node()
    gone = weakref.ref(alone)
    try:
        freeze_survivors()
        assert was_left() is None
        assert gc.get_freeze_count() >= 1001
        tracked = {id(o) for o in gc.get_objects()}
        assert id(loaded[0]) not in tracked and id(alone) not in tracked  # a full collection does not visit them
        del alone
        assert gone() is None  # reference counting still frees a frozen object
        later = Node()
        later.other = later  # a cycle made after the freeze is collected as usual
        cycle = weakref.ref(later)
        del later
        gc.collect()
        assert cycle() is None
    finally:
        gc.unfreeze()


def test_freezing_without_collecting_keeps_what_is_alive_out_of_the_scans():
    kept = Node()
    try:
        freeze_survivors(collect_first=False)
        assert id(kept) not in {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
