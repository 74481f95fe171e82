"""A training run's ``last.pt``: network, optimizer, loss scaler and RNG in one file, written atomically.

Both trainers (the band network's and the U-Net's) keep their runs this way, so a killed run resumes where its last
save left it. The file is our own and is read with ``weights_only=True`` all the same.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch


def write_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, step: int, **extra: Any) -> None:
    """Write the run's state (plus ``extra`` entries) to ``path`` through a temporary file and a rename."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "scaler": scaler.state_dict(),
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, same_network: Callable[[dict[str, Any]], bool],
                    network: str) -> dict[str, Any] | None:
    """Restore ``path`` into the run's objects and return its whole state; None when there is no checkpoint.

    Raises ValueError naming the file when ``same_network(state)`` says it holds another ``network``.
    """
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not same_network(state):
        raise ValueError(f"{path}: checkpoint is for another {network}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state
