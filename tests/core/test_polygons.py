"""Polygons: pycocotools' rasterisation, and vectorisation that gives back every pixel (holes included)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.core.formats.polygons import mask_to_polygons, pixel_difference, polygons_to_rle
from tests.core.codec_samples import COCO_VAL, coco_api, require


def _random_mask(rng: np.random.Generator) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(2, 70, 2))
    coarse = (rng.random((h // 4 + 1, w // 4 + 1)) > 0.55).astype(np.uint8)
    mask = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return mask ^ (rng.random((h, w)) > 0.95)  # speckle: single pixels, diagonal contacts, tiny holes


def test_vectorised_polygons_rasterise_back_to_the_same_pixels() -> None:
    rng = np.random.default_rng(7)
    holes = 0
    for _ in range(300):
        mask = _random_mask(rng)
        polygons = mask_to_polygons(mask)
        if not mask.any():
            assert polygons == []
            continue
        assert pixel_difference(polygons, mask) == 0
        _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        holes += int((hierarchy[0][:, 3] != -1).sum())
    assert holes > 100  # the masks did have holes to get right


def test_a_ring_is_one_polygon_with_a_keyhole() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2:18] = True
    mask[6:14, 6:14] = False
    [polygon] = mask_to_polygons(mask)
    assert pixel_difference([polygon], mask) == 0
    points = np.array(polygon).reshape(-1, 2)
    assert {(2, 2), (18, 18), (6, 6), (14, 14)} <= set(map(tuple, points.tolist()))  # pixel-edge corners


def test_tolerance_simplifies_and_is_measured() -> None:
    yy, xx = np.mgrid[:100, :100]
    disc = (yy - 50) ** 2 + (xx - 50) ** 2 < 40**2
    exact, rough = mask_to_polygons(disc), mask_to_polygons(disc, tolerance=1.5)
    assert pixel_difference(exact, disc) == 0
    assert len(rough[0]) < len(exact[0]) / 3
    assert 0 < pixel_difference(rough, disc) < disc.sum() * 0.05


def test_polygons_to_rle_equals_coco_ann_to_mask() -> None:
    api = coco_api(require(COCO_VAL))
    polygon_anns = [a for a in api.anns.values() if isinstance(a["segmentation"], list)][:200]
    for ann in polygon_anns:
        image = api.imgs[ann["image_id"]]
        rle = polygons_to_rle(ann["segmentation"], image["height"], image["width"])
        assert isinstance(rle["counts"], str)
        assert np.array_equal(mask_utils.decode(rle), api.annToMask(ann))


def test_polygons_to_rle_rejects_what_pycocotools_would_misread() -> None:
    with pytest.raises(ValueError, match="at least 6"):
        polygons_to_rle([[1, 1, 5, 5]], 10, 10)  # pycocotools would take 4 numbers for a box
    assert mask_utils.area(polygons_to_rle([], 10, 10)) == 0


def test_mask_to_polygons_wants_a_2d_mask() -> None:
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygons(np.zeros((4, 4, 3), bool))
