"""Pack ../shared/data into a small copy with the same layout, for training on a lent GPU machine.

Only 64 MiB of the work tree travels to the device machine and ../shared does not, so this writes the
training sets re-encoded as JPEG (images) and PNG (masks, nearest-neighbour resized) under an ignored
folder; `segrefiner-studio train --data <that folder>` then reads it exactly like ../shared/data.
COCO / LVIS images keep their size (their polygons are in image coordinates) and are re-encoded.

    python scripts/pack_training_data.py --out .cache/train-pack --max-side 384 --quality 85
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from app.core.images import read_image_rgb, read_image_unchanged

log = logging.getLogger("pack")
ROOT = Path(__file__).resolve().parents[1]
SETS = ("ecssd", "pets", "pennfudan", "coco_train", "coco_val", "lvis")


def _scale(shape: tuple[int, ...], max_side: int) -> float:
    return min(1.0, max_side / max(shape[:2]))


def _resized(array: np.ndarray, scale: float, nearest: bool) -> np.ndarray:
    if scale >= 1.0:
        return array
    h, w = array.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def pack_pairs(images: Path, masks: Path, out_images: Path, out_masks: Path, mask_suffix: str, max_side: int, quality: int, image_ext: str = ".jpg") -> int:
    """Images and their masks (any PNG mask: binary, trimap, label map), resized together."""
    out_images.mkdir(parents=True, exist_ok=True)
    out_masks.mkdir(parents=True, exist_ok=True)
    count = 0
    for mask_path in sorted(masks.glob("*.png")):
        stem = mask_path.stem[: -len(mask_suffix)] if mask_suffix else mask_path.stem
        matches = [p for p in images.glob(f"{stem}.*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
        if not matches:
            continue
        image = read_image_rgb(matches[0])
        mask = read_image_unchanged(mask_path)
        scale = _scale(image.shape, max_side)
        cv2.imwrite(str(out_images / f"{stem}{image_ext}"), cv2.cvtColor(_resized(image, scale, False), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        cv2.imwrite(str(out_masks / mask_path.name), _resized(mask, scale, True))
        count += 1
    return count


def reencode(images: Path, out: Path, quality: int) -> None:
    """JPEG images re-encoded at ``quality``, same names and sizes."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(images.glob("*.jpg")):
        image = read_image_rgb(path)
        cv2.imwrite(str(out / path.name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "train-pack")
    parser.add_argument("--max-side", type=int, default=384)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS),
                        help="which sets to pack (default: all; coco_val alone is the GPU check's refine sample)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    src, out = args.data, args.out
    if out.exists():
        shutil.rmtree(out)
    if "ecssd" in args.sets:
        n = pack_pairs(src / "ecssd/images", src / "ecssd/masks", out / "ecssd/images", out / "ecssd/masks", "", args.max_side, args.quality)
        log.info("ecssd: %d", n)
    if "pets" in args.sets:
        n = pack_pairs(src / "oxford_pets/images", src / "oxford_pets/annotations/trimaps", out / "oxford_pets/images", out / "oxford_pets/annotations/trimaps", "", args.max_side, args.quality)
        log.info("pets: %d", n)
    if "pennfudan" in args.sets:
        n = pack_pairs(src / "pennfudan/PNGImages", src / "pennfudan/PedMasks", out / "pennfudan/PNGImages", out / "pennfudan/PedMasks", "_mask", args.max_side, args.quality)
        log.info("pennfudan: %d", n)
    if {"coco_train", "coco_val"} & set(args.sets):
        shutil.copytree(src / "coco_tiny/annotations", out / "coco_tiny/annotations")
    for name, part in (("coco_train", "coco_tiny/train2017"), ("coco_val", "coco_tiny/val2017"), ("lvis", "lvis_val_100/images")):
        if name in args.sets:
            reencode(src / part, out / part, args.quality)
    if "lvis" in args.sets:
        shutil.copy2(src / "lvis_val_100/lvis_val_100_present7.json", out / "lvis_val_100/lvis_val_100_present7.json")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("packed %s: %.1f MiB", out, size / 2**20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
