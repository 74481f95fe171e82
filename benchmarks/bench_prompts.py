"""Box and click prompts on held-out instances: mean IoU from ground-truth boxes, and NoC@85 / NoC@90.

Held-out data only (the validation split of app/refiner/data.py): Penn-Fudan, COCO (coco_tiny, both parts),
ECSSD and Oxford-IIIT Pets (the trimap's unknown band ignored in IoU and included in the box): ``--per-set``
instances of each with at least 1024 pixels, drawn in a fixed random order.

Box: the ground truth's bounding box -> coarse source -> refiner. Methods: each coarse source alone (GrabCut
from the box; the prompt head on the frozen encoder, then GrabCut from its probability) and followed by the
refiner (``--weights``, default: the app's default). Mean IoU (%) per set and over the sets' means, time per
box (wall and process CPU; the machine may be shared: CPU time varies less).

Clicks (NoC, the interactive-segmentation standard): start from nothing; each click goes to the centre of the
largest error region of the method's current mask (positive in a missed region, negative in an extra one);
NoC@k is the number of clicks until IoU >= k (``--max-clicks`` when never). "grabcut" is OpenCV GrabCut seeded
with all the clicks so far (the whole mask re-segmented each time); ours is the click tool (the prompt head's
proposal, changes kept near the click, then the refiner limited to them).

    .venv/bin/python benchmarks/bench_prompts.py [--weights NAME|PATH] [--per-set 40] [--click-per-set 16] [--no-flip]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.metrics import iou  # noqa: E402
from app.refiner.data import Example, shared_sources  # noqa: E402
from app.refiner.prompts import Click, EncoderSource, GrabCutSource, Prompt, PromptTool, error_clicks  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"pennfudan": ("pennfudan",), "coco": ("coco_train2017", "coco_val2017"), "ecssd": ("ecssd",), "pets": ("pets",)}


@dataclass
class Tally:
    ious: dict[str, list[float]] = field(default_factory=dict)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def held_out(root: Path, per_set: int, seed: int = 2026) -> dict[str, list[Example]]:
    """Up to ``per_set`` held-out instances of >= 1024 px per set, drawn in a fixed random order (the same every
    run) so that one crowded image does not fill a set."""
    sources = {s.name: s for s in shared_sources(root, "val")}
    out: dict[str, list[Example]] = {}
    for name, parts in SETS.items():
        pool = [(sources[part], i) for part in parts if part in sources for i in range(len(sources[part]))]
        examples: list[Example] = []
        for k in np.random.default_rng(seed).permutation(len(pool)):
            if len(examples) >= per_set:
                break
            source, index = pool[int(k)]
            example = source.load(index)
            if example.mask.sum() >= 1024:
                examples.append(example)
        if examples:
            out[name] = examples
    return out


def truth_box(example: Example) -> tuple[int, int, int, int]:
    whole = example.mask if example.ignore is None else example.mask | example.ignore
    x, y, w, h = cv2.boundingRect(whole.astype(np.uint8))
    return x, y, x + w, y + h


def bench_boxes(data: dict[str, list[Example]], tools: dict[str, PromptTool]) -> None:
    print("\nBox prompt: mean IoU % from the ground-truth box (held-out instances)")
    header = f"{'method':<22}" + "".join(f"{name:>11}" for name in data) + f"{'mean':>8}{'wall s/box':>12}{'cpu s/box':>11}"
    print(header)
    overall: dict[str, tuple[float, float]] = {}
    for method, tool in tools.items():
        tally = Tally()
        for name, examples in data.items():
            for example in examples:
                wall, cpu = time.perf_counter(), time.process_time()
                result = tool.box(example.image, truth_box(example))
                tally.wall.append(time.perf_counter() - wall)
                tally.cpu.append(time.process_time() - cpu)
                tally.ious.setdefault(name, []).append(100 * iou(result.mask, example.mask, example.ignore))
        means = [float(np.mean(tally.ious[name])) for name in data]
        overall[method] = (float(np.mean(means)), float(np.mean(tally.wall)))
        print(f"{method:<22}" + "".join(f"{m:>11.2f}" for m in means) + f"{np.mean(means):>8.2f}"
              f"{np.mean(tally.wall):>12.2f}{np.mean(tally.cpu):>11.2f}", flush=True)
    baseline = overall.get("grabcut")
    if baseline is None:
        return
    for method, (mean, wall) in overall.items():
        if method != "grabcut":
            print(f"{method}: {mean - baseline[0]:+.2f} IoU over GrabCut from the box, {wall / baseline[1]:.2f}x its time; "
                  f"goal >= 85 IoU and >= +3: {'met' if mean >= 85 and mean - baseline[0] >= 3 else 'not met'}, "
                  f"< 1 s per box: {'met' if wall < 1 else 'not met'} (wall, this machine)")


def clicks_to(example: Example, step, targets: tuple[float, ...], max_clicks: int) -> dict[float, int]:
    """Clicks needed to reach each IoU target (``max_clicks`` when never) for one method ``step``."""
    mask = np.zeros(example.mask.shape, bool)
    truth = example.mask if example.ignore is None else example.mask & ~example.ignore
    reached: dict[float, int] = {}
    clicks: list[Click] = []
    for n in range(1, max_clicks + 1):
        seen = mask if example.ignore is None else np.where(example.ignore, truth, mask)  # no click in the unknown band
        candidates = error_clicks(seen, truth, 1)
        if not candidates:
            break
        clicks.append(candidates[0])
        mask = step(example.image, mask, clicks)
        score = iou(mask, example.mask, example.ignore)
        for target in targets:
            if target not in reached and score >= target:
                reached[target] = n
        if len(reached) == len(targets):
            break
    return {t: reached.get(t, max_clicks) for t in targets}


def bench_clicks(data: dict[str, list[Example]], methods: dict[str, object], per_set: int, max_clicks: int) -> None:
    targets = (0.85, 0.90)
    print(f"\nClicks: NoC@85 / NoC@90 (mean clicks, at most {max_clicks}), held-out instances, {per_set} per set")
    print(f"{'method':<22}" + "".join(f"{name:>14}" for name in data) + f"{'mean':>14}{'cpu s/click':>13}")
    for method, step in methods.items():
        per_set_means = []
        cpu, count = 0.0, 0
        cells = []
        for name, examples in data.items():
            rows = []
            for example in examples[:per_set]:
                started = time.process_time()
                rows.append(clicks_to(example, step, targets, max_clicks))
                cpu += time.process_time() - started
                count += rows[-1][targets[0]]
            means = tuple(float(np.mean([r[t] for r in rows])) for t in targets)
            per_set_means.append(means)
            cells.append(f"{means[0]:.2f} / {means[1]:.2f}")
        overall = tuple(float(np.mean([m[k] for m in per_set_means])) for k in range(len(targets)))
        print(f"{method:<22}" + "".join(f"{c:>14}" for c in cells) + f"{overall[0]:>7.2f} / {overall[1]:.2f}"
              f"{cpu / max(1, count):>13.2f}   goal NoC@85 <= 5: {'met' if overall[0] <= 5 else 'not met'}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--weights", default=None, help="refiner weights (name or file; default: the app's default)")
    parser.add_argument("--head", type=Path, action="append", default=[],
                        help="prompt-head weights, several times for an ensemble (default: the shipped ones)")
    parser.add_argument("--per-set", type=int, default=40, help="box prompt: instances per set")
    parser.add_argument("--click-per-set", type=int, default=16, help="clicks: instances per set (0: skip; 8 were too few to decide a goal)")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--steps", type=int, default=6, help="the refiner's reverse steps")
    parser.add_argument("--no-refine", action="store_true", help="coarse sources only")
    parser.add_argument("--no-flip", action="store_true", help="the prompt head without its mirror-image average")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = held_out(args.data, max(args.per_set, args.click_per_set))
    if not data:
        print(f"no held-out data under {args.data}; see ../shared/data/README.md")
        return 1
    print("instances per set: " + ", ".join(f"{name} {min(len(e), args.per_set)}" for name, e in data.items()))
    flip = not args.no_flip
    grabcut, encoder = GrabCutSource(), EncoderSource(tuple(args.head), flip=flip)
    tools: dict[str, PromptTool] = {"grabcut": PromptTool(grabcut), "encoder": PromptTool(encoder),
                                    "encoder (no grabcut)": PromptTool(EncoderSource(tuple(args.head), grabcut=False, flip=flip))}
    refined: dict[str, PromptTool] = {}
    if not args.no_refine:
        from app.refiner.api import Refiner
        from app.refiner.options import RefineOptions

        refiner = Refiner(args.weights, "cpu")
        options = RefineOptions(steps=args.steps)
        print(f"refiner: {refiner.name}, {args.steps} steps")
        refined = {"grabcut + refiner": PromptTool(grabcut, refiner, options),
                   "encoder + refiner": PromptTool(encoder, refiner, options)}
    bench_boxes({k: v[: args.per_set] for k, v in data.items()}, {**tools, **refined})
    if args.click_per_set:
        methods: dict[str, object] = {
            "grabcut": lambda image, mask, clicks: grabcut.segment(image, Prompt(clicks=tuple(clicks), previous=mask)),
            "encoder": lambda image, mask, clicks: tools["encoder"].click(image, mask, clicks).mask,
        }
        if refined:
            methods["encoder + refiner"] = lambda image, mask, clicks: refined["encoder + refiner"].click(image, mask, clicks).mask
        bench_clicks(data, methods, args.click_per_set, args.max_clicks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
