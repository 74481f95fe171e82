"""The prompt head's training windows (scripts/train_prompt_head.py): the box drawn is the object's, for sources
with and without an ignore band (v1 was trained with boxes 8x too wide on every source but Pets)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


class _Everywhere(torch.nn.Module):
    """A head that calls every pixel foreground: the over-reaching first answer iterative training must show."""

    def forward(self, features, prompt):
        return torch.full((prompt.shape[0], 1, prompt.shape[-2] // 4, prompt.shape[-1] // 4), 10.0)


def test_self_played_clicks_carry_the_heads_own_mask_and_a_click_on_its_error(script):
    gts = np.zeros((2, 64, 64), bool)
    gts[:, 24:40, 24:40] = True
    features = {s: torch.zeros(2, 8, 64 // s, 64 // s) for s in (16, 8, 4)}
    prompts = script.self_played(_Everywhere(), features, gts, rounds=1)
    assert prompts.shape == (2, 3, 64, 64)
    assert (prompts[:, 0] == 1).all()  # the head's mask (everything) is the prior
    positive, negative = prompts[0, 1] > 0, prompts[0, 2] > 0
    assert positive[32, 32] and not (positive & ~gts[0]).any()  # the first click, at the object's centre
    assert negative.any() and not (negative & gts[0]).any()  # the next one removes what the head took too much


def test_iterative_training_self_plays_whole_image_windows_only(script, monkeypatch):
    from app.refiner.prompt_head import PromptHeadConfig

    rng = np.random.default_rng(0)
    gt = np.zeros((64, 64), bool)
    gt[20:44, 16:40] = True

    def sample(box):
        features = {s: torch.from_numpy(rng.standard_normal((c, 64 // s, 64 // s))).half()
                    for s, c in ((16, 112), (8, 40), (4, 24))}
        return script.Sample(features, gt, box)

    played: list[int] = []
    real = script.self_played
    monkeypatch.setattr(script, "self_played", lambda head, features, gts, rounds: played.append(len(gts)) or real(head, features, gts, rounds))
    config = PromptHeadConfig(canvas=64, widths=(16, 16, 16))
    script.train([sample((16.0, 20.0, 40.0, 44.0))] * 2, config, 3, 2, 1e-3, 0, iterative=1.0)
    assert played == []  # box windows keep their box prompts
    head = script.train([sample(None)] * 2, config, 3, 2, 1e-3, 0, iterative=1.0)
    assert played == [2, 2, 2] and not head.training


def test_a_merged_prompt_takes_the_touching_neighbour_and_clicks_it_away(script):
    gt = np.zeros((64, 64), bool)
    gt[20:44, 10:30] = True
    others = np.zeros_like(gt)
    others[20:44, 31:50] = True  # touches the object (one pixel apart)
    others[2:8, 2:8] = True  # far away: not part of what a click took
    neighbours = script.touching(others, gt)
    assert neighbours is not None and neighbours[30, 40] and not neighbours[4, 4]
    prompt = script.merged_prompt(gt, neighbours, 64, np.random.default_rng(0))
    assert (prompt[0] > 0).sum() == (gt | neighbours).sum()  # the prior: the object and its neighbour
    assert (prompt[1] > 0)[32, 20] and not ((prompt[1] > 0) & ~gt).any()  # the first click, on the object
    assert (prompt[2] > 0).any() and not ((prompt[2] > 0) & ~neighbours).any()  # negatives on the neighbour
    assert script.touching(np.zeros_like(gt), gt) is None


def test_kept_windows_keep_the_other_instances(script, tmp_path):
    from tests.shared_data import DATA, require

    require(DATA / "pennfudan")
    samples = script.build_samples(DATA, 64, 0.06, 0, limit=2)
    assert any(s.others is not None and s.others.any() for s in samples)  # Penn-Fudan photos hold several people
    path = tmp_path / "windows.pt"
    script.samples_to_file(path, "tag", samples)
    again = script.samples_from_file(path, "tag")
    assert again is not None and len(again) == len(samples)
    for a, b in zip(samples, again):
        assert (a.others is None) == (b.others is None) and (a.others is None or np.array_equal(a.others, b.others))
        assert np.array_equal(a.gt, b.gt) and a.box == b.box
    assert script.samples_from_file(path, "another run") is None


def test_widths_cannot_change_a_continued_head(script, tmp_path, capsys):
    from app.refiner.prompts import DEFAULT_PROMPT_HEADS
    from app.refiner.weights import PACKAGE_WEIGHTS_DIR

    with pytest.raises(SystemExit):
        script.main(["--out", str(tmp_path / "h.safetensors"), "--init", str(PACKAGE_WEIGHTS_DIR / DEFAULT_PROMPT_HEADS[0]),
                     "--widths", "8", "8", "8"])
    assert "--widths makes a new head" in capsys.readouterr().err
    assert not (tmp_path / "h.safetensors").exists()
