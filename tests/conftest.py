"""Fixtures shared by the tests: the collector unfrozen after each; an untrained compact network, saved as our
safetensors, and a Refiner on it (the network's work is real, only its answers are not). torch is imported only when
one is used."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def collector_unfrozen():  # noqa: ANN201 - a generator fixture
    """Give back to the collector what a test's window froze (app.core.gc_pause.freeze_survivors), and collect it
    now: a process runs one app, a test session hundreds, whose windows must go with their tests."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()


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
