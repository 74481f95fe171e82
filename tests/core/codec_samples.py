"""Shared bits of the codec tests: where the real data is, and pycocotools without its chatter."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from tests.shared_data import DATA, require

__all__ = ["DATA", "require"]  # and the names defined below

COCO_TRAIN = DATA / "coco_tiny/annotations/instances_train2017.json"
COCO_VAL = DATA / "coco_tiny/annotations/instances_val2017.json"
LVIS_100 = DATA / "lvis_val_100/lvis_val_100.json"
LVIS_7 = DATA / "lvis_val_100/lvis_val_100_present7.json"
LABELME_COCO = DATA / "labelme_examples/instance_segmentation/data_dataset_coco/annotations.json"
PENNFUDAN = DATA / "pennfudan"


def coco_api(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def tiny_coco(width: int = 40, height: int = 30) -> dict[str, Any]:
    """A small valid COCO file: two images, two categories, three polygon annotations, unknown keys."""
    def square() -> list[list[float]]:
        return [[5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]]

    return {
        "info": {"year": 2024},
        "licenses": [{"id": 1, "name": "x"}],
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": width, "height": height, "license": 1},
            {"id": 2, "file_name": "b.jpg", "width": width, "height": height},
        ],
        "categories": [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": None}],
        "annotations": [
            {"id": 17, "image_id": 1, "category_id": 1, "segmentation": square(), "area": 100.0, "bbox": [5, 5, 10, 10],
             "iscrowd": 0, "note": "kept"},
            {"id": 18, "image_id": 1, "category_id": 2, "segmentation": [[20, 2, 30, 2, 25, 12]], "area": 50.0,
             "bbox": [20, 2, 10, 10], "iscrowd": 0},
            {"id": 19, "image_id": 2, "category_id": 1, "segmentation": square(), "area": 100.0, "bbox": [5, 5, 10, 10],
             "iscrowd": 0},
        ],
    }
