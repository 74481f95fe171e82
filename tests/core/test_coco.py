"""COCO import and export: pixel-exact round trips on every real file, read back with pycocotools."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.core.formats.coco import load_coco, load_coco_results
from app.core.formats.coco_export import save_coco, save_coco_results, write_coco
from app.core.formats.rle_check import rle_pixel_totals
from app.core.errors import DatasetError
from app.core.records import Category, ReviewStatus, SegmentationFormat, category_labels, encode_mask
from tests.core.codec_samples import (
    COCO_TRAIN,
    COCO_VAL,
    LABELME_COCO,
    LVIS_7,
    LVIS_100,
    coco_api,
    read,
    require,
    tiny_coco,
    write,
)

REAL_FILES = [COCO_TRAIN, COCO_VAL, LVIS_100, LVIS_7, LABELME_COCO]


def _by_id(records: list[dict]) -> dict[int, dict]:
    return {r["id"]: r for r in records}


@pytest.mark.parametrize("source", REAL_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("segmentation", ["source", "rle", "polygon"])
def test_round_trip_is_exact_on_real_files(source: Path, segmentation: str, tmp_path: Path) -> None:
    """Import then export with no edits: same pixels (by pycocotools), ids, categories and unknown fields."""
    require(source)
    dataset, report = load_coco(source)
    assert report.ok, report.summary()
    out = tmp_path / "export.json"
    save_coco(dataset, out, kind=dataset.kind, segmentation=segmentation)

    original, exported = coco_api(source), coco_api(out)
    assert original.anns.keys() == exported.anns.keys()
    for ann_id, ann in original.anns.items():
        assert np.array_equal(original.annToMask(ann), exported.annToMask(exported.anns[ann_id])), ann_id

    src, dst = read(source), read(out)
    assert {k: v for k, v in src.items() if k != "annotations"} == {k: v for k, v in dst.items() if k != "annotations"}
    src_anns, dst_anns = _by_id(src["annotations"]), _by_id(dst["annotations"])
    for ann_id, ann in src_anns.items():
        got = dst_anns[ann_id]
        assert {k: v for k, v in ann.items() if k != "segmentation"} == {k: v for k, v in got.items() if k != "segmentation"}
        if segmentation == "source":
            assert got["segmentation"] == ann["segmentation"]  # polygons and RLE as the file had them
        if segmentation != "rle" and isinstance(ann["segmentation"], list):
            assert got["segmentation"] == ann["segmentation"]  # the original polygons, exactly
        if segmentation == "rle":
            assert isinstance(got["segmentation"]["counts"], str)


def test_import_decodes_to_pycocotools_pixels() -> None:
    """Polygons (several parts), crowd uncompressed RLE: our masks equal COCO.annToMask."""
    dataset, _ = load_coco(require(COCO_VAL))
    api = coco_api(COCO_VAL)
    formats = {inst.source_format for inst in dataset.instances}
    assert formats == {SegmentationFormat.POLYGON, SegmentationFormat.UNCOMPRESSED_RLE}
    assert any(len(a["segmentation"]) > 1 for a in api.anns.values() if isinstance(a["segmentation"], list))
    for inst in dataset.instances:
        assert isinstance(inst.rle["counts"], str)
        assert np.array_equal(inst.mask(), api.annToMask(api.anns[inst.id]).astype(bool)), inst.id
        assert inst.iscrowd == api.anns[inst.id]["iscrowd"]


def test_compressed_rle_imports_and_round_trips(tmp_path: Path) -> None:
    data = tiny_coco()
    mask = np.zeros((30, 40), bool)
    mask[3:20, 4:9] = True
    mask[10:12, 5:7] = False  # a hole
    data["annotations"][0]["segmentation"] = encode_mask(mask)
    dataset, report = load_coco(write(tmp_path / "in.json", data))
    assert report.ok
    inst = next(i for i in dataset.instances if i.id == 17)
    assert inst.source_format is SegmentationFormat.RLE
    assert np.array_equal(inst.mask(), mask)
    save_coco(dataset, tmp_path / "out.json", segmentation="polygon")
    exported = coco_api(tmp_path / "out.json")
    assert np.array_equal(exported.annToMask(exported.anns[17]).astype(bool), mask)  # holes kept in polygons


def test_unknown_fields_and_optional_nulls_survive(tmp_path: Path) -> None:
    data = tiny_coco()
    data["images"][0]["neg_category_ids"] = None  # wrong type for the LVIS field: kept verbatim
    data["annotations"][1]["score"] = None
    dataset, report = load_coco(write(tmp_path / "in.json", data))
    assert report.ok
    assert dataset.categories[2].supercategory is None and dataset.categories[2].extra == {"supercategory": None}
    assert dataset.images[1].extra == {"license": 1, "neg_category_ids": None}
    save_coco(dataset, tmp_path / "out.json")
    out = read(tmp_path / "out.json")
    assert out["info"] == data["info"] and out["licenses"] == data["licenses"]
    assert out["images"] == data["images"] and out["categories"] == data["categories"]
    anns = _by_id(out["annotations"])
    assert anns[17]["note"] == "kept" and anns[18]["score"] is None


def test_edited_mask_gets_its_own_area_and_bbox(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    inst = dataset.instances[0]
    mask = np.zeros((30, 40), bool)
    mask[0:4, 0:3] = True
    inst.set_mask(mask)
    assert inst.original_segmentation is None
    save_coco(dataset, tmp_path / "out.json", segmentation="polygon")
    ann = _by_id(read(tmp_path / "out.json")["annotations"])[17]
    assert ann["area"] == 12 and ann["bbox"] == [0.0, 0.0, 3.0, 4.0]
    assert ann["segmentation"] == [[0, 0, 0, 4, 3, 4, 3, 0]]


def test_polygon_export_of_holes_and_parts_is_exact(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    mask = np.zeros((30, 40), bool)
    mask[2:20, 2:20] = True
    mask[6:12, 6:12] = False  # hole
    mask[8:10, 8:10] = True  # island in the hole
    mask[25:28, 30:39] = True  # second part
    mask[0, 39] = True  # single pixel at the border
    dataset.instances[0].set_mask(mask)
    report = save_coco(dataset, tmp_path / "out.json", segmentation="polygon")
    assert report.ok and report.counts["written as polygons"] == 3
    api = coco_api(tmp_path / "out.json")
    assert np.array_equal(api.annToMask(api.anns[17]).astype(bool), mask)
    assert len(api.anns[17]["segmentation"]) == 4  # outer-with-hole, island, second part, pixel


def test_inexact_polygons_fall_back_to_rle_or_warn(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    yy, xx = np.mgrid[:30, :40]
    disc = (yy - 15) ** 2 + (xx - 20) ** 2 < 12**2
    dataset.instances[0].set_mask(disc)

    report = save_coco(dataset, tmp_path / "rle.json", segmentation="polygon", tolerance=2.0)
    [problem] = report.problems
    assert problem.record == "annotation 17" and problem.action == "wrote RLE" and "pixels" in problem.problem
    assert isinstance(_by_id(read(tmp_path / "rle.json")["annotations"])[17]["segmentation"], dict)

    report = save_coco(dataset, tmp_path / "poly.json", segmentation="polygon", tolerance=2.0, on_inexact="polygon")
    [problem] = report.problems
    assert problem.action == "wrote polygons"
    diff = int(problem.problem.split(" by ")[1].split()[0])
    api = coco_api(tmp_path / "poly.json")
    assert int((api.annToMask(api.anns[17]).astype(bool) != disc).sum()) == diff > 0


def test_empty_mask_is_written_as_rle(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    dataset.instances[0].set_mask(np.zeros((30, 40), bool))
    report = save_coco(dataset, tmp_path / "out.json", segmentation="polygon")
    assert [p.action for p in report.problems] == ["wrote RLE"]
    assert coco_api(tmp_path / "out.json").annToMask(coco_api(tmp_path / "out.json").anns[17]).sum() == 0


def test_status_filter_writes_only_accepted(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    dataset.instances[1].status = ReviewStatus.ACCEPTED
    report = save_coco(dataset, tmp_path / "out.json", statuses={ReviewStatus.ACCEPTED})
    assert [a["id"] for a in read(tmp_path / "out.json")["annotations"]] == [18]
    assert report.counts["excluded by status"] == 2


def test_write_coco_streams_from_generators(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    report = write_coco(
        tmp_path / "out.json", dataset.extra, (i for i in dataset.images.values()),
        (c for c in dataset.categories.values()), (i for i in dataset.instances),
    )
    assert report.counts["annotations"] == 3 and report.counts["images"] == 2
    assert coco_api(tmp_path / "out.json").anns.keys() == {17, 18, 19}


def test_failed_export_keeps_the_previous_file(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    out = tmp_path / "out.json"
    out.write_text("previous export")

    def broken():
        yield dataset.instances[0]
        raise RuntimeError("store went away")

    with pytest.raises(RuntimeError):
        write_coco(out, {}, dataset.images.values(), dataset.categories.values(), broken())
    assert out.read_text() == "previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "out.json"]


def test_export_to_a_missing_folder_is_a_dataset_error(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    with pytest.raises(DatasetError, match="cannot write"):
        save_coco(dataset, tmp_path / "no" / "such" / "out.json")


def test_results_import_and_export(tmp_path: Path) -> None:
    """Predictions joined to an images/categories file: fresh ids, scores kept, all three encodings."""
    require(COCO_VAL)
    api = coco_api(COCO_VAL)
    anns = list(api.anns.values())[:30]
    predictions = []
    for k, ann in enumerate(anns):
        seg = ann["segmentation"]
        if k % 3 == 1:
            seg = api.annToRLE(ann)
            seg = {"size": seg["size"], "counts": seg["counts"].decode() if isinstance(seg["counts"], bytes) else seg["counts"]}
        predictions.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": seg,
                            "score": round(0.5 + k / 100, 3), "bbox": ann["bbox"], "id": 999, "model": "m1"})
    results = write(tmp_path / "results.json", predictions)
    dataset, report = load_coco_results(results, COCO_VAL)
    assert report.ok and dataset.kind == "results"
    assert [i.id for i in dataset.instances] == list(range(1, 31))
    for inst, ann, pred in zip(dataset.instances, anns, predictions):
        assert inst.score == pred["score"] and inst.extra == {"model": "m1"}
        assert np.array_equal(inst.mask(), api.annToMask(ann).astype(bool))

    save_coco_results(dataset, tmp_path / "out.json")
    out = read(tmp_path / "out.json")
    assert [r["score"] for r in out] == [p["score"] for p in predictions]
    assert all("id" not in r and r["model"] == "m1" for r in out)
    loaded = api.loadRes(str(tmp_path / "out.json"))
    for k, ann in enumerate(anns):
        assert np.array_equal(loaded.annToMask(loaded.anns[k + 1]), api.annToMask(ann))


def test_results_without_scores_are_reported_and_exported_with_one(tmp_path: Path) -> None:
    meta = write(tmp_path / "meta.json", tiny_coco())
    results = write(tmp_path / "r.json", [{"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]}])
    dataset, report = load_coco_results(results, meta)
    assert [p.problem for p in report.problems] == ["no 'score'"] and dataset.instances[0].score is None
    export = save_coco_results(dataset, tmp_path / "out.json")
    assert read(tmp_path / "out.json")[0]["score"] == 1.0 and export.counts["given score 1.0 (had none)"] == 1


def _reference_total(s: str) -> int:
    """pycocotools' rleFrString, written out plainly: the sum of the runs, -1 if malformed."""
    runs: list[int] = []
    p = 0
    if not s or not s.isascii():
        return -1
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                return -1
            c = ord(s[p]) - 48
            if not 0 <= c <= 63 or k >= 7:
                return -1
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if len(runs) > 2:
            x += runs[-2]
        if not 0 <= x <= 2**32 - 1:
            return -1
        runs.append(x)
    return sum(runs)


def test_rle_pixel_totals_match_the_reference_decoder() -> None:
    rng = np.random.default_rng(0)
    strings, expected = [], []
    for _ in range(600):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        mask = rng.random((h, w)) > rng.random()
        s = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        assert _reference_total(s) == h * w
        if rng.random() < 0.6:
            chars = list(s)
            op = rng.integers(4)
            if op == 0:
                chars[rng.integers(len(chars))] = chr(rng.integers(32, 127))
            elif op == 1:
                chars = chars[: rng.integers(len(chars) + 1)]
            elif op == 2:
                chars.insert(rng.integers(len(chars) + 1), chr(rng.integers(40, 120)))
            else:
                chars += ["o", "o", "o"]
            s = "".join(chars)
        strings.append(s)
        expected.append(_reference_total(s))
    strings += ["", "é", "0", "oooooooo0"]
    expected += [-1, -1, 0, -1]
    assert rle_pixel_totals(strings).tolist() == expected
    assert sum(e == -1 for e in expected) > 50  # the corruptions did produce malformed strings


def test_lvis_fields_are_detected_as_lvis() -> None:
    dataset, _ = load_coco(require(LVIS_7))
    assert dataset.kind == "lvis"
    dataset, _ = load_coco(require(COCO_TRAIN))
    assert dataset.kind == "coco"


def test_save_coco_output_is_plain_json(tmp_path: Path) -> None:
    dataset, _ = load_coco(write(tmp_path / "in.json", tiny_coco()))
    save_coco(dataset, tmp_path / "out.json")
    assert set(json.loads((tmp_path / "out.json").read_text())) == {"info", "licenses", "images", "annotations", "categories"}


def test_export_of_many_edited_instances(tmp_path: Path) -> None:
    """More than 255 instances needing their area computed (pycocotools' area() breaks at 256 per call)."""
    data = tiny_coco()
    data["annotations"] = [
        {"id": k, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0} for k in range(1, 301)
    ]
    dataset, _ = load_coco(write(tmp_path / "in.json", data))
    report = save_coco(dataset, tmp_path / "out.json")
    anns = read(tmp_path / "out.json")["annotations"]
    assert report.counts["annotations"] == 300 and {a["area"] for a in anns} == {int(dataset.instances[0].area)}


def test_polygons_are_kept_as_text_and_rasterised_on_first_use() -> None:
    """Import does not rasterise: each polygon instance keeps its file's text until its mask is read."""
    from app.core.records import SourcePolygons

    dataset, _ = load_coco(require(LVIS_7))
    api = coco_api(LVIS_7)
    assert all(not inst.rasterised for inst in dataset.instances)
    assert all(isinstance(inst.original_segmentation["segmentation"], SourcePolygons) for inst in dataset.instances)
    inst = dataset.instances[0]
    assert inst.size == (api.imgs[inst.image_id]["height"], api.imgs[inst.image_id]["width"])
    assert not inst.rasterised  # the size needs no pixels
    assert np.array_equal(inst.mask(), api.annToMask(api.anns[inst.id]).astype(bool))
    assert inst.rasterised and inst.rle["counts"] == api.annToRLE(api.anns[inst.id])["counts"].decode()


def test_categories_of_one_name_are_labelled_with_their_ids():
    labels = category_labels([Category(1, "person"), Category(3, "dog"), Category(8, "person")])
    assert labels == {1: "person (id 1)", 3: "dog", 8: "person (id 8)"}
