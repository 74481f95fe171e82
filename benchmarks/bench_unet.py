"""Per-step latency and peak memory of the U-Net presets at 256x256 (one step = one forward of a batch).

Each configuration runs in its own subprocess so CPU peak memory (max RSS growth over the imports) is not
polluted by the previous one; on CUDA the peak is torch.cuda.max_memory_allocated. On CPU the process CPU time
per step is printed too: on a shared machine wall time swings with other load, CPU time much less (with N
threads, uncontended wall time is roughly CPU time / N). On CUDA the script also measures the card's bf16
matmul throughput and reports the official preset's bf16 achieved FLOP/s against it.

    .venv/bin/python benchmarks/bench_unet.py                       # CPU (2 threads), both presets, batch 1 and 8
    .venv/bin/python benchmarks/bench_unet.py --presets compact --batches 1 --threads 2
    .venv/bin/python benchmarks/bench_unet.py --devices cuda --dtypes fp32 fp16 bf16 --flop-batch 32
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.refiner.device import Runner  # noqa: E402
from app.refiner.unet import build_unet  # noqa: E402


def count(preset: str, size: int) -> tuple[float, int]:
    """Forward FLOPs (2 x MAC) of one sample and the parameter count, on the meta device (no compute)."""
    with torch.device("meta"):
        model = build_unet(preset)
        x, t = torch.zeros(1, 4, size, size), torch.zeros(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t)
    return float(counter.get_total_flops()), sum(p.numel() for p in model.parameters())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_one(preset: str, batch: int, size: int, device: str, dtype: str, threads: int,
            warmup: int, repeats: int, budget_s: float, compile: bool = False) -> dict[str, float]:
    """Time one configuration in this process; returns latency (ms) and peak memory (MB).

    The network runs through the app's Runner, as the pipelines call it (channels-last, autocast on CUDA);
    with ``compile`` also through ``torch.compile``, whose first warm-up call compiles and is not timed."""
    torch.set_num_threads(threads)
    rss_before = _rss_mb()
    model = Runner(build_unet(preset).eval(), torch.device(device), preset, precision=dtype, batch_size=batch, compile=compile)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, size, size, generator=gen).to(device)
    t = torch.randint(0, 6, (batch,), generator=gen).to(device)
    cuda = device == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    cpu_times: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            model(x, t)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
                if sum(times) > budget_s and len(times) >= 3:
                    break
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb() - rss_before
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3,
            "cpu_ms": statistics.median(cpu_times) * 1e3, "runs": len(times), "peak_mb": peak}


def matmul_tflops(n: int = 8192, repeats: int = 20) -> float:
    """Measured bf16 matmul throughput of the CUDA card (TFLOP/s)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12


def spawn(args: argparse.Namespace, preset: str, batch: int, device: str, dtype: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", preset, str(batch), device, dtype,
           "--size", str(args.size), "--threads", str(args.threads), "--warmup", str(args.warmup),
           "--repeats", str(args.repeats), "--budget", str(args.budget)] + (["--compile"] if args.compile else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["official", "compact"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU (default 2)")
    parser.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, + cuda if present)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "fp16", "bf16"], help="CUDA autocast dtypes")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timed runs per config (min 3 runs)")
    parser.add_argument("--compile", action="store_true", help="run through torch.compile (first call not timed)")
    parser.add_argument("--flop-batch", type=int, default=32, help="batch of the CUDA bf16 utilisation run")
    parser.add_argument("--worker", nargs=4, metavar=("PRESET", "BATCH", "DEVICE", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        preset, batch, device, dtype = args.worker
        result = run_one(preset, int(batch), args.size, device, dtype, args.threads, args.warmup, args.repeats,
                         args.budget, args.compile)
        print(json.dumps(result))
        return

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    counts = {p: count(p, args.size) for p in args.presets}
    flops = {p: c[0] for p, c in counts.items()}
    print(f"torch {torch.__version__}; input {args.size}x{args.size}; CPU threads {args.threads}")
    for p in args.presets:
        print(f"  {p}: {counts[p][1] / 1e6:.2f} M params, {flops[p] / 2e9:.1f} GMAC per sample-step")
    rows = []
    for device in devices:
        for dtype in (["fp32"] if device == "cpu" else args.dtypes):
            for batch in args.batches:
                for preset in args.presets:
                    result = spawn(args, preset, batch, device, dtype)
                    rows.append((device, dtype, preset, batch, result))
                    _print_row(rows[-1], flops[preset])
    _print_ratios(rows)
    if "cuda" in devices and "official" in args.presets:
        peak = matmul_tflops()
        result = spawn(args, "official", args.flop_batch, "cuda", "bf16")
        if "error" in result:
            print(f"official bf16 batch {args.flop_batch}: {result['error']}")
            return
        achieved = flops["official"] * args.flop_batch / (result["median_ms"] / 1e3) / 1e12
        print(f"\nCUDA bf16 matmul (8192^3): {peak:.0f} TFLOP/s measured")
        print(f"official bf16 batch {args.flop_batch}: {result['median_ms']:.1f} ms/step, {achieved:.0f} TFLOP/s "
              f"= {100 * achieved / peak:.0f}% of matmul peak (goal >= 30%)")


def _print_row(row: tuple, flops: float) -> None:
    device, dtype, preset, batch, result = row
    if "error" in result:
        print(f"{device:5} {dtype:5} {preset:9} b{batch:<3} ERROR {result['error']}")
        return
    per_sample = result["median_ms"] / batch
    tflops = flops * batch / (result["median_ms"] / 1e3) / 1e12
    cpu = f"  process CPU {result['cpu_ms']:8.1f} ms/step" if device == "cpu" else ""
    print(f"{device:5} {dtype:5} {preset:9} b{batch:<3} {result['median_ms']:9.1f} ms/step (min "
          f"{result['min_ms']:.1f}, {result['runs']} runs)  {per_sample:8.1f} ms/sample  "
          f"peak {result['peak_mb']:7.0f} MB  {tflops:6.2f} TFLOP/s{cpu}")


def _print_ratios(rows: list[tuple]) -> None:
    by_key = {(d, dt, b, p): r for d, dt, p, b, r in rows if "error" not in r}
    printed = False
    for (device, dtype, batch, preset), result in sorted(by_key.items()):
        other = by_key.get((device, dtype, batch, "official"))
        if preset == "compact" and other:
            if not printed:
                print("\ncompact speed-up over official (median ms/step ratio):")
                printed = True
            print(f"  {device} {dtype} batch {batch}: {other['median_ms'] / result['median_ms']:.1f}x")


if __name__ == "__main__":
    main()
