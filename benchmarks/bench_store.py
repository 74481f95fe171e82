"""Scale benchmark of the project store on an LVIS-sized file, against pycocotools on the same file.

Generates a file the size of LVIS v1 val (20k images, 245k instances) by replicating the real sample
../shared/data/lvis_val_100/lvis_val_100.json with new ids, then measures, each phase in a fresh
subprocess (so every peak RSS is that phase's own):
- import: ``load_coco`` (parse, polygons checked and kept as text; rasterised on first use) and
  ``ProjectStore.create`` into a new project;
- open: ``ProjectStore.open`` of the existing project, then what the first screen asks for;
- export: the project to COCO JSON (``write_coco`` fed by the store's streams), in the default mode (unedited
  annotations as imported) and with ``segmentation="rle"`` (every polygon rasterised);
- stats: ``segrefiner-studio stats`` of the project, the whole command (interpreter start included), median of 3;
- pycocotools: ``COCO(file)`` load, ``annToRLE`` of every annotation, ``maskUtils.encode`` of the masks.
Goals (issue 3): open < 2 s and < 500 MB; import and export each within 2x of ``COCO(file)``'s load time.
Goal (issue 16): stats <= 1 s.

Usage: .venv/bin/python benchmarks/bench_store.py [--copies 200] [--extra 248] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "lvis_val_100" / "lvis_val_100.json"
ENCODE_SAMPLE = 10_000  # masks decoded and re-encoded for the maskUtils.encode figure (extrapolated)


def generate(out: Path, copies: int, extra: int) -> dict[str, int]:
    """Replicate the sample: ``copies`` copies of its images, each with every annotation once and the first
    ``extra`` a second time (new ids throughout; LVIS v1 val has 12.4 annotations per image, the sample 9.8)."""
    data = json.loads(SAMPLE.read_text())
    images, annotations = [], []
    n_img = len(data["images"])
    for k in range(copies):
        new_image_id = {}
        for i, img in enumerate(data["images"]):
            new_image_id[img["id"]] = k * n_img + i + 1
            images.append({**img, "id": k * n_img + i + 1, "file_name": f"{k:04d}_{img['file_name']}"})
        for ann in data["annotations"] + data["annotations"][:extra]:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": new_image_id[ann["image_id"]]})
    out.write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    return {"images": len(images), "annotations": len(annotations), "bytes": out.stat().st_size}


# ------------------------------------------------------------------------------------------- phases
class Clock:
    """Wall and CPU seconds since it was made: the machine may be shared, CPU time is the steadier one."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_s": time.process_time() - self.cpu}


def phase_import(work: Path) -> dict[str, float]:
    from app.core.formats.coco import load_coco
    from app.core.gc_pause import paused_gc
    from app.core.store.project import ProjectStore

    with paused_gc():  # as the import command does
        clock = Clock()
        dataset, report = load_coco(work / "lvis.json")
        parse = clock.read()
        ProjectStore.create(work / "lvis.srproj", dataset).close()
        total = clock.read()
    return {**total, "parse_s": parse["seconds"], "parse_cpu_s": parse["cpu_s"], "problems": len(report.problems),
            "instances": len(dataset.instances), "project_mb": (work / "lvis.srproj").stat().st_size / 2**20}


def phase_open(work: Path) -> dict[str, float]:
    from app.core.store.project import ProjectStore
    from app.core.store.query import InstanceFilter

    baseline = _peak_rss_mb()
    clock = Clock()
    store = ProjectStore.open(work / "lvis.srproj")
    opened = clock.read()
    images = store.images()
    state = store.session_state()
    counts = store.counts_by_status()
    per_image = store.counts_by_image()
    masks = [inst.mask() for inst in store.instances_for_image(images[0].id)]
    listing = store.list_instances(InstanceFilter(sort_by="area", descending=True, limit=500))
    first_screen = clock.read()["seconds"]
    store.close()
    assert state == {} and len(images) and sum(counts.values()) and per_image and masks and listing
    return {**opened, "first_screen_s": first_screen, "baseline_rss_mb": baseline}


def phase_export(work: Path, segmentation: str = "source") -> dict[str, float]:
    from app.core.formats.coco_export import write_coco
    from app.core.gc_pause import paused_gc
    from app.core.store.project import ProjectStore

    clock = Clock()
    with paused_gc(), ProjectStore.open(work / "lvis.srproj", read_only=True) as store:  # as the export command
        report = write_coco(work / "export.json", store.extra, store.images(), store.categories(),
                            store.iter_instances(), kind="coco", segmentation=segmentation)
    return {**clock.read(), "annotations": report.counts["annotations"]}


def phase_export_rle(work: Path) -> dict[str, float]:
    return phase_export(work, "rle")


def phase_stats(work: Path) -> dict[str, float]:
    """The ``stats`` command as a user runs it; its own start-up (imports) is part of the figure."""
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "app", "stats", "--project", str(work / "lvis.srproj")], cwd=REPO,
                       check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return {"seconds": sorted(runs)[1], "min_s": min(runs), "max_s": max(runs)}


def phase_coco_load(work: Path) -> dict[str, float]:
    from pycocotools.coco import COCO

    clock = Clock()
    COCO(str(work / "lvis.json"))
    return clock.read()


def phase_encode(work: Path) -> dict[str, float]:
    """annToRLE of every annotation (what any importer must do with polygons) and maskUtils.encode of the
    decoded masks (timed on ENCODE_SAMPLE masks, one at a time, scaled to all)."""
    import numpy as np
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    coco = COCO(str(work / "lvis.json"))
    clock = Clock()
    rles = [coco.annToRLE(ann) for ann in coco.anns.values()]
    result = clock.read()
    encode_s = 0.0
    for rle in rles[:ENCODE_SAMPLE]:
        mask = np.asfortranarray(mask_utils.decode(rle))
        t0 = time.perf_counter()
        mask_utils.encode(mask)
        encode_s += time.perf_counter() - t0
    return {**result, "encode_all_s": encode_s * len(rles) / min(len(rles), ENCODE_SAMPLE)}


PHASES = {"import": phase_import, "open": phase_open, "export": phase_export, "export_rle": phase_export_rle,
          "stats": phase_stats, "coco_load": phase_coco_load, "encode": phase_encode}


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which (unlike ru_maxrss) does not carry over
    the parent's memory from before the exec that started this phase."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def run_phase(name: str, work: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--work", str(work)], cwd=REPO, check=True,
        capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=200, help="copies of the sample's 100 images")
    parser.add_argument("--extra", type=int, default=248, help="annotations repeated twice per copy")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, str(REPO))
        result = PHASES[args.phase](args.work)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return
    if not SAMPLE.is_file():
        sys.exit(f"needs the real LVIS sample at {SAMPLE}")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        sizes = generate(work / "lvis.json", args.copies, args.extra)
        print(f"generated {sizes['images']} images, {sizes['annotations']} annotations, "
              f"{sizes['bytes'] / 2**20:.0f} MB in {time.perf_counter() - t0:.0f} s", flush=True)
        results = {}
        for name in ("coco_load", "encode", "import", "open", "stats", "export", "export_rle"):
            results[name] = run_phase(name, work)
            print(f"  {name}: {json.dumps(results[name])}", flush=True)
        report(results)


def report(r: dict[str, dict[str, float]]) -> None:
    load = r["coco_load"]
    imp, opn, exp, exp_rle = r["import"], r["open"], r["export"], r["export_rle"]

    def ratio(phase: dict[str, float]) -> str:
        return (f"{phase['seconds'] / load['seconds']:.2f}x load wall, {phase['cpu_s'] / load['cpu_s']:.2f}x CPU "
                "(goal <= 2x)")

    rows = [
        ("pycocotools COCO(file) load", load, ""),
        ("pycocotools annToRLE, all annotations", r["encode"], ""),
        ("pycocotools encode, all masks (extrapolated)", {"seconds": r["encode"]["encode_all_s"]}, ""),
        ("import (parse + checks + store)", imp,
         f"{ratio(imp)}; parse {imp['parse_s']:.1f} s ({imp['parse_cpu_s']:.1f} CPU)"),
        ("open existing project", opn,
         f"goal < 2 s, < 500 MB; first screen {opn['first_screen_s']:.2f} s; "
         f"interpreter + numpy + pycocotools alone {opn['baseline_rss_mb']:.0f} MB"),
        ("stats command (median of 3, start-up included)", r["stats"],
         f"goal <= 1 s; {r['stats']['min_s']:.2f}-{r['stats']['max_s']:.2f} s"),
        ("export to COCO JSON (default: as imported)", exp, ratio(exp)),
        ("export to COCO JSON, RLE for every instance", exp_rle, ratio(exp_rle)),
    ]
    print(f"\n{'measure':<48} {'wall s':>7} {'CPU s':>7} {'peak MB':>8}  notes")
    for name, phase, note in rows:
        cpu = f"{phase['cpu_s']:.2f}" if "cpu_s" in phase else ""
        rss = f"{phase['peak_rss_mb']:.0f}" if "peak_rss_mb" in phase else ""
        print(f"{name:<48} {phase['seconds']:>7.2f} {cpu:>7} {rss:>8}  {note}")
    print(f"project file {imp['project_mb']:.0f} MB for {imp['instances']} instances")


if __name__ == "__main__":
    main()
