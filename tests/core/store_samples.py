"""A small synthetic dataset for the store tests: holes, several parts, overlaps, crowd, LVIS fields."""
from __future__ import annotations

import numpy as np

from app.core.records import Category, Dataset, ImageRecord, Instance, encode_mask
from app.core.store.project import ProjectStore

H, W = 40, 60


def ring() -> np.ndarray:
    """A square with a hole in it."""
    m = np.zeros((H, W), bool)
    m[5:25, 5:25] = True
    m[10:20, 10:20] = False
    return m


def two_parts() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[2:8, 30:40] = True
    m[30:38, 45:58] = True
    return m


def blob() -> np.ndarray:
    """Overlaps ring()."""
    m = np.zeros((H, W), bool)
    m[15:35, 15:40] = True
    return m


def sample_dataset() -> Dataset:
    images = {
        10: ImageRecord(
            10, "b.jpg", W, H, neg_category_ids=[3], not_exhaustive_category_ids=[], extra={"coco_url": "u"}
        ),
        4: ImageRecord(4, "a.jpg", W, H, extra={"license": 2}),
    }
    categories = {
        2: Category(2, "dog", supercategory="animal", extra={"image_count": 3}),
        1: Category(1, "acorn", frequency="r", synset="acorn.n.01", synonyms=["acorn"], definition="nut"),
        3: Category(3, "cat", supercategory="animal"),
    }
    instances = [
        Instance(31, 10, 2, encode_mask(ring()), score=0.9, extra={"note": "holes"}),
        Instance(7, 10, 1, encode_mask(blob()), score=0.2),
        Instance(12, 4, 2, encode_mask(two_parts())),
        Instance(5, 4, 3, encode_mask(blob()), iscrowd=1),
    ]
    return Dataset(images, categories, instances, extra={"info": {"year": 2017}, "licenses": [{"id": 2}]}, kind="lvis")


def shrink_first_instance(store: ProjectStore) -> int:
    """Make the project's first instance a 10x10 mask, smaller than any refiner takes; its id."""
    first = store.list_instances()[0]
    record = store.image(first.image_id)
    tiny = np.zeros((record.height, record.width), bool)
    tiny[:10, :10] = True
    store.set_mask(first.id, tiny)
    return first.id
