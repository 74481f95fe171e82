"""A small project of synthetic photos for the prompt and find-similar tests: red discs and a yellow square on a
noisy green-blue ground, every disc's true mask known, one disc of the first image annotated."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from app.core.records import encode_mask
from app.core.store.project import ProjectStore
from app.services.datasets import ImportRequest, import_project

H, W = 240, 320
DISCS = (  # per image: (x, y, radius) of each red disc
    ((70, 80, 34), (230, 150, 30)),
    ((90, 170, 32), (250, 70, 28)),
    ((160, 120, 36),),
)
SQUARE = (20, 180, 70, 230)  # x0, y0, x1, y1 of the yellow square on every image


@dataclass
class SampleProject:
    path: Path
    images_dir: Path
    image_ids: list[int]
    truth: dict[int, list[np.ndarray]] = field(repr=False)  # image id -> true disc masks
    example_id: int = 1  # the annotated disc on the first image (category 1)
    other_id: int = 2  # the square on the first image (category 2)


def photo(discs: tuple[tuple[int, int, int], ...], seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    image = np.empty((H, W, 3), np.uint8)
    image[..., 0] = rng.integers(0, 60, (H, W))
    image[..., 1] = rng.integers(110, 190, (H, W))
    image[..., 2] = rng.integers(120, 210, (H, W))
    masks = []
    for x, y, r in discs:
        disc = np.zeros((H, W), np.uint8)
        cv2.circle(disc, (x, y), r, 1, -1)
        n = int(disc.sum())
        image[disc > 0] = np.stack([rng.integers(190, 250, n), rng.integers(0, 40, n), rng.integers(0, 40, n)], 1)
        masks.append(disc > 0)
    x0, y0, x1, y1 = SQUARE
    image[y0:y1, x0:x1] = (230, 220, 40)
    return image, masks


def square_mask() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    x0, y0, x1, y1 = SQUARE
    mask[y0:y1, x0:x1] = True
    return mask


def make_project(root: Path, images: int = 3) -> SampleProject:
    """The photos as PNG files, a COCO file with the first image's first disc (category 1) and its square
    (category 2), imported into ``root/photos.srproj``."""
    folder = root / "images"
    folder.mkdir(parents=True)
    records, truth = [], {}
    for k in range(images):
        image, masks = photo(DISCS[k % len(DISCS)], seed=k)
        cv2.imwrite(str(folder / f"photo{k}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        records.append({"id": k + 1, "file_name": f"photo{k}.png", "width": W, "height": H})
        truth[k + 1] = masks
    annotations = []
    for ann_id, (category, mask) in enumerate(((1, truth[1][0]), (2, square_mask())), start=1):
        rle = encode_mask(mask)
        x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
        annotations.append({"id": ann_id, "image_id": 1, "category_id": category, "segmentation": rle,
                            "area": int(mask.sum()), "bbox": [x, y, w, h], "iscrowd": 0})
    coco = {"images": records, "annotations": annotations,
            "categories": [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}]}
    source = root / "photos.json"
    source.write_text(json.dumps(coco))
    project = root / "photos.srproj"
    import_project(ImportRequest(source, "coco", folder), project)
    return SampleProject(project, folder, [r["id"] for r in records], truth, 1, 2)


def instance_count(project: Path) -> int:
    with ProjectStore.open(project, read_only=True) as store:
        return store.count_instances()
