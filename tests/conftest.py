"""Fixtures shared by the refiner and service tests: an untrained compact network, saved as our safetensors, and a
Refiner on it (the network's work is real, only its answers are not). torch is imported only when one is used."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from app.refiner.unet import build_unet
    from app.refiner.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "compact-random.safetensors"
    save_weights(build_unet("compact"), path, {"training_data": "none (random init, for tests)"})
    return path


@pytest.fixture(scope="session")
def random_refiner(random_weights: Path):  # noqa: ANN201 - a Refiner; torch kept out of collection
    from app.refiner.api import Refiner

    return Refiner(random_weights, device="cpu")
