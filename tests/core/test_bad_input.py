"""Bad input: one clear message naming the file, the record and the problem, for each case we handle.

Unrecoverable problems raise DatasetError; a problem with one record goes in the ImportReport and the rest
of the file still imports.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest

from app.core.formats.coco import load_coco, load_coco_results
from app.core.errors import DatasetError
from app.core.records import encode_mask
from app.core.formats.png_masks import load_binary_masks, load_label_masks
from app.core.report import ImportReport
from tests.core.codec_samples import tiny_coco, write


def _import(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> tuple[set[int], ImportReport]:
    """Import tiny_coco() after ``change``; the ids that made it and the report."""
    data = tiny_coco()
    change(data)
    dataset, report = load_coco(write(tmp_path / "instances.json", data))
    return {inst.id for inst in dataset.instances}, report


def _problems(report: ImportReport) -> list[str]:
    return [f"{p.record}: {p.problem} ({p.action})" for p in report.problems]


# ------------------------------------------------------------------------------------ unrecoverable
@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "file is empty (0 bytes)"),
        (b'{"images": [', "not valid JSON: Expecting value at line 1, column 13"),
        (b'{"images": [], "annotations": [] "categories": []}', "not valid JSON: Expecting ',' delimiter at line 1, column 34"),
        (b"\x80abc", "not UTF-8 text"),
        (b"[]", "top level must be a JSON object with images, annotations and categories (a list is a results file"),
        (b"42", "top level must be a JSON object"),
        (b'{"images": [], "categories": []}', "missing top-level key 'annotations'"),
        (b'{"images": {}, "annotations": [], "categories": []}', "top-level 'images' must be a list, not an object"),
        (b"[" * 100_000, "not usable JSON: nested too deeply"),
    ],
)
def test_unusable_files_raise_dataset_error(content: bytes, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as err:
        load_coco(path)
    assert str(err.value).startswith(f"instances.json: {problem}")
    assert err.value.path == path and err.value.record is None


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="instances.json: file not found"):
        load_coco(tmp_path / "instances.json")
    with pytest.raises(DatasetError, match="is a folder"):
        load_coco(tmp_path)


def test_results_must_be_a_list(tmp_path: Path) -> None:
    meta = write(tmp_path / "meta.json", tiny_coco())
    with pytest.raises(DatasetError, match="r.json: results must be a JSON list"):
        load_coco_results(write(tmp_path / "r.json", {"annotations": []}), meta)
    with pytest.raises(DatasetError, match="meta.json: missing top-level key 'categories'"):
        load_coco_results(write(tmp_path / "r.json", []), write(tmp_path / "meta.json", {"images": []}))


# ------------------------------------------------------------------------------------ recoverable
def test_polygon_with_two_points(tmp_path: Path) -> None:
    def change(d: dict) -> None:
        d["annotations"][0]["segmentation"] = [[1, 1, 5, 5]]

    ids, report = _import(tmp_path, change)
    assert ids == {18, 19}
    [problem] = report.problems
    assert str(problem) == f"{tmp_path / 'instances.json'}: annotation 17: polygon has 2 points (needs at least 3) (skipped)"


def test_one_bad_part_of_several_is_dropped(tmp_path: Path) -> None:
    data = tiny_coco()
    data["annotations"][0]["segmentation"] += [[1, 1, 2, 2, 3, 3, 4], [1, 1, 2, 2]]
    dataset, report = load_coco(write(tmp_path / "instances.json", data))
    assert _problems(report) == [
        "annotation 17: polygon part 2 of 3 has an odd number of coordinates (7) (part dropped)",
        "annotation 17: polygon part 3 of 3 has 2 points (needs at least 3) (part dropped)",
    ]
    inst = dataset.instances[0]
    assert inst.area == 100 and inst.original_segmentation["segmentation"] == tiny_coco()["annotations"][0]["segmentation"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["annotations"][0].pop("image_id"), "annotation 17: 'image_id' must be a 64-bit integer, not null"),
        (lambda d: d["annotations"][0].update(image_id=99), "annotation 17: image 99 is not among the file's (valid) images"),
        (lambda d: d["annotations"][0].update(category_id=7), "annotation 17: category 7 is not among the file's (valid) categories"),
        (lambda d: d["annotations"][0].pop("segmentation"), "annotation 17: no 'segmentation'"),
        (lambda d: d["annotations"][0].pop("id"), "annotations[0]: 'id' must be a 64-bit integer, not null"),
        (lambda d: d["annotations"][0].update(id="17"), "annotations[0]: 'id' must be a 64-bit integer, not \"17\""),
        (lambda d: d["annotations"][0].update(segmentation=[1, 2, 3, 4, 5, 6]),
         "annotation 17: 'segmentation' is a flat list of numbers; it must be a list of polygons"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, "x", 4, 5, 6]]),
         "annotation 17: polygon coordinates are not all numbers within 160 of the 40x30 image"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 1e9, 4, 5, 6]]),
         "annotation 17: polygon coordinates are not all numbers within 160 of the 40x30 image"),
        (lambda d: d["annotations"][0].update(segmentation="abc"), "annotation 17: 'segmentation' is a string, neither polygons nor RLE"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [30, 41], "counts": "PPP"}),
         "annotation 17: RLE size [30, 41] disagrees with image 1's [height, width] [30, 40]"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [30, 40], "counts": [100, 20]}),
         "annotation 17: RLE counts cover 120 pixels but the image has 30x40 = 1200"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [30, 40], "counts": [100, -20, 1120]}),
         "annotation 17: uncompressed RLE 'counts' must be non-negative integers"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [30, 40], "counts": "0"}),
         "annotation 17: RLE counts cover 0 pixels but the image has 30x40 = 1200"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [30, 40], "counts": "\x01bad"}),
         "annotation 17: RLE 'counts' is not a valid compressed RLE string"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [30, 40]}), "annotation 17: RLE segmentation needs 'size' and 'counts'"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])), "annotation 17: duplicate annotation id; the first one is kept"),
        (lambda d: d["annotations"].append(7), "annotations[3]: not a JSON object but a number"),
    ],
)
def test_a_bad_annotation_is_skipped_and_the_rest_imports(change: Callable, expected: str, tmp_path: Path) -> None:
    ids, report = _import(tmp_path, change)
    assert _problems(report) == [f"{expected} (skipped)"]
    assert ids == {17, 18, 19} - ({17} if "duplicate" not in expected and "[3]" not in expected else set())


def test_a_short_compressed_rle_is_caught_before_pycocotools_decodes_garbage(tmp_path: Path) -> None:
    mask = np.zeros((30, 39), bool)  # one column short of the image
    mask[2:5, 2:5] = True
    counts = encode_mask(mask)["counts"]
    ids, report = _import(tmp_path, lambda d: d["annotations"][0].update(segmentation={"size": [30, 40], "counts": counts}))
    assert ids == {18, 19}
    assert _problems(report) == ["annotation 17: RLE counts cover 1170 pixels but the image has 30x40 = 1200 (skipped)"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["images"].append(dict(d["images"][0])), "image 1: duplicate image id; the first one is kept (skipped)"),
        (lambda d: d["categories"].append(dict(d["categories"][0], name="x")),
         "category 1: duplicate category id; the first one is kept (skipped)"),
        (lambda d: d["images"].append({"id": 3, "file_name": "c.jpg", "width": 0, "height": 5}),
         "image 3: width 0 and height 5 are not a valid image size (skipped)"),
        (lambda d: d["images"].append({"id": 3, "width": 5, "height": 5}),
         "image 3: no 'file_name' (and no 'coco_url' to take it from) (skipped)"),
        (lambda d: d["categories"].append({"id": 3}), "category 3: 'name' must be a string, not null (skipped)"),
        (lambda d: d["annotations"][0].update(iscrowd=2), "annotation 17: 'iscrowd' is 2, not 0 or 1 (kept as iscrowd 0)"),
        (lambda d: d["images"].append({"id": 2**64, "file_name": "c.jpg", "width": 5, "height": 5}),
         "images[2]: 'id' must be a 64-bit integer, not 18446744073709551616 (skipped)"),
        (lambda d: d["annotations"][0].update(area="big"), "annotation 17: 'area' is a string, not a number (recomputed from the mask)"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2]), "annotation 17: 'bbox' is not 4 numbers (recomputed from the mask)"),
        (lambda d: d["annotations"][0].update(segmentation=[]), "annotation 17: empty segmentation (kept as an empty mask)"),
    ],
)
def test_other_record_problems_are_reported(change: Callable, expected: str, tmp_path: Path) -> None:
    ids, report = _import(tmp_path, change)
    assert _problems(report) == [expected]
    assert ids == {17, 18, 19}


def test_annotations_of_a_skipped_image_are_reported_too(tmp_path: Path) -> None:
    ids, report = _import(tmp_path, lambda d: d["images"][1].update(width="wide"))
    assert ids == {17, 18}
    assert _problems(report) == [
        "image 2: width \"wide\" and height 30 are not a valid image size (skipped)",
        "annotation 19: image 2 is not among the file's (valid) images (skipped)",
    ]


def test_missing_and_corrupt_image_files_are_reported_when_checked(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((30, 40, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    path = write(tmp_path / "instances.json", tiny_coco())
    _, report = load_coco(path, check_images=True)
    assert [(p.record, p.action) for p in report.problems] == [("image 2", "kept")]
    assert report.problems[0].file == str(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").unlink()
    dataset, report = load_coco(path, check_images=True)
    assert _problems(report) == [f"image 2: image file 'b.jpg' not found under {tmp_path} (kept)"]
    assert len(dataset.instances) == 3


def test_prediction_problems_name_the_prediction(tmp_path: Path) -> None:
    meta = write(tmp_path / "meta.json", tiny_coco())
    predictions = [
        {"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "score": 0.9},
        {"image_id": 5, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "score": 0.8},
        {"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "score": "high"},
    ]
    dataset, report = load_coco_results(write(tmp_path / "r.json", predictions), meta)
    assert _problems(report) == [
        "predictions[1]: image 5 is not among the file's (valid) images (skipped)",
        "predictions[2]: 'score' is \"high\", not a number (kept without a score)",
    ]
    assert [(i.id, i.score) for i in dataset.instances] == [(1, 0.9), (2, None)]


# ------------------------------------------------------------------------------------ PNG masks
def _folders(tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((10, 12, 3), np.uint8))
    cv2.imwrite(str(images / "b.png"), np.zeros((10, 12, 3), np.uint8))
    return images, masks


def test_png_mask_of_the_wrong_size(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    cv2.imwrite(str(masks / "a_mask.png"), np.ones((11, 12), np.uint8))
    cv2.imwrite(str(masks / "b_mask.png"), np.ones((10, 12), np.uint8))
    dataset, report = load_label_masks(images, masks)
    assert _problems(report) == ["a_mask.png: mask is 12x11 but image a.png is 12x10 (skipped)"]
    assert [i.image_id for i in dataset.instances] == [2]


def test_label_map_problems(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    colour = np.zeros((10, 12, 3), np.uint8)
    colour[1, 1] = (0, 0, 255)
    cv2.imwrite(str(masks / "a_mask.png"), colour)
    cv2.imwrite(str(masks / "zzz_mask.png"), np.ones((10, 12), np.uint8))
    (masks / "b_mask.png").write_bytes(b"")
    _, report = load_label_masks(images, masks)
    assert _problems(report) == [
        "a_mask.png: label map has colour channels; it must be single-channel (grey) with one value per instance (skipped)",
        "b_mask.png: file is empty (0 bytes) (skipped)",
        f"zzz_mask.png: no image zzz.* in {images} (skipped)",
    ]


def test_binary_mask_problems(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    cv2.imwrite(str(masks / "a_1.png"), np.zeros((10, 12), np.uint8))
    cv2.imwrite(str(masks / "a.png"), np.ones((10, 12), np.uint8))
    (masks / "b_1.png").write_bytes(b"not a png")
    dataset, report = load_binary_masks(images, masks)
    assert _problems(report) == [
        "a.png: name is not <image stem>_<k>.png (skipped)",
        "a_1.png: mask is empty (kept as an empty mask)",
        "b_1.png: not a readable image (corrupt, or a format OpenCV cannot decode) (skipped)",
    ]
    assert len(dataset.instances) == 1


def test_missing_folders_raise(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="images: image folder not found"):
        load_label_masks(tmp_path / "images", tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="masks: mask folder not found"):
        load_label_masks(tmp_path / "images", tmp_path / "masks")


def test_corrupt_image_in_a_png_folder(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    (images / "b.png").write_bytes(b"")
    cv2.imwrite(str(masks / "b_mask.png"), np.ones((10, 12), np.uint8))
    dataset, report = load_label_masks(images, masks)
    assert _problems(report) == ["b.png: file is empty (0 bytes) (skipped)", "b_mask.png: its image could not be read (skipped)"]
    assert list(dataset.images) == [1]


# ------------------------------------------------------------------------------------ the report
def test_report_summary_and_json(tmp_path: Path) -> None:
    _, report = _import(tmp_path, lambda d: d["annotations"][0].update(image_id=99))
    summary = report.summary()
    assert summary.splitlines()[0] == f"import {tmp_path / 'instances.json'}: 2 images, 2 categories, 2 instances; 1 problem"
    report.write_json(tmp_path / "report.json")
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["operation"] == "import" and written["counts"]["instances"] == 2
    assert written["problems"] == [{"file": str(tmp_path / "instances.json"), "record": "annotation 17",
                                    "problem": "image 99 is not among the file's (valid) images", "action": "skipped"}]


def test_dataset_error_message() -> None:
    err = DatasetError("/data/instances.json", "polygon has 2 points (needs at least 3)", record="annotation 17")
    assert str(err) == "instances.json: annotation 17: polygon has 2 points (needs at least 3)"
    assert str(DatasetError("x/y.png", "file is empty (0 bytes)")) == "y.png: file is empty (0 bytes)"
