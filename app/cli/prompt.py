"""``prompt`` (boxes -> new instances) and ``find-similar`` (examples -> proposed instances): argparse and printing
around app/services/prompt.py and app/services/similar.py."""
from __future__ import annotations

import argparse
from pathlib import Path

from app.cli import COMMANDS, add_project_argument, project_of
from app.services.prompt import (
    SOURCES, PromptSettings, check_prompts, load_prompt_tool, progress_key, prompt_boxes, read_results_boxes,
    single_box,
)
from app.services.refine import NUM_TIMESTEPS, RefineOptions, open_for_refining
from app.services.similar import (
    DEFAULT_THRESHOLD, FEATURES_SUFFIX, SimilarSettings, check_examples, find_similar, load_finder, target_images,
)
from app.services.wording import plural

HEAD_HELP = ("prompt-head weights; give --head several times to average several heads (default: the shipped "
             "prompt-head-v2 and prompt-head-wide-v1)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prompt", help=COMMANDS["prompt"].help,
        description="Make new instances from boxes: a coarse mask from each box (the prompt head, GrabCut or a SAM "
                    "checkpoint), refined, saved unreviewed with its provenance. Every box is checked first: bad "
                    "input saves nothing. With --boxes, run the same command again to go on after a stop.")
    add_project_argument(p)
    p.add_argument("--images-dir", type=Path, help="where the project's images are, when they moved")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--box", type=_numbers, metavar="X0,Y0,X1,Y1", help="one box in image pixels (needs --image)")
    what.add_argument("--boxes", type=Path, metavar="RESULTS.json",
                      help="a detector's boxes in COCO results format (image_id, category_id, bbox [x, y, w, h], score)")
    p.add_argument("--image", type=int, metavar="ID", help="the image of --box")
    p.add_argument("--category", type=int, metavar="ID",
                   help="the new instance's category (--box; optional when the project has one category), or the "
                        "category of detections without one (--boxes)")
    p.add_argument("--source", choices=SOURCES, default="encoder",
                   help="coarse source: the prompt head on the frozen encoder (default), GrabCut (no weights), or SAM")
    p.add_argument("--sam-checkpoint", type=Path, metavar="FILE",
                   help="an official SAM ViT-B / ViT-L / ViT-H .pth (with --source sam)")
    p.add_argument("--head", type=Path, metavar="FILE", action="append", default=[], help=HEAD_HELP)
    _refiner_arguments(p)
    p.set_defaults(handler=run_prompt)

    f = subparsers.add_parser(
        "find-similar", help=COMMANDS["find-similar"].help,
        description="Find instances like the examples (one-shot, SG-One) on the project's images and add them as "
                    "proposals (unreviewed, scored by similarity), left out of exports until accepted. Features are "
                    f"cached beside the project (<name>{FEATURES_SUFFIX}/).")
    add_project_argument(f)
    f.add_argument("--images-dir", type=Path, help="where the project's images are, when they moved")
    f.add_argument("--instance", type=_ids, required=True, metavar="ID[,ID]",
                   help="example instance(s), all of one category (several average into one prototype)")
    f.add_argument("--images", type=_images, default=None, metavar="all|ID,...", help="images to search (default: all)")
    f.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"cosine similarity a region must reach (default {DEFAULT_THRESHOLD}; higher: fewer, surer)")
    f.add_argument("--no-outline", action="store_true",
                   help="keep the similarity regions (do not outline each with the box prompt)")
    f.add_argument("--head", type=Path, metavar="FILE", action="append", default=[], help=HEAD_HELP)
    _refiner_arguments(f)
    f.set_defaults(handler=run_find_similar)


def _refiner_arguments(p: argparse.ArgumentParser) -> None:
    defaults = RefineOptions()
    p.add_argument("--weights", default=defaults.weights,
                   help=f"refiner weights: a registered name or a file (default {defaults.weights})")
    p.add_argument("--steps", type=int, default=defaults.steps,
                   help=f"the refiner's reverse steps, 0..{NUM_TIMESTEPS} (0: keep the coarse masks)")
    p.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N or mps")


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ids separated by commas, got {text!r}") from None


def _images(text: str) -> list[int] | None:
    """``--images``: None for all of the project's images, else the ids listed."""
    return None if text.strip().lower() == "all" else list(_ids(text))


def refine_options(args: argparse.Namespace) -> RefineOptions | None:
    """The refiner the flags ask for; None for ``--steps 0`` (keep the coarse masks)."""
    if args.steps == 0:
        return None
    return RefineOptions(weights=args.weights, device=args.device, steps=args.steps)


def run_prompt(args: argparse.Namespace) -> int:
    args.project = project_of(args, "prompt")
    settings = PromptSettings(args.source, args.sam_checkpoint, tuple(args.head), refine_options(args))
    if args.box is not None and args.image is None:
        raise ValueError("--box needs --image ID (the image the box is drawn on)")
    if args.boxes is not None and args.image is not None:
        raise ValueError("--image goes with --box; --boxes names each detection's image itself")
    with open_for_refining(args.project, args.images_dir) as store:
        if args.box is not None:
            prompts, key = [single_box(store, args.image, args.box, args.category)], None
        else:
            prompts, key = read_results_boxes(args.boxes, args.category), progress_key(args.boxes)
        prompts = check_prompts(store, prompts, args.boxes)
        tool = load_prompt_tool(settings)
        refiner = "no refiner" if tool.refiner is None else f"{tool.refiner.name}, {plural(settings.refine.steps, 'step')}"
        print(f"{plural(len(prompts), 'box', 'boxes')} on {plural(len({p.image_id for p in prompts}), 'image')}: "
              f"{tool.source.name} source, "
              f"{refiner}")

        def progress(done: int, total: int, what: str) -> None:
            print(f"  [{done}/{total}] {what}", flush=True)

        try:
            report = prompt_boxes(store, tool, prompts, resume_key=key, progress=progress)
        except KeyboardInterrupt:
            print("interrupted: the images finished are saved; run the same command again to go on")
            raise
    resumed = f", {report.resumed} done by an earlier run" if report.resumed else ""
    ids = ", ".join(map(str, report.created[:20])) + (" ..." if len(report.created) > 20 else "")
    print(f"created {plural(len(report.created), 'instance')} on {plural(report.images, 'image')} in "
          f"{report.seconds:.1f} s{resumed}"
          + (f": {ids}" if ids else ""))
    for problem in report.problems:
        print(f"  problem: {problem}")
    return 1 if report.problems and not report.created else 0


def run_find_similar(args: argparse.Namespace) -> int:
    args.project = project_of(args, "find-similar")
    settings = SimilarSettings(args.threshold, not args.no_outline, tuple(args.head), refine_options(args))
    images = args.images
    with open_for_refining(args.project, args.images_dir) as store:
        check_examples(store, args.instance)
        target_images(store, images)
        finder = load_finder(args.project, settings)
        refiner = "not refined" if finder.refiner is None else f"refined by {finder.refiner.name}"
        print(f"finding instances like {', '.join(map(str, args.instance))} on "
              f"{'all images' if images is None else plural(len(images), 'image')} (threshold {settings.threshold}, "
              f"{refiner})")

        def progress(done: int, total: int, what: str) -> None:
            print(f"  [{done}/{total}] {what}", flush=True)

        report = find_similar(store, finder, args.instance, images, settings.threshold, progress=progress)
    print(f"proposed {plural(len(report.created), 'instance')} on {report.searched} of "
          f"{plural(report.images, 'image')} in "
          f"{report.seconds:.1f} s; review them (status unreviewed, sorted by score), accepted ones are exported")
    for problem in report.problems:
        print(f"  problem: {problem}")
    return 1 if report.problems and not report.searched else 0
