"""``eval``: measure our refiner against the coarse input and classical refiners on held-out real images."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from app.cli.train import DEFAULT_DATA
from app.core.atomic import write_text_atomic
from app.refiner.api import Refiner
from app.refiner.data import shared_sources
from app.refiner.degrade import ALL_KINDS
from app.refiner.evaluate import (
    NEAR_PERFECT,
    build_cases,
    difference_table,
    markdown_table,
    methods_for,
    paired_bootstrap,
    rows_as_dicts,
    score_cases,
    summarize,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate the refiner and classical baselines on held-out images")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the real datasets")
    p.add_argument("--weights", help="checkpoint to evaluate (name or file); default: the app's default weights")
    p.add_argument("--no-refiner", action="store_true", help="only the coarse input and the classical refiners")
    p.add_argument("--modes", default="instance,hr", help="refiner pipelines to evaluate, comma-separated")
    p.add_argument("--per-kind", type=int, default=50, help="held-out instances per coarse-mask kind (sets take turns)")
    p.add_argument("--kinds", default=",".join((*ALL_KINDS, NEAR_PERFECT)), help="coarse-mask kinds, comma-separated")
    p.add_argument("--upscale", type=float, default=1.0,
                   help="enlarge every held-out image by this factor (bicubic) first: a stand-in for high-resolution photos")
    p.add_argument("--against", default="grabcut",
                   help="baseline for the paired bootstrap intervals of every 'ours' method (default grabcut)")
    p.add_argument("--methods", help="only these methods, comma-separated (e.g. coarse,grabcut,ours-instance-det)")
    p.add_argument("--official-paste", action="store_true", help="evaluate the official paste instead of keep-native")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="compile the network first (not counted in the timings)")
    p.add_argument("--json", type=Path, help="also write every row as JSON here")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    sources = shared_sources(args.data, "val")
    if not sources:
        raise FileNotFoundError(f"{args.data}: no held-out data found")
    cases = build_cases(sources, args.per_kind, kinds=args.kinds.split(","), upscale=args.upscale)
    refiner = None if args.no_refiner else Refiner(args.weights, args.device, compile=args.compile)
    if refiner is not None and args.compile:
        print("compiling the network (a minute or two)", file=sys.stderr)
        refiner.refine(cases[0].example.image, cases[0].coarse, min_area=0)
    methods = methods_for(refiner, args.modes.split(","), keep_native=not args.official_paste)
    if args.methods:
        wanted = args.methods.split(",")
        unknown = sorted(set(wanted) - set(methods))
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(methods)}")
        methods = {name: methods[name] for name in wanted}
    print(f"{len(cases)} held-out instances x {len(methods)} methods", file=sys.stderr)

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"  {name}: {done}/{total}", file=sys.stderr, flush=True)

    scored = score_cases(cases, methods, progress)
    rows = summarize(cases, scored)
    for kind in ["all", *dict.fromkeys(c.kind for c in cases)]:
        print(markdown_table(rows, kind))
        print()
    differences = []
    if args.against in scored:
        for name in scored:
            if name.startswith("ours"):
                diff = paired_bootstrap(cases, scored, name, args.against)
                differences += diff
                print(difference_table(diff))
                print()
    if args.json:
        write_text_atomic(args.json, json.dumps({
            "cases": [{"kind": c.kind, "source": c.source, "key": c.example.key} for c in cases],
            "rows": rows_as_dicts(rows),
            "differences": [asdict(d) for d in differences],
            "per_case": {name: [{"iou": r.scores.iou, "mba": r.scores.mba, "boundary_iou": r.scores.boundary_iou,
                                 "seconds": r.seconds} for r in results] for name, results in scored.items()},
        }, indent=1))
    return 0
