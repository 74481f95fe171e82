"""Picture of where a checkpoint helps most and where it hurts: held-out cases ranked by IoU change.

Builds the evaluation's held-out cases (the same seed as ``eval``), refines each with the given weights, and
writes a grid: one row per case, the ``--best`` largest gains then the ``--worst`` largest losses; columns are
the image with the ground-truth contour (green), the coarse mask (red) and the refined mask (blue), each
labelled with its IoU. For the model card's "known failure cases".

    .venv/bin/python scripts/refine_cases.py --weights band-v1 --out app/weights/cases-band-v1.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from degrade_grid import DEFAULT_DATA, cell, write_grid  # noqa: E402

from app.core.metrics import iou  # noqa: E402
from app.refiner.api import Refiner  # noqa: E402
from app.refiner.data import shared_sources  # noqa: E402
from app.refiner.evaluate import build_cases  # noqa: E402

BLUE = (255, 120, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint name or file (default: the app's default weights)")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--per-kind", type=int, default=8, help="held-out cases per coarse kind")
    parser.add_argument("--best", type=int, default=3)
    parser.add_argument("--worst", type=int, default=5)
    parser.add_argument("--mode", default="instance", choices=("instance", "hr"))
    reverse = parser.add_mutually_exclusive_group()
    reverse.add_argument("--deterministic", dest="deterministic", action="store_const", const=True, default=None,
                         help="deterministic reverse")
    reverse.add_argument("--stochastic", dest="deterministic", action="store_const", const=False,
                         help="stochastic reverse (default: the network's own, as the app)")
    args = parser.parse_args(argv)
    sources = shared_sources(args.data, "val")
    if not sources:
        print(f"error: no held-out data in {args.data}", file=sys.stderr)
        return 2
    cases = build_cases(sources, args.per_kind)
    refiner = Refiner(args.weights, "cpu")
    scored = []
    for n, case in enumerate(cases):
        refined = refiner.refine(case.example.image, case.coarse, mode=args.mode, deterministic=args.deterministic,
                                 min_area=0)
        # Scored as the evaluation scores it: the Pets trimaps' unknown band is no one's error.
        ignore = case.example.ignore
        before, after = iou(case.coarse, case.example.mask, ignore), iou(refined, case.example.mask, ignore)
        scored.append((after - before, before, after, case, refined))
        print(f"  {n + 1}/{len(cases)} {case.kind}: IoU {before:.3f} -> {after:.3f}", file=sys.stderr, flush=True)
    scored.sort(key=lambda s: s[0], reverse=True)
    picked = scored[: args.best] + scored[len(scored) - args.worst:]
    rows = []
    for gain, before, after, case, refined in picked:
        bgr = np.ascontiguousarray(case.example.image[..., ::-1])
        gt = case.example.mask
        rows.append(np.hstack([
            cell(bgr, gt, None, f"{case.kind} ({gain:+.3f})"),
            cell(bgr, gt, case.coarse, f"coarse {before:.3f}"),
            cell(bgr, gt, refined, f"refined {after:.3f}", BLUE),
        ]))
    if not write_grid(args.out, rows):
        return 1
    print(f"wrote {args.out}: best {args.best} and worst {args.worst} of {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
