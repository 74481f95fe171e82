"""Evaluation: does the refiner beat the coarse input and the classical refiners a user could reach for?

Held-out real images (the validation split of app/refiner/data.py) get synthetic coarse masks of every kind
in app/refiner/degrade.py with fixed seeds, plus a "near_perfect" set (IoU >= 0.97 with the ground truth)
that checks the refiner does no harm. Each method refines every coarse mask; we report dataset-level IoU
(sum of intersections over sum of unions), mean mBA and mean boundary IoU, as the papers do, per kind and
overall, and the time per instance.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from app.core.classical import CLASSICAL_REFINERS
from app.core.metrics import MetricAccumulator, iou
from app.refiner.api import Refiner, RefineOptions
from app.refiner.data import Example, Source
from app.refiner.degrade import ALL_KINDS, near_perfect, synthesize

log = logging.getLogger(__name__)

NEAR_PERFECT = "near_perfect"
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Case:
    """One evaluation instance: a held-out example and a coarse mask of a given kind."""

    example: Example
    coarse: np.ndarray
    kind: str


@dataclass
class Row:
    """Figures of one method on one kind (or "all")."""

    method: str
    kind: str
    count: int
    iou: float
    mba: float
    boundary_iou: float
    seconds_per_instance: float


def build_cases(sources: Sequence[Source], per_kind: int, seed: int = 2026, kinds: Iterable[str] = (*ALL_KINDS, NEAR_PERFECT)) -> list[Case]:
    """``per_kind`` held-out examples per coarse kind, the same ones for every method and every run."""
    rng = np.random.default_rng(seed)
    pool = [(s, i) for s in sources for i in range(len(s))]
    cases = []
    for kind in kinds:
        order = rng.permutation(len(pool))
        made = 0
        for k in order:
            if made >= per_kind:
                break
            source, i = pool[int(k)]
            example = source.load(i)
            if example.mask.sum() < 1024:
                continue
            if kind == NEAR_PERFECT:
                coarse = near_perfect(example.mask, rng)
                if iou(coarse, example.mask) < 0.97:
                    continue
            else:
                coarse, made_kind = synthesize(example.mask, rng, kind=kind, image=example.image)
                if made_kind != kind:
                    continue
            cases.append(Case(example, coarse, kind))
            made += 1
    return cases


def refiner_method(refiner: Refiner, options: RefineOptions) -> Method:
    def run(image: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        final = None
        for final in refiner.run(image, [coarse], options):
            pass
        assert final is not None
        return final.mask(0)

    return run


def methods_for(refiner: Refiner | None, modes: Sequence[str] = ("instance", "hr"), keep_native: bool = True) -> dict[str, Method]:
    """The coarse input, the classical refiners and (when weights are given) our refiner's variants."""
    methods: dict[str, Method] = {"coarse": lambda image, coarse: coarse}
    methods.update(CLASSICAL_REFINERS)
    if refiner is not None:
        for mode in modes:
            for deterministic in (False, True):
                name = f"ours-{mode}-{'det' if deterministic else 'stoch'}"
                methods[name] = refiner_method(refiner, RefineOptions(mode=mode, deterministic=deterministic, min_area=0, keep_native=keep_native))
    return methods


def evaluate(cases: Sequence[Case], methods: dict[str, Method], progress: Callable[[str, int, int], None] | None = None) -> list[Row]:
    """Run every method on every case; rows per (method, kind) and per method over all kinds but near-perfect."""
    rows = []
    for name, method in methods.items():
        per_kind: dict[str, MetricAccumulator] = defaultdict(MetricAccumulator)
        overall = MetricAccumulator()
        seconds: dict[str, float] = defaultdict(float)
        for n, case in enumerate(cases):
            started = time.perf_counter()
            refined = method(case.example.image, case.coarse)
            elapsed = time.perf_counter() - started
            seconds[case.kind] += elapsed
            per_kind[case.kind].add(refined, case.example.mask, case.example.ignore)
            if case.kind != NEAR_PERFECT:
                overall.add(refined, case.example.mask, case.example.ignore)
                seconds["all"] += elapsed
            if progress is not None:
                progress(name, n + 1, len(cases))
        for kind, acc in [*per_kind.items(), ("all", overall)]:
            s = acc.summary()
            rows.append(Row(name, kind, s.count, s.iou, s.mba, s.mean_boundary_iou, seconds[kind] / max(1, s.count)))
    return rows


def markdown_table(rows: Sequence[Row], kind: str = "all") -> str:
    """One kind's rows as a Markdown table (IoU, mBA and boundary IoU in %)."""
    lines = [
        f"| method ({kind}) | n | IoU | mBA | boundary IoU | s / instance |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.kind == kind:
            lines.append(f"| {r.method} | {r.count} | {100 * r.iou:.2f} | {100 * r.mba:.2f} | {100 * r.boundary_iou:.2f} | {r.seconds_per_instance:.3f} |")
    return "\n".join(lines)


def rows_as_dicts(rows: Sequence[Row]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]
