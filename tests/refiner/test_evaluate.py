"""The evaluator on real held-out images: fixed cases, every method scored, near-perfect cases kept apart."""

import numpy as np
import pytest

from app.core.metrics import iou
from app.refiner.evaluate import NEAR_PERFECT, build_cases, evaluate, markdown_table, methods_for
from tests.shared_data import sources_or_skip



@pytest.fixture(scope="module")
def sources():
    return sources_or_skip("val")


def test_cases_are_fixed_and_of_the_asked_kinds(sources):
    a = build_cases(sources, 2, kinds=["lowres", NEAR_PERFECT])
    b = build_cases(sources, 2, kinds=["lowres", NEAR_PERFECT])
    assert [c.kind for c in a] == ["lowres", "lowres", NEAR_PERFECT, NEAR_PERFECT]
    assert all(np.array_equal(x.coarse, y.coarse) for x, y in zip(a, b))
    assert all(iou(c.coarse, c.example.mask) >= 0.97 for c in a if c.kind == NEAR_PERFECT)


@pytest.mark.slow
def test_every_method_is_scored_per_kind_and_overall(sources, random_refiner):
    cases = build_cases(sources, 1, kinds=["shift", NEAR_PERFECT])
    methods = methods_for(random_refiner, modes=["instance"])
    assert {"coarse", "grabcut", "ours-instance-stoch", "ours-instance-det"} <= set(methods)
    rows = evaluate(cases, methods)
    coarse_all = next(r for r in rows if r.method == "coarse" and r.kind == "all")
    assert coarse_all.count == 1  # near-perfect cases stay out of "all"
    expected = iou(cases[0].coarse, cases[0].example.mask, cases[0].example.ignore)
    assert coarse_all.iou == pytest.approx(expected)
    assert len(rows) == len(methods) * 3
    table = markdown_table(rows)
    assert table.count("\n") == len(methods) + 1 and "ours-instance-det" in table
    assert table.startswith("| method (all kinds but near-perfect) |")


def test_sets_take_turns_so_every_set_is_in_every_kind(sources):
    cases = build_cases(sources, len(sources), kinds=["shift"])
    assert len({c.source for c in cases}) == len(cases) == len(sources)


def _scored(ious, mbas):
    from app.core.metrics import ImageScores
    from app.refiner.evaluate import Scored

    return [Scored(ImageScores(i, 0.0, m, int(i * 1000), 1000), 0.0) for i, m in zip(ious, mbas)]


def _cases(kinds):
    from app.refiner.evaluate import Case

    return [Case(None, None, kind) for kind in kinds]


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_gain():
    from app.refiner.evaluate import difference_table, paired_bootstrap

    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.9, 60)
    cases = _cases(["shift"] * 30 + ["lowres"] * 30)
    scored = {"grabcut": _scored(base, base), "ours": _scored(base + 0.02, base + rng.normal(0, 0.05, 60)),
              "same": _scored(base, base)}
    gain = {d.kind: d for d in paired_bootstrap(cases, scored, "ours", "grabcut")}
    assert set(gain) == {"shift", "lowres", "all"} and gain["all"].count == 60
    assert gain["all"].iou == pytest.approx(0.02, abs=1e-3) and 0 < gain["all"].iou_low < 0.02 < gain["all"].iou_high
    assert gain["all"].mba_low < 0 < gain["all"].mba_high  # noise around zero: the interval says so
    same = paired_bootstrap(cases, scored, "same", "grabcut")
    assert all(d.iou == d.iou_low == d.iou_high == 0.0 for d in same)
    assert "| all kinds but near-perfect | 60 | +2.00 [" in difference_table(list(gain.values()))


def test_near_perfect_cases_are_reported_apart_from_all():
    from app.refiner.evaluate import paired_bootstrap

    cases = _cases(["shift", NEAR_PERFECT])
    scored = {"a": _scored([0.9, 0.99], [0.8, 0.9]), "b": _scored([0.8, 0.98], [0.7, 0.9])}
    by_kind = {d.kind: d.count for d in paired_bootstrap(cases, scored, "a", "b", resamples=50)}
    assert by_kind == {"shift": 1, NEAR_PERFECT: 1, "all": 1}


def test_upscaled_cases_are_the_same_examples_larger(sources):
    plain = build_cases(sources[:1], 1, kinds=["shift"])[0]
    big = build_cases(sources[:1], 1, kinds=["shift"], upscale=2)[0]
    assert big.example.image.shape[:2] == tuple(2 * n for n in plain.example.image.shape[:2])
    assert big.example.key == plain.example.key + "@x2" and big.coarse.shape == big.example.mask.shape
    assert abs(big.example.mask.sum() / plain.example.mask.sum() - 4) < 0.1


def test_upscaled_ground_truth_follows_the_enlarged_photo_not_a_staircase():
    from app.refiner.data import Example
    from app.refiner.evaluate import _enlarged

    yy, xx = np.mgrid[:60, :60]
    small = Example(np.zeros((60, 60, 3), np.uint8), xx > yy, None, "diagonal")
    big = _enlarged(small, 3)
    yy, xx = np.mgrid[:180, :180]
    ideal = (xx + 0.5) / 3 > (yy + 0.5) / 3 + 0.5  # the small mask's boundary (between pixel centres) scaled up
    assert big.mask.shape == (180, 180)
    # nearest-neighbour enlargement (a 3-pixel staircase) differs from it in 119 pixels, the smooth one in 2
    assert np.count_nonzero(big.mask != ideal) <= 20
    assert big.ignore is None and big.key == "diagonal@x3"



def test_every_refiner_variant_runs_with_the_pipeline_choices_asked_for(monkeypatch):
    import app.refiner.evaluate as evaluate

    seen = []
    monkeypatch.setattr(evaluate, "refiner_method", lambda refiner, options: seen.append(options) or (lambda i, c: c))
    evaluate.methods_for(object(), modes=["instance", "hr"])
    assert len(seen) == 4 and all(o.snap and o.keep_native for o in seen)
    assert sorted((o.mode, o.deterministic) for o in seen) == [("hr", False), ("hr", True), ("instance", False),
                                                               ("instance", True)]
    seen.clear()
    evaluate.methods_for(object(), modes=["instance"], snap=False, keep_native=False)
    assert len(seen) == 2 and not any(o.snap or o.keep_native for o in seen)
