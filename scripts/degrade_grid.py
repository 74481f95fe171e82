"""Picture grid of synthetic coarse masks, to check by eye that each kind looks like the error it mimics.

Rows are real examples from ECSSD, Oxford Pets and Penn-Fudan; columns are the ground truth, then one coarse
mask per kind in COARSE_KINDS. Each cell shows the image cropped around the object, the GT contour in green
and the coarse mask as a red overlay with its contour, with the kind and its IoU to the GT.

    .venv/bin/python scripts/degrade_grid.py --out /tmp/degrade_grid.png
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from app.core.metrics import iou
from app.refiner.degrade import COARSE_KINDS, synthesize

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CELL = 220
GREEN = (0, 220, 0)
RED = (40, 40, 255)


def _read(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """An image from disk; an unreadable file stops the script with one line naming it."""
    image = cv2.imread(str(path), flags)
    if image is None:
        raise SystemExit(f"error: cannot read {path}")
    return image


def _ecssd(root: Path, n: int, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    masks = sorted((root / "ecssd" / "masks").glob("*.png"))
    for i in rng.choice(len(masks), size=min(n, len(masks)), replace=False):
        m = masks[int(i)]
        yield f"ecssd/{m.stem}", _read(root / "ecssd" / "images" / f"{m.stem}.jpg"), \
            _read(m, cv2.IMREAD_GRAYSCALE) >= 128


def _pets(root: Path, n: int, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    trimaps = sorted((root / "oxford_pets" / "annotations" / "trimaps").glob("*.png"))
    for i in rng.choice(len(trimaps), size=min(n, len(trimaps)), replace=False):
        t = trimaps[int(i)]
        yield f"pets/{t.stem}", _read(root / "oxford_pets" / "images" / f"{t.stem}.jpg"), \
            _read(t, cv2.IMREAD_GRAYSCALE) == 1


def _pennfudan(root: Path, n: int, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    masks = sorted((root / "pennfudan" / "PedMasks").glob("*.png"))
    for i in rng.choice(len(masks), size=min(n, len(masks)), replace=False):
        m = masks[int(i)]
        labels = _read(m, cv2.IMREAD_UNCHANGED)
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        stem = m.stem.removesuffix("_mask")
        yield f"pennfudan/{stem}", _read(root / "pennfudan" / "PNGImages" / f"{stem}.png"), \
            labels == ids[np.argmax(counts)]


def cell(image: np.ndarray, gt: np.ndarray, coarse: np.ndarray | None, label: str, colour: tuple[int, int, int] = RED) -> np.ndarray:
    """Crop around GT ∪ coarse, draw ``coarse`` (tinted, in ``colour``) and the GT contour, scale to CELL × CELL,
    add the label. Images are BGR."""
    both = gt | coarse if coarse is not None else gt
    ys, xs = np.nonzero(both)
    pad = int(0.12 * max(np.ptp(ys), np.ptp(xs))) + 4
    y0, y1 = max(0, ys.min() - pad), min(gt.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(gt.shape[1], xs.max() + pad + 1)
    view = image[y0:y1, x0:x1].copy()
    scale = CELL / max(view.shape[:2])
    size = (max(1, round(view.shape[1] * scale)), max(1, round(view.shape[0] * scale)))
    view = cv2.resize(view, size, interpolation=cv2.INTER_AREA)

    def fit(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)

    if coarse is not None:
        c = fit(coarse)
        tint = view.copy()
        tint[c > 0] = colour
        view = cv2.addWeighted(view, 0.6, tint, 0.4, 0)
        contours, _ = cv2.findContours(c, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(view, contours, -1, colour, 1)
    contours, _ = cv2.findContours(fit(gt), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(view, contours, -1, GREEN, 1)
    cell = np.full((CELL + 22, CELL, 3), 255, np.uint8)
    cell[22:22 + view.shape[0], :view.shape[1]] = view
    cv2.putText(cell, label, (3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return cell


def write_grid(path: Path, rows: list[np.ndarray]) -> bool:
    """Stack the rows into one PNG; False (with a line on stderr) when it cannot be written."""
    if cv2.imwrite(str(path), np.vstack(rows)):
        return True
    print(f"error: could not write {path}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--per-set", type=int, default=3, help="examples per data set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sources = {"ecssd": _ecssd, "oxford_pets": _pets, "pennfudan": _pennfudan}
    missing = [name for name in sources if not (args.data / name).is_dir()]
    if missing:
        print(f"error: {args.data} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    rows = []
    for source in sources.values():
        for name, image, gt in source(args.data, args.per_set, rng):
            cells = [cell(image, gt, None, name)]
            for kind in COARSE_KINDS:
                coarse, made = synthesize(gt, rng, kind=kind)
                tag = kind if made == kind else f"{kind}->{made}"
                cells.append(cell(image, gt, coarse, f"{tag} {iou(coarse, gt):.2f}"))
            rows.append(np.hstack(cells))
    if not write_grid(args.out, rows):
        return 1
    print(f"wrote {args.out}: {len(rows)} rows × {len(COARSE_KINDS) + 1} columns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
