"""The bundled demo: four public-domain / CC0 photos (scikit-image's samples, shipped as package data so the
application does not depend on scikit-image) with coarse, hand-drawn instance polygons, so a new user can
refine something within seconds.

In the window the demo opens as an ordinary project in the user's data folder, created on first use and
reopened after, so edits made to it persist like any other project's. ``refine_demo`` refines it headless
(``segrefiner-studio demo``) and writes before / after masks and outlines.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from app.core.atomic import prepare_output, write_bytes_atomic
from app.core.formats.coco import load_coco
from app.core.images import read_image_rgb
from app.core.package_data import demo_dir
from app.core.store.project import ProjectStore
from app.core.store.importing import ProgressFn
from app.core.store.schema import PROJECT_SUFFIX
from app.refiner.options import RefineOptions
from app.services.refine import load_refiner, refined_mask

log = logging.getLogger(__name__)

DEMO_NAME = "demo" + PROJECT_SUFFIX
DEMO_JSON = "demo.json"


def demo_project_path(data_dir: Path) -> Path:
    return data_dir / DEMO_NAME


def open_demo_project(data_dir: Path, progress: ProgressFn | None = None) -> ProjectStore:
    """Open the user's demo project in ``data_dir``, creating it from the package's demo the first time.

    A demo project whose images folder is not this installation's (the application moved, or another
    installation made it) is pointed at this installation's demo photos again.
    """
    photos = demo_dir()
    path = demo_project_path(data_dir)
    if path.exists():
        store = ProjectStore.open(path)
        if not store.read_only and store.images_dir != photos.resolve():
            store.set_images_dir(photos)
        return store
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset, _report = load_coco(photos / DEMO_JSON)
    return ProjectStore.create(path, dataset, source_path=photos / DEMO_JSON, images_dir=photos, progress=progress)


@dataclass(frozen=True)
class DemoResult:
    """What ``refine_demo`` wrote: one row per instance, and the refiner it used."""

    out: Path
    refiner: str
    device: str
    instances: list[dict[str, object]]


def refine_demo(out: Path, options: RefineOptions, compile: bool = False,
                say: Callable[[str], None] = log.info) -> DemoResult:
    """Refine every coarse instance of the demo photos; write each coarse and refined mask, an overlay per
    photo (red: coarse outline, green: refined) and ``summary.json`` into ``out``."""
    prepare_output(out, folder=True)
    photos = demo_dir()
    dataset, _report = load_coco(photos / DEMO_JSON)
    refiner = load_refiner(options, compile=compile)
    summary: list[dict[str, object]] = []
    for record in dataset.images.values():
        image = read_image_rgb(photos / record.file_name)
        instances = [i for i in dataset.instances if i.image_id == record.id]
        coarse = [i.mask() for i in instances]
        say(f"refining {len(coarse)} instances of {record.file_name} with {refiner.name} on {refiner.device}")
        finals = refiner.final_patches(image, coarse, options)
        overlay = image[..., ::-1].copy()
        stem = Path(record.file_name).stem
        for k, inst in enumerate(instances):
            refined = refined_mask(finals[k], coarse[k])
            name = dataset.categories[inst.category_id].name
            write_png(out / f"{stem}_{inst.id}_{name}_coarse.png", coarse[k])
            write_png(out / f"{stem}_{inst.id}_{name}_refined.png", refined)
            _draw_outline(overlay, coarse[k], (0, 0, 255))
            _draw_outline(overlay, refined, (0, 255, 0))
            summary.append({"image": record.file_name, "instance": inst.id, "category": name,
                            "changed_px": int((coarse[k] != refined).sum())})
        _write_encoded(out / f"{stem}_overlay.png", overlay)
    write_bytes_atomic(out / "summary.json", json.dumps(summary, indent=1).encode())
    return DemoResult(out, refiner.name, refiner.device, summary)


def write_png(path: Path, mask: np.ndarray) -> None:
    """A binary mask as a 0/255 PNG, written atomically (folders made as needed)."""
    _write_encoded(path, mask.astype(np.uint8) * 255)


def _write_encoded(path: Path, pixels: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"{path}: could not encode the picture as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data.tobytes())


def _draw_outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, 2)
