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
