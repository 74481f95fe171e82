"""Which weights the GUI benchmark and the screenshot script drive the window with."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings

from app.gui.settings import AppSettings
from app.refiner.options import DEFAULT_WEIGHTS
from app.refiner.unet import build_unet
from app.refiner.weights import WeightsError, resolve_weights, save_weights

log = logging.getLogger(__name__)


def choose_weights(requested: str | None, scratch: Path) -> str:
    """``requested``, else the default weights when installed, else an untrained compact network in ``scratch``."""
    if requested:
        return requested
    try:
        resolve_weights(DEFAULT_WEIGHTS)
        return DEFAULT_WEIGHTS
    except WeightsError:
        log.warning("%s is not installed: using an UNTRAINED compact network; overlays will show noise", DEFAULT_WEIGHTS)
        return str(save_weights(build_unet("compact"), scratch / "untrained-compact.safetensors"))


def scratch_settings(requested: str | None, scratch: Path) -> AppSettings:
    """Throwaway settings in ``scratch`` (the user's own are never touched) with the chosen weights selected."""
    settings = AppSettings(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat))
    weights = choose_weights(requested, scratch)
    if Path(weights).suffix:
        settings.add_weights_file(weights)
    else:
        settings.weights = weights
    return settings
