"""The prompt head's training windows (scripts/train_prompt_head.py): the box drawn is the object's, for sources
with and without an ignore band (v1 was trained with boxes 8x too wide on every source but Pets)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from app.refiner.data import Example

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_prompt_head.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_prompt_head", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def example(ignore: bool) -> Example:
    mask = np.zeros((60, 80), bool)
    mask[10:30, 20:50] = True
    band = None
    if ignore:
        band = np.zeros_like(mask)
        band[10:12, 20:50] = True  # the unknown band along the top edge
    return Example(np.zeros((60, 80, 3), np.uint8), mask, band, "test")


@pytest.mark.parametrize("ignore", [False, True])
def test_the_box_is_the_objects(script, ignore):
    mask = script.object_mask(example(ignore))
    assert mask.dtype == bool and mask.shape == (60, 80)
    top = 12 if ignore else 10
    assert script.jittered_box(mask, 0.0, np.random.default_rng(0)) == (20.0, float(top), 50.0, 30.0)


def test_a_jittered_box_moves_each_side_a_little_and_stays_in_the_image(script):
    mask = script.object_mask(example(False))
    rng = np.random.default_rng(1)
    for _ in range(50):
        x0, y0, x1, y1 = script.jittered_box(mask, 0.1, rng)
        assert 17 <= x0 <= 23 and 8 <= y0 <= 12 and 47 <= x1 <= 53 and 28 <= y1 <= 32
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 60


def test_more_boxes_are_box_windows_and_a_long_run_leaves_checkpoints(script):
    from app.refiner.prompt_head import PromptHeadConfig
    from tests.shared_data import DATA, require

    require(DATA / "pennfudan")
    boxes = script.build_samples(DATA, 64, 0.06, 1, limit=1, whole=False)
    both = script.build_samples(DATA, 64, 0.06, 1, limit=1)
    assert boxes and all(sample.box is not None for sample in boxes)
    assert len(both) == 2 * len(boxes) and sum(sample.box is None for sample in both) == len(boxes)
    saved: list[int] = []
    script.train(boxes, PromptHeadConfig(canvas=64), 5, 2, 1e-3, 0, checkpoint=lambda head, done: saved.append(done), every=2)
    assert saved == [2, 4]  # the last iteration's weights are the caller's to save
