"""Headless refinement: ``refine`` for a project's instances, ``refine-image`` for one image and mask, ``demo``
for the bundled demo image."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from app.core.atomic import write_bytes_atomic
from app.core.errors import DatasetError
from app.core.images import read_image_rgb, read_image_unchanged
from app.refiner.api import MODES, Refiner, RefineOptions
from app.refiner.pipeline import Guidance

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEMO = RESOURCES / "demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("refine", help="refine a project's instances and save them (resumable)")
    r.add_argument("project", type=Path, help="project file (.srproj) made by `import`")
    r.add_argument("--images-dir", type=Path, help="where the project's images are, when they moved")
    r.add_argument("--status", default="unreviewed",
                   help="review statuses to refine, comma-separated (unreviewed, accepted, rejected, needs_work) or 'all'")
    r.add_argument("--category", type=int, action="append", help="only this category id (repeatable)")
    r.add_argument("--min-score", type=float, help="only predictions scored at least this")
    r.add_argument("--redo", action="store_true", help="refine again instances already refined")
    r.add_argument("--include-crowd", action="store_true", help="refine crowd regions too")
    r.add_argument("--limit", type=int, help="at most this many instances")
    _add_refine_options(r)
    r.set_defaults(handler=run_refine_project)

    p = subparsers.add_parser("refine-image", help="refine one coarse mask of one image")
    p.add_argument("--image", required=True, type=Path, help="RGB image (any format OpenCV reads)")
    p.add_argument("--mask", required=True, type=Path, help="coarse mask PNG (nonzero or >= 128 is foreground)")
    p.add_argument("--out", required=True, type=Path, help="refined mask PNG to write (0/255)")
    _add_refine_options(p)
    p.add_argument("--region", type=Path, help="mask PNG: only pixels inside it may change")
    p.add_argument("--foreground", type=Path, help="mask PNG: pixels that must stay foreground")
    p.add_argument("--background", type=Path, help="mask PNG: pixels that must stay background")
    p.add_argument("--save-steps", type=Path, metavar="DIR", help="also write every step's mask here")
    p.set_defaults(handler=run_refine_image)

    d = subparsers.add_parser("demo", help="refine the bundled demo image headless and write the results")
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the refined masks")
    _add_refine_options(d)
    d.set_defaults(handler=run_demo)


def _add_refine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="instance", help="instance (LR) or high-resolution (HR) pipeline")
    p.add_argument("--weights", help="registered checkpoint name or a file (.safetensors / official .pth)")
    p.add_argument("--steps", type=int, default=6, help="reverse steps (1..6)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic reverse process")
    p.add_argument("--deterministic", action="store_true", help="deterministic reverse variant (no sampling)")
    p.add_argument("--compile", action="store_true",
                   help="compile the network first (torch.compile): a minute or two up front, then ~35%% faster steps")
    p.add_argument("--pad", type=int, default=20, help="context in pixels around each instance crop")
    p.add_argument("--official-paste", action="store_true",
                   help="replace the whole box with the upsampled 256-grid mask, as the official code does, "
                        "instead of keeping the coarse mask's native pixels where the network changed nothing")


def _options(args: argparse.Namespace) -> RefineOptions:
    return RefineOptions(mode=args.mode, steps=args.steps, seed=args.seed, deterministic=args.deterministic, pad=args.pad,
                         keep_native=not args.official_paste)


def _write_png(path: Path, mask: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise ValueError(f"{path}: could not encode the mask as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data.tobytes())


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A binary mask PNG of the image's size: values >= 128 are foreground (or > 0 for 0/1 masks)."""
    mask = read_image_unchanged(path)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != shape:
        raise DatasetError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {shape[1]}x{shape[0]}")
    return mask >= 128 if mask.max() > 1 else mask > 0


def _optional_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray | None:
    return None if path is None else read_mask(path, shape)


def run_refine_project(args: argparse.Namespace) -> int:
    from app.core.records import ReviewStatus
    from app.core.store.project import ProjectStore
    from app.services.refine import Selection, refine_project

    known = {s.value: s for s in ReviewStatus}
    wanted = [s.strip() for s in args.status.split(",")]
    if args.status != "all" and not set(wanted) <= set(known):
        raise ValueError(f"--status {args.status!r}: known statuses are {', '.join(known)} (or 'all')")
    statuses = None if args.status == "all" else [known[s] for s in wanted]
    selection = Selection(statuses=statuses, category_ids=args.category, min_score=args.min_score, redo=args.redo,
                          include_crowd=args.include_crowd, limit=args.limit)
    store = ProjectStore.open(args.project)
    try:
        if store.read_only:
            raise DatasetError(args.project, f"cannot write to it ({store.read_only_reason})")
        if args.images_dir is not None:
            store.set_images_dir(args.images_dir)
        refiner = Refiner(args.weights, args.device, compile=args.compile)
        print(f"refining {args.project.name} with {refiner.name} on {refiner.device} ({args.mode} mode, {args.steps} steps)")

        def progress(done: int, total: int, what: str) -> None:
            print(f"  [{done}/{total}] {what}", flush=True)

        try:
            report = refine_project(store, refiner, _options(args), selection, progress)
        except KeyboardInterrupt:
            print("interrupted: every instance refined so far is saved; run the same command again to go on")
            raise
    finally:
        store.close()
    print(f"refined {report.refined} of {report.selected} selected instance(s) on {report.images} image(s) in "
          f"{report.seconds:.1f} s: {report.changed_pixels} px changed, {report.unchanged} unchanged, "
          f"{report.passed_through} too small to refine")
    for problem in report.problems:
        print(f"  problem: {problem}")
    return 1 if report.problems and not report.refined else 0


def run_refine_image(args: argparse.Namespace) -> int:
    image = read_image_rgb(args.image)
    shape = image.shape[:2]
    coarse = read_mask(args.mask, shape)
    guidance = Guidance(
        region=_optional_mask(args.region, shape),
        foreground=_optional_mask(args.foreground, shape),
        background=_optional_mask(args.background, shape),
    )
    refiner = Refiner(args.weights, args.device, compile=args.compile)
    print(f"refining {args.image.name} ({shape[1]}x{shape[0]}) with {refiner.name} on {refiner.device}")
    final = None
    started = time.perf_counter()
    for step in refiner.run(image, [coarse], _options(args), guidance):
        final = step
        print(f"  step {step.step}/{step.total} [{step.stage} t={step.timestep}] changed {step.changed[0]} px ({time.perf_counter() - started:.2f} s)", flush=True)
        if args.save_steps:
            _write_png(args.save_steps / f"step_{step.step:02d}.png", step.mask(0))
    assert final is not None
    _write_png(args.out, final.mask(0))
    print(f"wrote {args.out}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Refine every coarse instance of the demo image and write before/after masks and an overlay."""
    from app.core.formats.coco import load_coco

    dataset, _report = load_coco(DEMO / "demo.json")
    refiner = Refiner(args.weights, args.device, compile=args.compile)
    out: Path = args.out
    summary = []
    for record in dataset.images.values():
        image = read_image_rgb(DEMO / record.file_name)
        instances = [i for i in dataset.instances if i.image_id == record.id]
        coarse = [i.mask() for i in instances]
        print(f"refining {len(coarse)} instances of {record.file_name} with {refiner.name} on {refiner.device}")
        refined = {}
        for step in refiner.run(image, coarse, _options(args)):
            print(f"  step {step.step}/{step.total} changed {sum(step.changed)} px", flush=True)
            if step.final:
                refined.update({i: r.full_mask(step.image_size) for i, r in zip(step.indices, step.results)})
        overlay = image[..., ::-1].copy()
        for k, inst in enumerate(instances):
            name = dataset.categories[inst.category_id].name
            _write_png(out / f"{Path(record.file_name).stem}_{inst.id}_{name}_coarse.png", coarse[k])
            _write_png(out / f"{Path(record.file_name).stem}_{inst.id}_{name}_refined.png", refined[k])
            _draw_outline(overlay, coarse[k], (0, 0, 255))
            _draw_outline(overlay, refined[k], (0, 255, 0))
            summary.append({"image": record.file_name, "instance": inst.id, "category": name, "changed_px": int((coarse[k] != refined[k]).sum())})
        ok, data = cv2.imencode(".png", overlay)
        write_bytes_atomic(out / f"{Path(record.file_name).stem}_overlay.png", data.tobytes())
    write_bytes_atomic(out / "summary.json", json.dumps(summary, indent=1).encode())
    print(f"wrote {out}/ (red: coarse outline, green: refined outline)")
    return 0


def _draw_outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, 2)
