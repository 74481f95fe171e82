"""Checks on a project after a crash: what the store holds agrees with its own history."""
from __future__ import annotations

from app.core.store.project import ProjectStore


def assert_instances_match_history(store: ProjectStore) -> None:
    """Each instance's mask and status are what its last edit left (edit and change commit together)."""
    for summary in store.list_instances():
        history = store.history(summary.id)
        if not history:
            continue
        inst = store.instance(summary.id)
        assert inst.status is history[-1].after_status
        last_mask = next((e.after_rle for e in reversed(history) if e.mask_changed), None)
        if last_mask is not None:
            assert inst.rle["counts"] == last_mask["counts"]
