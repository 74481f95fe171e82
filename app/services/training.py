"""Training and evaluation: where their data is by default.

The real datasets (ECSSD, Oxford-IIIT Pets, Penn-Fudan, COCO, LVIS samples) are not package data: ``train``
and ``eval`` take the folder as ``--data``. Its default is ``$SEGREFINER_DATA`` when set, else
``../shared/data`` from the current folder: the project's layout, a checkout beside ``shared/``.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SEGREFINER_DATA"
CHECKOUT_DATA = Path("..") / "shared" / "data"


def default_data_dir() -> Path:
    """``$SEGREFINER_DATA``, else ``../shared/data`` (relative to the current folder)."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else CHECKOUT_DATA
