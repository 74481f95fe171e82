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

import cv2
import numpy as np

from app.core.classical import available_refiners
from app.core.metrics import ImageScores, MetricAccumulator, iou, score
from app.core.signals import check_stop
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
    source: str = ""


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


def build_cases(sources: Sequence[Source], per_kind: int, seed: int = 2026,
                kinds: Iterable[str] = (*ALL_KINDS, NEAR_PERFECT), upscale: float = 1.0) -> list[Case]:
    """``per_kind`` held-out examples per coarse kind, the same ones for every method and every run.

    Sources take turns, so every set is represented in every kind however their sizes differ; within a
    source the examples come in a fixed random order. ``upscale`` > 1 enlarges each image (bicubic) and its
    ground truth (linear, cut at 0.5) before the coarse mask is made: a stand-in for high-resolution photos,
    which the held-out data lacks. Nearest-neighbour ground truth would be a staircase of ``upscale``-pixel
    steps that no high-resolution mask has, and would score a boundary that follows the (smooth) enlarged
    photo as an error.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for kind in kinds:
        orders = [list(rng.permutation(len(s))) for s in sources]
        made, turn = 0, 0
        while made < per_kind and any(orders):
            k = turn % len(sources)
            turn += 1
            if not orders[k]:
                continue
            example = _enlarged(sources[k].load(int(orders[k].pop(0))), upscale)
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
            cases.append(Case(example, coarse, kind, sources[k].name))
            made += 1
    return cases


def _enlarged(example: Example, factor: float) -> Example:
    if factor == 1.0:
        return example
    h, w = example.mask.shape
    size = (round(w * factor), round(h * factor))

    def smooth(mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None:
            return None
        return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5

    image = cv2.resize(example.image, size, interpolation=cv2.INTER_CUBIC)
    return Example(image, smooth(example.mask), smooth(example.ignore), f"{example.key}@x{factor:g}")


def refiner_method(refiner: Refiner, options: RefineOptions) -> Method:
    def run(image: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        final = None
        for final in refiner.run(image, [coarse], options):
            pass
        assert final is not None
        return final.mask(0)

    return run


def methods_for(refiner: Refiner | None, modes: Sequence[str] = ("instance", "hr"), keep_native: bool = True,
                snap: bool = True) -> dict[str, Method]:
    """The coarse input, the classical refiners and (when weights are given) our refiner's variants."""
    methods: dict[str, Method] = {"coarse": lambda image, coarse: coarse}
    methods.update(available_refiners())
    if refiner is not None:
        for mode in modes:
            for deterministic in (False, True):
                name = f"ours-{mode}-{'det' if deterministic else 'stoch'}"
                options = RefineOptions(mode=mode, deterministic=deterministic, min_area=0, keep_native=keep_native,
                                        snap=snap)
                methods[name] = refiner_method(refiner, options)
    return methods


@dataclass(frozen=True)
class Scored:
    """One method's result on one case."""

    scores: ImageScores
    seconds: float


def score_cases(cases: Sequence[Case], methods: dict[str, Method],
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, list[Scored]]:
    """Every method on every case: per-case scores and times, in the order of ``cases``."""
    out: dict[str, list[Scored]] = {}
    for name, method in methods.items():
        out[name] = []
        for n, case in enumerate(cases):
            check_stop()
            started = time.perf_counter()
            refined = method(case.example.image, case.coarse)
            elapsed = time.perf_counter() - started
            out[name].append(Scored(score(refined, case.example.mask, case.example.ignore), elapsed))
            if progress is not None:
                progress(name, n + 1, len(cases))
    return out


def summarize(cases: Sequence[Case], scored: dict[str, list[Scored]]) -> list[Row]:
    """Rows per (method, kind) and per method over all kinds but near-perfect ("all")."""
    rows = []
    for name, results in scored.items():
        groups: dict[str, list[Scored]] = defaultdict(list)
        for case, result in zip(cases, results):
            groups[case.kind].append(result)
            if case.kind != NEAR_PERFECT:
                groups["all"].append(result)
        for kind, group in [*((k, v) for k, v in groups.items() if k != "all"), ("all", groups["all"])]:
            if not group:
                continue
            acc = MetricAccumulator(scores=[g.scores for g in group])
            s = acc.summary()
            rows.append(Row(name, kind, s.count, s.iou, s.mba, s.mean_boundary_iou,
                            sum(g.seconds for g in group) / len(group)))
    return rows


def evaluate(cases: Sequence[Case], methods: dict[str, Method], progress: Callable[[str, int, int], None] | None = None) -> list[Row]:
    """Run every method on every case; rows per (method, kind) and per method over all kinds but near-perfect."""
    return summarize(cases, score_cases(cases, methods, progress))


@dataclass(frozen=True)
class Difference:
    """method - baseline on a group of cases, with a paired bootstrap 95 % interval (IoU and mBA, as fractions)."""

    method: str
    baseline: str
    kind: str
    count: int
    iou: float
    iou_low: float
    iou_high: float
    mba: float
    mba_low: float
    mba_high: float


def paired_bootstrap(cases: Sequence[Case], scored: dict[str, list[Scored]], method: str, baseline: str,
                     resamples: int = 2000, seed: int = 0) -> list[Difference]:
    """Dataset-level IoU and mean mBA differences per kind and overall ("all", near-perfect apart).

    Cases are resampled with replacement, the same draw for both methods (paired), and the 2.5th / 97.5th
    percentiles of the differences give the interval.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        groups[case.kind].append(i)
        if case.kind != NEAR_PERFECT:
            groups["all"].append(i)
    out = []
    for kind, index in [*((k, v) for k, v in groups.items() if k != "all"), ("all", groups["all"])]:
        if not index:
            continue
        a = [scored[method][i].scores for i in index]
        b = [scored[baseline][i].scores for i in index]
        inter_a, union_a = np.array([s.intersection for s in a], float), np.array([s.union for s in a], float)
        inter_b, union_b = np.array([s.intersection for s in b], float), np.array([s.union for s in b], float)
        mba_diff = np.array([x.mba - y.mba for x, y in zip(a, b)])
        draws = rng.integers(0, len(index), size=(resamples, len(index)))
        iou_diff = (inter_a[draws].sum(1) / np.maximum(union_a[draws].sum(1), 1)
                    - inter_b[draws].sum(1) / np.maximum(union_b[draws].sum(1), 1))
        mba_boot = mba_diff[draws].mean(1)
        point = inter_a.sum() / max(union_a.sum(), 1) - inter_b.sum() / max(union_b.sum(), 1)
        out.append(Difference(method, baseline, kind, len(index), float(point),
                              float(np.percentile(iou_diff, 2.5)), float(np.percentile(iou_diff, 97.5)),
                              float(mba_diff.mean()), float(np.percentile(mba_boot, 2.5)),
                              float(np.percentile(mba_boot, 97.5))))
    return out


def kind_label(kind: str) -> str:
    """A kind as a table names it: "all" leaves the near-perfect cases out, and says so."""
    return "all kinds but near-perfect" if kind == "all" else kind


def difference_table(differences: Sequence[Difference]) -> str:
    """Differences as a Markdown table, in points (IoU and mBA x 100)."""
    if not differences:
        return ""
    d0 = differences[0]
    lines = [f"| kind | n | {d0.method} - {d0.baseline}: IoU [95 % CI] | mBA [95 % CI] |", "| --- | --- | --- | --- |"]
    for d in differences:
        lines.append(f"| {kind_label(d.kind)} | {d.count} | {100 * d.iou:+.2f} [{100 * d.iou_low:+.2f}, {100 * d.iou_high:+.2f}] | "
                     f"{100 * d.mba:+.2f} [{100 * d.mba_low:+.2f}, {100 * d.mba_high:+.2f}] |")
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row], kind: str = "all") -> str:
    """One kind's rows as a Markdown table (IoU, mBA and boundary IoU in %)."""
    lines = [
        f"| method ({kind_label(kind)}) | n | IoU | mBA | boundary IoU | s / instance |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.kind == kind:
            lines.append(f"| {r.method} | {r.count} | {100 * r.iou:.2f} | {100 * r.mba:.2f} | {100 * r.boundary_iou:.2f} | {r.seconds_per_instance:.3f} |")
    return "\n".join(lines)


def rows_as_dicts(rows: Sequence[Row]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]
