"""The schedule and the reverse process, checked against the spec's numbers and with oracle networks."""
import numpy as np
import pytest
import torch

from app.refiner.diffusion import DEFAULT_SCHEDULE, ReverseState, Schedule, confidence, q_sample, reverse_step


def test_schedule_values_match_spec():
    s = DEFAULT_SCHEDULE
    assert s.beta_bar.tolist() == pytest.approx([0.8, 0.64, 0.48, 0.32, 0.16, 0.0])
    assert s.beta_bar_prev.tolist() == pytest.approx([1.0, 0.8, 0.64, 0.48, 0.32, 0.16])
    assert s.betas.tolist() == pytest.approx([0.8, 0.8, 0.75, 2 / 3, 0.5, 0.0])
    assert s.indices() == [5, 4, 3, 2, 1, 0]
    assert s.indices(5) == [5, 4, 3, 2, 1]
    with pytest.raises(ValueError):
        s.indices(7)


def test_q_sample_endpoints_and_fraction():
    g = torch.Generator().manual_seed(0)
    fine = torch.ones(2, 1, 128, 128)
    coarse = torch.zeros(2, 1, 128, 128)
    m = q_sample(fine, coarse, torch.tensor([5, 0]), generator=g)
    assert m[0].sum() == 0  # code-t 5: all coarse
    assert m[1].mean().item() == pytest.approx(0.8, abs=0.01)  # code-t 0: 80% still fine
    # Only pixels where fine != coarse can differ from either endpoint.
    same = torch.ones(1, 1, 16, 16)
    assert torch.equal(q_sample(same, same, torch.tensor([3]), generator=g), same)


def _run(logit_fn, coarse, deterministic=False, seed=0, steps=6):
    state = ReverseState.start(coarse)
    g = torch.Generator().manual_seed(seed)
    idx = DEFAULT_SCHEDULE.indices(steps)
    history = []
    for k, t in enumerate(idx):
        reverse_step(state, logit_fn(state.mask, t), t, k == len(idx) - 1, generator=g, deterministic=deterministic)
        history.append((state.mask.clone(), state.fine_probs.clone()))
    return state, history


def _blob(shift=0):
    m = torch.zeros(1, 1, 64, 64)
    m[..., 16 + shift : 48 + shift, 16:48] = 1
    return m


def test_oracle_network_converges_to_ground_truth():
    gt, coarse = _blob(), _blob(shift=6)
    oracle = lambda x, t: (gt * 2 - 1) * 20.0  # noqa: E731
    state, history = _run(oracle, coarse)
    assert torch.equal(state.mask >= 0.5, gt.bool())
    # Intermediate masks move monotonically towards the ground truth in expectation.
    errors = [(m.round() != gt).sum().item() for m, _ in history]
    assert errors[-1] == 0 and errors[0] > errors[-1]


def test_confident_pixels_follow_closed_form():
    coarse = _blob(shift=6)
    oracle = lambda x, t: torch.full_like(x, 50.0)  # noqa: E731  c = 1 everywhere
    _, history = _run(oracle, coarse)
    expected = [0.16, 0.32, 0.48, 0.64, 0.80, 1.00]
    for (_, probs), e in zip(history, expected):
        assert probs.mean().item() == pytest.approx(e, abs=1e-5)


def test_zero_confidence_keeps_coarse_until_last_step():
    coarse = _blob(shift=3)
    unsure = lambda x, t: torch.zeros_like(x)  # noqa: E731  sigmoid 0.5 -> c = 0
    assert confidence(torch.zeros(1)).item() == 0.0
    _, history = _run(unsure, coarse)
    for mask, probs in history[:-1]:
        assert torch.equal(mask, coarse)
        assert probs.abs().max().item() == 0.0
    assert torch.allclose(history[-1][0], torch.full_like(coarse, 0.5))


def test_seeded_runs_repeat_and_seeds_differ():
    gt, coarse = _blob(), _blob(shift=6)
    half = lambda x, t: (gt * 2 - 1) * 1.0  # noqa: E731  moderately confident
    a, ha = _run(half, coarse, seed=7)
    b, hb = _run(half, coarse, seed=7)
    c, hc = _run(half, coarse, seed=8)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(ha, hb))
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(ha[:-1], hc[:-1]))


def test_deterministic_variant_thresholds_accumulated_probability():
    gt, coarse = _blob(), _blob(shift=6)
    oracle = lambda x, t: (gt * 2 - 1) * 50.0  # noqa: E731
    _, history = _run(oracle, coarse, deterministic=True)
    for mask, probs in history[:-1]:
        expected = torch.where(probs >= 0.5, gt, coarse)
        assert torch.equal(mask, expected)
    # With c = 1 the accumulated probability reaches 0.5 after the third step (0.16, 0.32, 0.48, 0.64).
    assert torch.equal(history[2][0], coarse) and torch.equal(history[3][0], gt)


def test_custom_schedule_length():
    s = Schedule(num_timesteps=4)
    assert s.beta_bar.tolist() == pytest.approx(np.linspace(0.8, 0, 4).tolist())
