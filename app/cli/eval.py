"""``eval``: measure our refiner against the coarse input and classical refiners on held-out real images.

Arguments and printing only; the work is app/services/training.py (``evaluate_refiner``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli import COMMANDS
from app.services.training import EvalRequest, default_data_dir, evaluate_refiner


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help=COMMANDS["eval"].help)
    p.add_argument("--data", type=Path, default=default_data_dir(), help="folder holding the real datasets")
    p.add_argument("--weights", help="checkpoint to evaluate (name or file); default: the app's default weights")
    p.add_argument("--no-refiner", action="store_true", help="only the coarse input and the classical refiners")
    p.add_argument("--modes", default="instance,hr", help="refiner pipelines to evaluate, comma-separated")
    p.add_argument("--per-kind", type=int, default=50, help="held-out instances per coarse-mask kind (sets take turns)")
    p.add_argument("--kinds", help="coarse-mask kinds, comma-separated (default: every kind and near_perfect)")
    p.add_argument("--sources", help="only these held-out sets, comma-separated (e.g. ecssd,pets: the ones whose "
                                     "ground truth follows the pixels rather than a polygon)")
    p.add_argument("--upscale", type=float, default=1.0,
                   help="enlarge every held-out image by this factor (bicubic) first: a stand-in for high-resolution photos")
    p.add_argument("--against", default="grabcut",
                   help="baseline for the paired bootstrap intervals of every 'ours' method (default grabcut)")
    p.add_argument("--methods", help="only these methods, comma-separated (e.g. coarse,grabcut,ours-instance-det)")
    p.add_argument("--official-paste", action="store_true", help="evaluate the official paste instead of keep-native")
    p.add_argument("--no-snap", action="store_true", help="evaluate the band network without snapping to edges")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="compile the network first (not counted in the timings)")
    p.add_argument("--json", type=Path, help="also write every row, difference and per-case score as JSON here")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    request = EvalRequest(data=args.data, weights=args.weights, refiner=not args.no_refiner,
                          modes=tuple(args.modes.split(",")), per_kind=args.per_kind,
                          kinds=tuple(args.kinds.split(",")) if args.kinds else None,
                          sources=tuple(args.sources.split(",")) if args.sources else None, upscale=args.upscale,
                          methods=tuple(args.methods.split(",")) if args.methods else None, against=args.against,
                          keep_native=not args.official_paste, snap=not args.no_snap, device=args.device, compile=args.compile,
                          json=args.json)

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"  {name}: {done}/{total}", file=sys.stderr, flush=True)

    result = evaluate_refiner(request, progress, say=lambda text: print(text, file=sys.stderr))
    print(result.tables())
    if args.json:
        result.write_json(args.json)
    return 0
