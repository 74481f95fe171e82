"""``refine`` for a project's instances, ``refine-image`` for one image and mask, ``demo`` for the bundled
demo photos: argparse and printing around app/services/refine.py and app/services/demo.py."""
from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path

from app.cli import COMMANDS, add_project_argument, project_of
from app.services.distributed import Ranks, refine_sharded, torchrun_ranks
from app.services.demo import refine_demo, write_png
from app.services.refine import (
    MODES, NUM_TIMESTEPS, TOO_SMALL, MaskFiles, RefineOptions, ReviewStatus, Selection, check_categories,
    check_outputs, load_refiner, open_for_refining, read_refine_inputs, refine_image_steps, refine_project,
)
from app.services.wording import plural


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("refine", help=COMMANDS["refine"].help,
                              description="Refine the selected instances of a project and save each one with its "
                                          "provenance. Locked instances, crowd regions and empty masks are never "
                                          "refined, nor masks smaller than the refiner takes (512 px in instance "
                                          "mode, 128 in HR mode); hidden ones are. Run it again to go on after a stop.")
    add_project_argument(r)
    r.add_argument("--images-dir", type=Path, help="where the project's images are, when they moved")
    r.add_argument("--status", default="unreviewed",
                   help="review statuses to refine, comma-separated (unreviewed, accepted, rejected, needs_work) or 'all'")
    r.add_argument("--category", type=int, action="append", help="only this category id (repeatable)")
    r.add_argument("--min-score", type=float, help="only predictions scored at least this")
    r.add_argument("--redo", action="store_true", help="refine again instances whose last change was a refinement")
    r.add_argument("--limit", type=_positive, help="at most this many instances (of those large enough to refine)")
    r.add_argument("--distributed", action="store_true",
                   help="one shard of the images per process of a torchrun job (also on by itself under torchrun "
                        "with more than one process); rank 0 merges the shards into the project")
    r.add_argument("--workers", type=int, default=2,
                   help="processes decoding images ahead of the network in a distributed run (0: none)")
    _add_refine_options(r)
    r.set_defaults(handler=run_refine_project)

    p = subparsers.add_parser("refine-image", help=COMMANDS["refine-image"].help)
    p.add_argument("--image", required=True, type=Path, help="RGB image (any format OpenCV reads)")
    p.add_argument("--mask", required=True, type=Path, help="coarse mask PNG (>= 128 is foreground where values reach 128, else any nonzero)")
    p.add_argument("--out", required=True, type=Path, help="refined mask PNG to write (0/255)")
    _add_refine_options(p)
    p.add_argument("--region", type=Path, help="mask PNG: only pixels inside it may change")
    p.add_argument("--foreground", type=Path, help="mask PNG: pixels that must stay foreground")
    p.add_argument("--background", type=Path, help="mask PNG: pixels that must stay background")
    p.add_argument("--save-steps", type=Path, metavar="DIR", help="also write every step's mask here")
    p.set_defaults(handler=run_refine_image)

    d = subparsers.add_parser("demo", help=COMMANDS["demo"].help)
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the refined masks")
    _add_refine_options(d)
    d.set_defaults(handler=run_demo)


def _add_refine_options(p: argparse.ArgumentParser) -> None:
    defaults = RefineOptions()
    p.add_argument("--mode", choices=MODES, default=defaults.mode, help="instance (LR) or high-resolution (HR) pipeline")
    p.add_argument("--weights", default=defaults.weights,
                   help=f"registered checkpoint name or a file (.safetensors / official .pth); default {defaults.weights}")
    p.add_argument("--steps", type=int, default=defaults.steps,
                   help=f"reverse steps (1..{NUM_TIMESTEPS}; HR mode needs at least 2)")
    p.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the stochastic reverse process")
    reverse = p.add_mutually_exclusive_group()
    reverse.add_argument("--deterministic", dest="deterministic", action="store_const", const=True, default=None,
                         help="deterministic reverse (no sampling; the default of the band network)")
    reverse.add_argument("--stochastic", dest="deterministic", action="store_const", const=False,
                         help="stochastic reverse, as the official code (the default of the U-Net presets)")
    p.add_argument("--compile", action="store_true",
                   help="compile the network first (torch.compile): a minute or two up front, then ~35%% faster steps")
    p.add_argument("--pad", type=int, default=defaults.pad, help="context in pixels around each instance crop")
    p.add_argument("--official-paste", action="store_true",
                   help="replace the whole box with the upsampled 256-grid mask, as the official code does, "
                        "instead of keeping the coarse mask's native pixels where the network changed nothing")
    p.add_argument("--no-snap", action="store_true",
                   help="leave the boundary where the band network put it (default: where it moved the boundary, snap it "
                        "to the image's colour edges)")


def options_from(args: argparse.Namespace) -> RefineOptions:
    """The flags as the one ``RefineOptions`` the pipelines take."""
    return RefineOptions(weights=args.weights, device=args.device, mode=args.mode, steps=args.steps, seed=args.seed,
                         deterministic=args.deterministic, pad=args.pad, keep_native=not args.official_paste,
                         snap=not args.no_snap)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def selection_from(args: argparse.Namespace, options: RefineOptions) -> Selection:
    known = {s.value: s for s in ReviewStatus}
    wanted = [s.strip() for s in args.status.split(",")]
    if args.status != "all" and not set(wanted) <= set(known):
        raise ValueError(f"--status {args.status!r}: known statuses are {', '.join(known)} (or 'all')")
    statuses = None if args.status == "all" else [known[s] for s in wanted]
    return Selection(statuses=statuses, category_ids=args.category, min_score=args.min_score, redo=args.redo,
                     limit=args.limit, min_area=options.smallest_area)


def run_refine_project(args: argparse.Namespace) -> int:
    options = options_from(args)
    selection, args.project = selection_from(args, options), project_of(args, "refine")
    ranks = torchrun_ranks()
    if args.distributed and ranks is None:
        raise ValueError("--distributed: start the command with torchrun, e.g. "
                         "torchrun --nproc-per-node 2 -m app refine PROJECT --distributed")
    if ranks is not None and (args.distributed or ranks.world > 1):
        return _refine_distributed(args, options, selection, ranks)
    with open_for_refining(args.project, args.images_dir) as store:
        check_categories(store, selection)
        refiner = load_refiner(options, compile=args.compile)
        print(f"refining {args.project.name} with {refiner.name} on {refiner.device} "
              f"({options.mode} mode, {plural(options.steps, 'step')})")

        def progress(done: int, total: int, what: str) -> None:
            print(f"  [{done}/{total}] {what}", flush=True)

        try:
            report = refine_project(store, refiner, options, selection, progress)
        except KeyboardInterrupt:
            print("interrupted: every instance refined so far is saved; run the same command again to go on")
            raise
    passed = f", {report.passed_through} too small to refine" if report.passed_through else ""
    print(f"refined {report.refined} of {plural(report.selected, 'selected instance')} on "
          f"{plural(report.images, 'image')} in "
          f"{report.seconds:.1f} s: {report.changed_pixels} px changed, {report.unchanged} unchanged{passed}")
    if report.kept_out:
        print(f"  left out: {_left_out(report.kept_out, options.smallest_area)}")
    if not report.selected:
        print("  nothing selected: instances refined before are left out unless --redo, and --status picks the "
              "review statuses (default unreviewed; all: every one)")
    for problem in report.problems:
        print(f"  problem: {problem}")
    return 1 if report.selected and not report.refined else 0


def _left_out(kept_out: Mapping[str, int], smallest_area: int) -> str:
    """"11 crowd, 250 too small (under 512 px)"."""
    return ", ".join(f"{n} {reason}" + (f" (under {smallest_area} px)" if reason == TOO_SMALL else "")
                     for reason, n in sorted(kept_out.items()))


def _refine_distributed(args: argparse.Namespace, options: RefineOptions, selection: Selection, ranks: Ranks) -> int:
    def progress(done: int, total: int, seconds: float) -> None:
        rate = done / seconds if seconds > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("inf")
        bar = "#" * int(30 * done / max(1, total))
        print(f"\r[{bar:<30}] {done}/{total} instances, {rate:.2f}/s, ETA {_duration(eta)}", end="", flush=True)

    report, timing = refine_sharded(args.project, options, selection, ranks, workers=args.workers,
                                    images_dir=args.images_dir, progress=progress if ranks.leader else None)
    if ranks.leader:
        print()
    busy = timing.waiting + timing.refining + timing.pasting + timing.writing
    print(f"[rank {ranks.rank}/{ranks.world}] refined {report.refined} of {plural(report.selected, 'instance')} on "
          f"{plural(report.images, 'image')} in {report.seconds:.1f} s; network {_share(timing.refining, busy)}, waiting "
          f"for images {_share(timing.waiting, busy)}, paste + encode {_share(timing.pasting, busy)}, shard writes "
          f"{_share(timing.writing, busy)}")
    for problem in report.problems:
        print(f"  problem: {problem}")
    return 1 if report.problems and not report.refined else 0


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "-"


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def run_refine_image(args: argparse.Namespace) -> int:
    options = options_from(args)
    files = MaskFiles(args.image, args.mask, args.region, args.foreground, args.background)
    check_outputs(args.out, args.save_steps)
    inputs = read_refine_inputs(files)
    refiner = load_refiner(options, compile=args.compile)
    print(f"refining {args.image.name} with {refiner.name} on {refiner.device}")
    final = None
    started = time.perf_counter()
    for step in refine_image_steps(refiner, inputs, options):
        final = step
        print(f"  step {step.step}/{step.total} [{step.stage} t={step.timestep}] changed {step.changed[0]} px "
              f"({time.perf_counter() - started:.2f} s)", flush=True)
        if args.save_steps:
            write_png(args.save_steps / f"step_{step.step:02d}.png", step.mask(0))
    if final is None:
        raise ValueError(f"{args.image}: the refiner yielded no step")
    write_png(args.out, final.mask(0))
    print(f"wrote {args.out}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Refine every coarse instance of the demo photos and write before/after masks and an overlay."""
    result = refine_demo(args.out, options_from(args), compile=args.compile, say=print)
    print(f"refined {len(result.instances)} instances with {result.refiner} on {result.device}; "
          f"wrote {result.out}/ (red: coarse outline, green: refined outline)")
    return 0
