"""Wording every front end shares: counts with the noun in the right number ("1 step", "3 steps")."""
from __future__ import annotations


def plural(count: int, one: str, many: str | None = None) -> str:
    """ "1 step", "3 steps"; ``many`` for irregular plurals ("1 box", "2 boxes")."""
    return f"{count} {one if count == 1 else many or one + 's'}"
