"""Import/export speed of the COCO/LVIS codecs against pycocotools' own ``COCO(...)`` load of the same file.

Goal (issue 3): import and export each within 2x of ``COCO(path)``. Measures coco_tiny (val) and the LVIS
val_100 sample replicated ``--copies`` times with new image and annotation ids (50 gives ~49k instances;
250 gives the size of the real LVIS v1 val set, ~245k). Each figure is the best of ``--repeat`` runs, with
the runs of what is compared taken in turn, in CPU seconds of this process (``time.process_time``: on a
shared machine wall time mostly measures the neighbours; for one-threaded code CPU time is the cost).

    .venv/bin/python benchmarks/bench_codecs.py --copies 50
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from pycocotools.coco import COCO

from app.core.formats.coco import load_coco
from app.core.formats.coco_export import save_coco

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def replicate(source: Path, target: Path, copies: int) -> tuple[int, int]:
    """Write ``copies`` copies of a COCO/LVIS file's images and annotations with fresh ids."""
    data = json.loads(source.read_text())
    image_step = max(i["id"] for i in data["images"]) + 1
    ann_step = max(a["id"] for a in data["annotations"]) + 1
    images, annotations = [], []
    for r in range(copies):
        images += [{**img, "id": img["id"] + r * image_step} for img in data["images"]]
        annotations += [
            {**ann, "id": ann["id"] + r * ann_step, "image_id": ann["image_id"] + r * image_step}
            for ann in data["annotations"]
        ]
    data["images"], data["annotations"] = images, annotations
    target.write_text(json.dumps(data))
    return len(images), len(annotations)


def best(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Best CPU time of each function over ``repeat`` rounds, the functions taking turns each round."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, spent in zip(fns, times):
            start = time.process_time()
            fn()
            spent.append(time.process_time() - start)
    return [min(t) for t in times]


def pycoco_load(path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(path))


def measure(label: str, path: Path, out_dir: Path, repeat: int) -> None:
    dataset, _ = load_coco(path)
    rle_out, poly_out = out_dir / "export_rle.json", out_dir / "export_polygon.json"
    save_coco(dataset, rle_out, kind=dataset.kind)
    t_coco, t_import, t_export, t_export_poly, t_coco_rle, t_import_rle = best([
        lambda: pycoco_load(path),
        lambda: load_coco(path),
        lambda: save_coco(dataset, rle_out, kind=dataset.kind),
        lambda: save_coco(dataset, poly_out, kind=dataset.kind, segmentation="polygon"),
        lambda: pycoco_load(rle_out),
        lambda: load_coco(rle_out),
    ], repeat)
    size_mb = path.stat().st_size / 1e6
    print(f"\n{label}: {len(dataset.images)} images, {len(dataset.instances)} instances, {size_mb:.1f} MB")
    rows = [
        ("pycocotools COCO(file)", t_coco, None),
        ("import (load_coco)", t_import, t_import / t_coco),
        ("export RLE (save_coco)", t_export, t_export / t_coco),
        ("export polygons (original kept)", t_export_poly, t_export_poly / t_coco),
        ("pycocotools COCO(our RLE export)", t_coco_rle, None),
        ("import of our RLE export", t_import_rle, t_import_rle / t_coco_rle),
    ]
    for name, seconds, ratio in rows:
        print(f"  {name:34s} {seconds:7.3f} s CPU" + (f"   {ratio:4.2f}x pycocotools" if ratio else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=50, help="copies of the LVIS val_100 sample")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"no data at {DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        measure("coco_tiny val", DATA / "coco_tiny/annotations/instances_val2017.json", out_dir, args.repeat)
        big = out_dir / "lvis_replicated.json"
        replicate(DATA / "lvis_val_100/lvis_val_100.json", big, args.copies)
        measure(f"LVIS val_100 x{args.copies}", big, out_dir, args.repeat)


if __name__ == "__main__":
    main()
