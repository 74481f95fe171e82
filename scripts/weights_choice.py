"""Which weights the GUI benchmark and the screenshot script drive the window with."""
from __future__ import annotations

import logging
from pathlib import Path

from app.refiner.unet import build_unet
from app.refiner.weights import WeightsError, resolve_weights, save_weights

log = logging.getLogger(__name__)


def choose_weights(requested: str | None, scratch: Path) -> str:
    """``requested``, else compact-v1 when installed, else an untrained compact network saved in ``scratch``."""
    if requested:
        return requested
    try:
        resolve_weights("compact-v1")
        return "compact-v1"
    except WeightsError:
        log.warning("compact-v1 is not installed: using an UNTRAINED compact network; overlays will show noise")
        return str(save_weights(build_unet("compact"), scratch / "untrained-compact.safetensors"))
