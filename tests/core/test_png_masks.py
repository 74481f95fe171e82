"""PNG mask folders: Penn-Fudan label maps, binary masks (flat and per-image folders), overlap order."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.records import Category, Dataset, ImageRecord, Instance, ReviewStatus, encode_mask
from app.core.formats.png_masks import load_binary_masks, load_label_masks, save_png_masks, write_label_masks
from tests.core.codec_samples import PENNFUDAN, require


@pytest.fixture(scope="module")
def pennfudan() -> Dataset:
    root = require(PENNFUDAN)
    dataset, report = load_label_masks(root / "PNGImages", root / "PedMasks", category=Category(1, "person"))
    assert report.ok, report.summary()
    return dataset


def test_pennfudan_label_maps_import(pennfudan: Dataset) -> None:
    assert (len(pennfudan.images), len(pennfudan.instances), pennfudan.kind) == (170, 423, "png")
    first = pennfudan.images[1]
    assert (first.file_name, first.width, first.height) == ("FudanPed00001.png", 559, 536)
    labels = cv2.imread(str(PENNFUDAN / "PedMasks" / "FudanPed00001_mask.png"), cv2.IMREAD_UNCHANGED)
    masks = [inst.mask() for inst in pennfudan.instances if inst.image_id == 1]
    assert len(masks) == 2
    for value, mask in enumerate(masks, 1):
        assert np.array_equal(mask, labels == value)


def test_label_maps_round_trip_identically(pennfudan: Dataset, tmp_path: Path) -> None:
    report = save_png_masks(pennfudan, tmp_path, order="given")
    assert report.ok and report.counts["label maps"] == 170
    for original in sorted((PENNFUDAN / "PedMasks").glob("*.png")):
        expected = cv2.imread(str(original), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.imread(str(tmp_path / original.name), cv2.IMREAD_UNCHANGED), expected), original.name


def test_binary_masks_round_trip(pennfudan: Dataset, tmp_path: Path) -> None:
    report = save_png_masks(pennfudan, tmp_path, layout="binary")
    assert report.counts["masks"] == 423
    assert (tmp_path / "FudanPed00001_1.png").is_file()
    again, report = load_binary_masks(PENNFUDAN / "PNGImages", tmp_path, category=Category(1, "person"))
    assert report.ok
    assert [(i.image_id, i.id) for i in again.instances] == [(i.image_id, i.id) for i in pennfudan.instances]
    for a, b in zip(pennfudan.instances, again.instances):
        assert np.array_equal(a.mask(), b.mask())


def _tiny_images(tmp_path: Path, names: list[str], size: tuple[int, int] = (12, 10)) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for name in names:
        cv2.imwrite(str(images / name), np.zeros((size[1], size[0], 3), np.uint8))
    return images


def test_binary_masks_in_a_folder_per_image(tmp_path: Path) -> None:
    images = _tiny_images(tmp_path, ["a.jpg", "b.png"])
    masks = tmp_path / "masks"
    (masks / "a").mkdir(parents=True)
    one, two = np.zeros((10, 12), np.uint8), np.zeros((10, 12, 3), np.uint8)
    one[1:4, 1:4] = 255
    two[5:9, 2:10, 1] = 7  # colour PNG: any non-zero channel is foreground
    cv2.imwrite(str(masks / "a" / "person_10.png"), one)
    cv2.imwrite(str(masks / "a" / "person_2.png"), two)
    dataset, report = load_binary_masks(images, masks)
    assert report.ok and [img.file_name for img in dataset.images.values()] == ["a.jpg", "b.png"]
    assert [i.image_id for i in dataset.instances] == [1, 1]
    assert np.array_equal(dataset.instances[0].mask(), two[..., 1] > 0)  # natural order: 2 before 10
    assert np.array_equal(dataset.instances[1].mask(), one > 0)


def _overlapping() -> Dataset:
    big, small = np.zeros((10, 12), bool), np.zeros((10, 12), bool)
    big[1:9, 1:11] = True
    small[3:5, 3:5] = True
    image = ImageRecord(1, "x.jpg", 12, 10)
    instances = [Instance(1, 1, 1, encode_mask(small)), Instance(2, 1, 1, encode_mask(big))]
    return Dataset({1: image}, {1: Category(1, "thing")}, instances)


def test_overlap_order_by_area_keeps_small_instances_on_top(tmp_path: Path) -> None:
    dataset = _overlapping()
    report = save_png_masks(dataset, tmp_path)
    labels = cv2.imread(str(tmp_path / "x_mask.png"), cv2.IMREAD_UNCHANGED)
    assert labels[4, 4] == 2 and labels[1, 1] == 1  # big drawn first (1), small above it (2)
    [problem] = report.problems
    assert problem.record == "instance 2" and problem.action == "written in part" and problem.problem.startswith("4 of")


def test_overlap_in_given_order_can_hide_an_instance(tmp_path: Path) -> None:
    dataset = _overlapping()
    report = save_png_masks(dataset, tmp_path, order="given")
    labels = cv2.imread(str(tmp_path / "x_mask.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(labels).tolist()) == {0, 2}
    assert [(p.record, p.action) for p in report.problems] == [("instance 1", "not in the label map")]


def test_more_than_255_instances_give_a_16_bit_label_map(tmp_path: Path) -> None:
    image = ImageRecord(1, "many.png", 300, 2)
    instances = []
    for k in range(300):
        mask = np.zeros((2, 300), bool)
        mask[:, k] = True
        instances.append(Instance(k + 1, 1, 1, encode_mask(mask)))
    report = write_label_masks(tmp_path, [image], instances, order="given")
    labels = cv2.imread(str(tmp_path / "many_mask.png"), cv2.IMREAD_UNCHANGED)
    assert report.ok and labels.dtype == np.uint16 and labels[0].tolist() == list(range(1, 301))
    images = _tiny_images(tmp_path, ["many.png"], size=(300, 2))
    (tmp_path / "masks").mkdir()
    (tmp_path / "many_mask.png").rename(tmp_path / "masks" / "many_mask.png")
    again, _ = load_label_masks(images, tmp_path / "masks")
    assert len(again.instances) == 300 and np.array_equal(again.instances[299].mask(), instances[299].mask())


def test_only_accepted_instances_are_exported(tmp_path: Path) -> None:
    dataset = _overlapping()
    dataset.instances[0].status = ReviewStatus.ACCEPTED
    report = save_png_masks(dataset, tmp_path, layout="binary", statuses={ReviewStatus.ACCEPTED})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_1.png"] and report.counts["excluded by status"] == 1


def test_images_without_masks_get_empty_label_maps(tmp_path: Path) -> None:
    dataset = _overlapping()
    dataset.images[2] = ImageRecord(2, "sub/empty.jpg", 5, 4)
    save_png_masks(dataset, tmp_path)
    empty = cv2.imread(str(tmp_path / "empty_mask.png"), cv2.IMREAD_UNCHANGED)
    assert empty.shape == (4, 5) and not empty.any()


def test_instances_must_come_grouped_by_image(tmp_path: Path) -> None:
    dataset = _overlapping()
    dataset.images[2] = ImageRecord(2, "y.jpg", 12, 10)
    a, b = dataset.instances
    b.image_id = 2
    with pytest.raises(ValueError, match="grouped by image"):
        write_label_masks(tmp_path, dataset.images.values(), [a, b, Instance(3, 1, 1, a.rle)])
