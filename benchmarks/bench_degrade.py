"""Time coarse-mask synthesis per kind and the classical refiners per instance, on real ECSSD masks.

Target: synthesis of a ≤ 400 px mask well under 50 ms on average (mixed kinds).

    .venv/bin/python benchmarks/bench_degrade.py [--n 40]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from app.core.classical import CLASSICAL_REFINERS
from app.refiner.degrade import COARSE_KINDS, synthesize

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ecssd"
TARGET_MS = 50.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of ECSSD images")
    args = parser.parse_args(argv)
    names = sorted((DATA / "masks").glob("*.png"))[: args.n]
    if not names:
        print(f"error: no ECSSD masks under {DATA / 'masks'}", file=sys.stderr)
        return 2
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) >= 128 for p in names]
    images = [cv2.cvtColor(cv2.imread(str(DATA / "images" / f"{p.stem}.jpg")), cv2.COLOR_BGR2RGB)
              for p in names]
    rng = np.random.default_rng(0)
    print(f"{len(masks)} ECSSD masks (≤ 400 px)")
    for kind in (*COARSE_KINDS, None):
        start = time.perf_counter()
        for m in masks:
            synthesize(m, rng, kind=kind)
        ms = (time.perf_counter() - start) / len(masks) * 1000
        budget = f"{ms / TARGET_MS:.2f}× the {TARGET_MS:.0f} ms budget"
        print(f"synthesize {kind or 'mixed':18s} {ms:7.2f} ms/mask  ({budget})")
    coarse = [synthesize(m, rng)[0] for m in masks]
    for name, refine in CLASSICAL_REFINERS.items():
        start = time.perf_counter()
        for image, c in zip(images, coarse):
            refine(image, c)
        print(f"classical {name:19s} {(time.perf_counter() - start) / len(masks) * 1000:7.1f} ms/instance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
