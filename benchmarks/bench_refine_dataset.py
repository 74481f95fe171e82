"""Instances per second of ``refine`` on a real project with 1 and 2 processes (torchrun, gloo), and where each
rank's time goes: the refiner (network and its cues), waiting for decoded images, paste + RLE encoding, shard
writes. Each run refines a fresh copy of the same project.

    .venv/bin/python benchmarks/bench_refine_dataset.py                       # coco_tiny val2017, 160 instances
    .venv/bin/python benchmarks/bench_refine_dataset.py --processes 1 2 4 --limit 400 --weights band-v1
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "coco_tiny"
LINE = re.compile(r"\[rank (\d+)/(\d+)\] refined (\d+) of \d+ instance\(s\) on \d+ image\(s\) in ([\d.]+) s; network (\d+) %, "
                  r"waiting for images (\d+) %, paste \+ encode (\d+) %, shard writes (\d+) %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=DATA / "annotations" / "instances_val2017.json")
    parser.add_argument("--images", type=Path, default=DATA / "val2017")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=160, help="instances to refine per run")
    parser.add_argument("--workers", type=int, default=1, help="image-decoding processes per rank")
    parser.add_argument("--weights", help="name or file (default: the app's default)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-snap", action="store_true", help="refine without snapping to edges")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-refine-"))
    try:
        base = work / "base.srproj"
        subprocess.run([sys.executable, "-m", "app", "import", str(args.annotations), "--images", str(args.images),
                        "--project", str(base)], check=True, capture_output=True)
        print("| processes | instances | wall s | instances / s | scaling | network % | waiting % | paste % | writes % |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        first = None
        for n in args.processes:
            project = work / f"p{n}.srproj"
            shutil.copy(base, project)
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                       "-m", "app", "refine", str(project), "--distributed", "--limit", str(args.limit),
                       "--workers", str(args.workers), "--steps", str(args.steps)]
            if args.weights:
                command += ["--weights", args.weights]
            if args.no_snap:
                command.append("--no-snap")
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
            started = time.perf_counter()
            out = subprocess.run(command, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if out.returncode:
                print(out.stdout[-3000:], out.stderr[-3000:], file=sys.stderr)
                return 1
            ranks = [m.groups() for m in LINE.finditer(out.stdout)]
            done = sum(int(r[2]) for r in ranks)
            slowest = max(float(r[3]) for r in ranks)
            rate = done / slowest
            first = first or rate
            shares = [sum(int(r[k]) * float(r[3]) for r in ranks) / sum(float(r[3]) for r in ranks) for k in (4, 5, 6, 7)]
            print(f"| {n} | {done} | {wall:.1f} | {rate:.2f} | {rate / first:.2f} | " +
                  " | ".join(f"{v:.0f}" for v in shares) + " |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
