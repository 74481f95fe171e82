"""LVIS v1: its extra fields, file names from coco_url, and byte-for-byte-equal JSON round trips."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.core.formats.coco import load_coco
from app.core.formats.coco_export import FREQUENCY_GIVEN, lvis_frequency, write_coco
from app.core.images import find_image_file
from app.core.formats.lvis import load_lvis, save_lvis, write_lvis
from tests.core.codec_samples import DATA, LVIS_7, LVIS_100, coco_api, read, require, tiny_coco, write


@pytest.mark.parametrize("source", [LVIS_100, LVIS_7], ids=lambda p: p.name)
def test_polygon_export_of_unedited_lvis_equals_the_source(source: Path, tmp_path: Path) -> None:
    dataset, report = load_lvis(require(source))
    assert report.ok
    save_lvis(dataset, tmp_path / "out.json", segmentation="polygon")
    assert read(tmp_path / "out.json") == read(source)


def test_rle_export_keeps_every_field_but_the_encoding(tmp_path: Path) -> None:
    source = require(LVIS_7)
    dataset, _ = load_lvis(source)
    save_lvis(dataset, tmp_path / "out.json", segmentation="rle")
    src, out = read(source), read(tmp_path / "out.json")
    strip = lambda anns: [{k: v for k, v in a.items() if k != "segmentation"} for a in anns]  # noqa: E731
    assert strip(out["annotations"]) == strip(src["annotations"])
    assert all(isinstance(a["segmentation"]["counts"], str) for a in out["annotations"])
    original, exported = coco_api(source), coco_api(tmp_path / "out.json")
    for ann_id, ann in original.anns.items():
        assert np.array_equal(original.annToMask(ann), exported.annToMask(exported.anns[ann_id]))


def test_lvis_fields_are_modelled() -> None:
    dataset, _ = load_lvis(require(LVIS_100))
    assert len(dataset.categories) == 1230
    acorn = dataset.categories[1]
    assert (acorn.name, acorn.frequency, acorn.synset, acorn.synonyms) == ("acorn", "r", "acorn.n.01", ["acorn"])
    assert acorn.definition == "nut from an oak tree"
    assert acorn.extra == {"image_count": 0, "instance_count": 0}
    image = dataset.images[266409]
    assert image.neg_category_ids == [284, 53, 754, 299, 654, 541, 566] and image.not_exhaustive_category_ids == []
    assert "neg_category_ids" not in image.extra and image.extra["coco_url"].endswith("000000266409.jpg")


def test_v1_images_without_file_name_take_it_from_coco_url(tmp_path: Path) -> None:
    """Real LVIS v1 files have no file_name: derive it, find the image by it, and do not write it back."""
    data = read(require(LVIS_7))
    for image in data["images"]:
        del image["file_name"]
    source = write(tmp_path / "lvis_v1.json", data)
    dataset, report = load_lvis(source, images_dir=DATA / "lvis_val_100" / "images", check_images=True)
    assert report.ok, report.summary()
    image = dataset.images[11813]
    assert image.file_name == "val2017/000000011813.jpg"
    assert find_image_file(DATA / "lvis_val_100" / "images", image) is not None
    save_lvis(dataset, tmp_path / "out.json", segmentation="polygon")
    assert read(tmp_path / "out.json") == data


def test_lvis_export_of_a_coco_dataset_adds_lvis_lists(tmp_path: Path) -> None:
    data = tiny_coco()
    data["annotations"][2]["iscrowd"] = 1
    dataset, _ = load_coco(write(tmp_path / "in.json", data))
    write_lvis(tmp_path / "out.json", {}, dataset.images.values(), dataset.categories.values(), dataset.instances)
    out = read(tmp_path / "out.json")
    assert all(img["neg_category_ids"] == [] and img["not_exhaustive_category_ids"] == [] for img in out["images"])
    assert [a.get("iscrowd") for a in out["annotations"]] == [None, None, 1]


def test_lvis_export_gives_categories_without_one_a_frequency_from_their_images(tmp_path: Path) -> None:
    data = tiny_coco()
    dataset, _ = load_coco(write(tmp_path / "in.json", data))
    images, cats = list(dataset.images.values()), list(dataset.categories.values())
    named = [replace(cats[0], frequency="f")] + cats[1:]
    report = write_lvis(tmp_path / "out.json", {}, images, named, dataset.instances)
    out = {c["id"]: c for c in read(tmp_path / "out.json")["categories"]}
    assert out[cats[0].id]["frequency"] == "f"  # a category's own frequency is kept
    assert out[cats[1].id]["frequency"] == "r"  # seen on at most two images: rare
    assert report.counts[FREQUENCY_GIVEN] == len(cats) - 1
    assert [lvis_frequency(n) for n in (0, 1, 10, 11, 100, 101)] == ["r", "r", "r", "c", "c", "f"]
    coco = write_coco(tmp_path / "coco.json", {}, images, cats, dataset.instances)
    assert "frequency" not in read(tmp_path / "coco.json")["categories"][0] and not coco.counts[FREQUENCY_GIVEN]


@pytest.mark.parametrize("segmentation", ["source", "rle"])
def test_the_lvis_api_reads_our_export(segmentation: str, tmp_path: Path) -> None:
    lvis = pytest.importorskip("lvis", reason="the lvis package needs opencv-python (clashes with PySide6) and matplotlib; run this in a separate venv")
    source = require(LVIS_7)
    dataset, _ = load_lvis(source)
    save_lvis(dataset, tmp_path / "out.json", segmentation=segmentation)
    ours, theirs = lvis.LVIS(str(tmp_path / "out.json")), lvis.LVIS(str(source))
    assert sorted(ours.get_ann_ids()) == sorted(theirs.get_ann_ids())
    for ann_id in theirs.get_ann_ids():
        assert np.array_equal(ours.ann_to_mask(ours.anns[ann_id]), theirs.ann_to_mask(theirs.anns[ann_id]))
