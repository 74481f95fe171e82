"""Find similar (one-shot, SG-One): recall and precision of proposals at IoU >= 0.5, and time per image.

Held-out data only (the validation split of app/refiner/data.py, by image file name):
- Penn-Fudan: for each held-out image, the support is the largest pedestrian of the next held-out image; every
  pedestrian of the query image is ground truth.
- COCO (coco_tiny): for each category with at least three instances (>= 1024 px) in the held-out images, the
  support is its largest instance; every held-out image holding the category is a query (in the support's own
  image the support is an existing instance); ground truth is every other non-crowd instance of the category.
  Recall counts instances of >= 1024 px; a proposal matching a smaller one is not a false positive.

Proposals are matched one to one, best score first, to ground truth at IoU >= 0.5. Figures for the coarse
proposals (similarity regions outlined by the box prompt of the prompt head, unless ``--no-outline``) and, with
a refiner, the refined ones. Time per image: similarity map and proposals from cached features (with the
outlines; the refiner's time is reported apart, per proposal).

    .venv/bin/python benchmarks/bench_similar.py [--weights NAME|PATH] [--per-set 30] [--thresholds 0.4,0.5,0.6]
    .venv/bin/python benchmarks/bench_similar.py --no-refine --split train     # choose the default threshold
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.formats.coco import load_coco  # noqa: E402
from app.core.images import find_image_file, read_image_rgb  # noqa: E402
from app.core.metrics import iou  # noqa: E402
from app.refiner.data import split_of  # noqa: E402
from app.refiner.prompts import EncoderSource  # noqa: E402
from app.refiner.similar import DEFAULT_THRESHOLD, FeatureCache, SimilarFinder  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MIN_AREA = 1024


@dataclass
class Query:
    """One image to search, the support's index in ``supports``, its truth and instances already annotated."""

    image_path: Path
    support: int
    truth: list[np.ndarray]
    counted: list[bool]
    existing: list[np.ndarray] = field(default_factory=list)


@dataclass
class Task:
    name: str
    supports: list[tuple[Path, np.ndarray]]
    queries: list[Query]


def pennfudan_task(root: Path, split: str, limit: int) -> Task | None:
    folder = root / "pennfudan"
    if not folder.is_dir():
        return None
    images = [p for p in sorted((folder / "PNGImages").glob("*.png")) if split_of(f"pennfudan/{p.stem}") == split][:limit]
    people: list[list[np.ndarray]] = []
    for path in images:
        labels = cv2.imread(str(folder / "PedMasks" / f"{path.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        people.append([labels == k for k in np.unique(labels) if k != 0])
    supports = [(path, max(masks, key=lambda m: int(m.sum()))) for path, masks in zip(images, people)]
    queries = [Query(path, (i + 1) % len(images), masks, [bool(m.sum() >= MIN_AREA) for m in masks])
               for i, (path, masks) in enumerate(zip(images, people))]
    return Task("pennfudan", supports, queries)


def coco_task(root: Path, split: str, limit: int) -> Task | None:
    by_category: dict[int, list[tuple[Path, object]]] = defaultdict(list)
    for part in ("train2017", "val2017"):
        annotations = root / f"coco_tiny/annotations/instances_{part}.json"
        if not annotations.exists():
            continue
        dataset, _ = load_coco(annotations)
        for inst in dataset.instances:
            path = find_image_file(root / f"coco_tiny/{part}", dataset.images[inst.image_id])
            if path is not None and not inst.iscrowd and split_of(f"coco_{part}/{path.stem}") == split:
                by_category[inst.category_id].append((path, inst))
    supports, queries = [], []
    for category, members in sorted(by_category.items()):
        if sum(inst.area >= MIN_AREA for _, inst in members) < 3:
            continue
        support_path, support = max(members, key=lambda m: m[1].area)
        supports.append((support_path, support.mask()))
        for path in sorted({p for p, _ in members}):
            others = [inst for p, inst in members if p == path and inst is not support]
            existing = [support.mask()] if path == support_path else []
            if others:
                queries.append(Query(path, len(supports) - 1, [inst.mask() for inst in others],
                                     [inst.area >= MIN_AREA for inst in others], existing))
        if len(supports) >= limit:
            break
    return Task("coco", supports, queries) if queries else None


def match(masks: list[np.ndarray], truth: list[np.ndarray], counted: list[bool]) -> tuple[int, int, int]:
    """(true positives among proposals, proposals that count, ground truth found among the counted)."""
    used = [False] * len(truth)
    hits = found = 0
    for mask in masks:
        scores = [iou(mask, t) if not used[j] else 0.0 for j, t in enumerate(truth)]
        j = int(np.argmax(scores)) if scores else -1
        if j >= 0 and scores[j] >= 0.5:
            used[j] = True
            hits += 1
            found += counted[j]
    uncounted_hits = sum(1 for j, u in enumerate(used) if u and not counted[j])
    return hits, len(masks) - uncounted_hits, found


def run(task: Task, finder: SimilarFinder, thresholds: list[float], refining: SimilarFinder | None) -> None:
    """Figures of one task per threshold; ``refining`` (a finder with a refiner) refines the proposals, timed apart."""
    refine = refining is not None
    images: dict[Path, np.ndarray] = {}

    def load(path: Path) -> np.ndarray:
        if path not in images:
            images[path] = read_image_rgb(path)
        return images[path]

    finder.cache.precompute([(str(p), lambda p=p: load(p)) for p in {q.image_path for q in task.queries} | {p for p, _ in task.supports}])
    protos = [finder.prototype([(load(p), m)], [str(p)]) for p, m in task.supports]
    first = task.queries[0]
    finder.find(load(first.image_path), protos[first.support], key=str(first.image_path))  # loads the prompt head once
    total_truth = sum(sum(q.counted) for q in task.queries)
    print(f"\n{task.name}: {len(task.supports)} support instance(s), {len(task.queries)} query images, "
          f"{total_truth} instances to find (>= {MIN_AREA} px)")
    print(f"{'threshold':>9} {'stage':>8} {'proposals':>9} {'recall %':>8} {'precision %':>11} {'s / image':>9} {'s / proposal':>12}")
    for threshold in thresholds:
        totals = {"coarse": [0, 0, 0], "refined": [0, 0, 0]}
        seconds, refine_seconds, refined_count = 0.0, 0.0, 0
        for query in task.queries:
            image = load(query.image_path)
            started = time.perf_counter()
            proposals = finder.find(image, protos[query.support], threshold, query.existing, key=str(query.image_path))
            seconds += time.perf_counter() - started
            stages = [("coarse", [p.coarse for p in proposals])]
            if refine:
                started = time.perf_counter()
                refining.refine(image, proposals)
                refine_seconds += time.perf_counter() - started
                refined_count += len(proposals)
                stages.append(("refined", [p.mask for p in proposals]))
            for stage, masks in stages:
                hits, counted, found = match(masks, query.truth, query.counted)
                totals[stage][0] += hits
                totals[stage][1] += counted
                totals[stage][2] += found
        for stage, (hits, counted, found) in totals.items():
            if stage == "refined" and not refine:
                continue
            per_proposal = f"{refine_seconds / max(1, refined_count):.2f}" if stage == "refined" else ""
            recall, precision = 100 * found / max(1, total_truth), 100 * hits / max(1, counted)
            verdict = ""
            if task.name == "pennfudan":
                met = recall >= 60 and precision >= 50 and seconds / len(task.queries) < 0.3
                verdict = f"   goal recall >= 60 % at precision >= 50 %, < 0.3 s: {'met' if met else 'not met'}"
            print(f"{threshold:>9.2f} {stage:>8} {counted:>9} {recall:>8.1f} {precision:>11.1f} "
                  f"{seconds / len(task.queries):>9.3f} {per_proposal:>12}{verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--weights", default=None, help="refiner weights (name or file; default: the app's default)")
    parser.add_argument("--per-set", type=int, default=40, help="Penn-Fudan images / COCO categories at most")
    parser.add_argument("--thresholds", default=f"0.15,{DEFAULT_THRESHOLD},0.25")
    parser.add_argument("--split", default="val", choices=["val", "train"], help="train only to choose defaults")
    parser.add_argument("--no-refine", action="store_true", help="coarse proposals only")
    parser.add_argument("--head", type=Path, action="append", default=[],
                        help="prompt-head weights, several times for an ensemble (default: the shipped ones)")
    parser.add_argument("--no-outline", action="store_true", help="keep the similarity regions (no box prompt on them)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: a temporary one)")
    parser.add_argument("--no-self-support", action="store_true", help="the examples' prototype as it is (baseline)")
    parser.add_argument("--no-flip", action="store_true", help="outlines by the prompt head without its mirror-image average")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    refiner = None
    if not args.no_refine:
        from app.refiner.api import Refiner

        refiner = Refiner(args.weights, "cpu")
        print(f"refiner: {refiner.name}")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        source = None if args.no_outline else EncoderSource(tuple(args.head), grabcut=False, flip=not args.no_flip)
        cache = FeatureCache(args.cache or Path(tmp))
        finder = SimilarFinder(cache, source=source, self_support=not args.no_self_support)
        refining = None if refiner is None else SimilarFinder(cache, refiner)
        for task in (pennfudan_task(args.data, args.split, args.per_set), coco_task(args.data, args.split, args.per_set)):
            if task is None:
                print("a data set is missing; see ../shared/data/README.md")
                continue
            run(task, finder, thresholds, refining)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
