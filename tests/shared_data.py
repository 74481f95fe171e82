"""Where the real datasets are (../shared/data beside the repository), and skipping when they are not."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require(path: Path) -> Path:
    """``path`` if the shared data has it, else skip the test saying what is missing."""
    if not path.exists():
        pytest.skip(f"real data not found: {path} (see ../shared/data/README.md)")
    return path


def sources_or_skip(split: str) -> list:
    """The training sources of ``split`` found in the shared data, else skip the test."""
    from app.refiner.data import shared_sources

    found = shared_sources(DATA, split)
    if not found:
        pytest.skip(f"real data not found at {DATA}")
    return found
