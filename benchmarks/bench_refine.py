"""Time per instance of a whole refinement (cues, encoder, every reverse step, paste) on the demo photos.

Refines each instance of the bundled demo project (the masks an annotator starts from) with the given weights and
reports the median and mean wall time per instance, and the process CPU time per instance (on a shared machine
wall time swings with other load; with N threads, uncontended wall time is roughly CPU time / N). Also the
cold start: loading the network and the encoder, then the first refinement, in a fresh process.

    .venv/bin/python benchmarks/bench_refine.py                          # default weights, 2 threads, 6 steps
    .venv/bin/python benchmarks/bench_refine.py --threads 1 2 --steps 6 3 1 --modes instance hr
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.formats.coco import load_coco  # noqa: E402
from app.core.images import find_image_file, read_image_rgb  # noqa: E402
from app.core.package_data import demo_dir  # noqa: E402

DEMO = demo_dir()


def demo_instances() -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, coarse mask) of every demo instance."""
    dataset, _ = load_coco(DEMO / "demo.json")
    out = []
    for inst in dataset.instances:
        path = find_image_file(DEMO, dataset.images[inst.image_id])
        out.append((read_image_rgb(path), inst.mask()))
    return out


def run(weights: str | None, threads: int, steps: int, mode: str, repeats: int, compiled: bool,
        device: str) -> dict[str, float]:
    """Per-instance figures; with ``compiled`` the warm-up refinements (not timed) compile the network."""
    import torch

    from app.refiner.api import Refiner, RefineOptions

    torch.set_num_threads(threads)
    refiner = Refiner(weights, device, compile=compiled)
    cases = demo_instances()
    options = RefineOptions(mode=mode, steps=steps, min_area=0)  # the network's own reverse, as the app
    for image, mask in cases[:2]:
        for _ in refiner.run(image, [mask], options):
            pass
    wall, cpu = [], []
    for _ in range(repeats):
        for image, mask in cases:
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in refiner.run(image, [mask], options):
                pass
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    return {"median_s": statistics.median(wall), "mean_s": statistics.fmean(wall), "cpu_s": statistics.fmean(cpu),
            "instances": len(cases)}


def cold_start(weights: str | None, threads: int, device: str) -> dict[str, float]:
    """Import, load and first refinement in this (fresh) process."""
    started = time.perf_counter()
    import torch

    from app.refiner.api import Refiner

    torch.set_num_threads(threads)
    refiner = Refiner(weights, device)
    loaded = time.perf_counter()
    image, mask = demo_instances()[0]
    refiner.refine(image, mask)
    return {"load_s": loaded - started, "first_refine_s": time.perf_counter() - loaded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="name or file (default: the app's default weights)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, nargs="+", default=[6])
    parser.add_argument("--modes", nargs="+", default=["instance"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compiled", action="store_true", help="also time the network compiled (torch.compile)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, *rest = args.one.split(",")
        result = cold_start(args.weights, int(rest[0]), args.device) if kind == "cold" else \
            run(args.weights, int(rest[0]), int(rest[1]), rest[2], args.repeats, kind == "compiled", args.device)
        print(json.dumps(result))
        return 0
    print("| mode | network | threads | steps | median s / instance | mean | CPU s / instance |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode in args.modes:
        for kind in ("eager", "compiled") if args.compiled else ("eager",):
            for threads in args.threads:
                for steps in args.steps:
                    r = _subprocess(args, f"{kind},{threads},{steps},{mode}")
                    print(f"| {mode} | {kind} | {threads} | {steps} | {r['median_s']:.3f} | {r['mean_s']:.3f} | "
                          f"{r['cpu_s']:.3f} |", flush=True)
    for threads in args.threads:
        r = _subprocess(args, f"cold,{threads}")
        print(f"cold start, {threads} threads: load {r['load_s']:.2f} s, first refinement {r['first_refine_s']:.2f} s")
    return 0


def _subprocess(args: argparse.Namespace, one: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--one", one, "--repeats", str(args.repeats), "--device", args.device]
    if args.weights:
        command += ["--weights", args.weights]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
