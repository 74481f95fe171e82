"""Crafted input files that used to slip through or end in a misleading message (issue 16 cases 3, 5, 6, 9
and 10): validate and import agree, name the file and the record, and say what was done."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.core.store.project import ProjectStore
from app.main import main
from tests.core.codec_samples import tiny_coco, write

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _problem_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("  ")]


# ------------------------------------------------------------------------------------- 3: area and bbox
@pytest.mark.parametrize("key, value, problem", [
    ("area", math.nan, "'area' is NaN, not a finite number"),
    ("area", math.inf, "'area' is Infinity, not a finite number"),
    ("area", -5.0, "'area' is -5.0, negative"),
    ("area", 2**70, "'area' is 1180591620717411303424, more than the image's 1200 pixels"),
    ("bbox", [5, 5, math.nan, 10], "'bbox' [5, 5, NaN, 10] is not 4 finite numbers"),
    ("bbox", [5, 5, -10, 10], "'bbox' [5, 5, -10, 10] has a negative width or height"),
    ("bbox", [5, 5, 10, 2**70], "'bbox' [5, 5, 10, 1180591620717411303424] lies far outside the 40x30 image"),
])
def test_unusable_area_or_bbox_is_reported_alike_by_validate_and_import_then_recomputed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any, problem: str
) -> None:
    data = tiny_coco()
    data["annotations"][0][key] = value
    source = write(tmp_path / "instances.json", data)
    expected = f"{source}: annotation 17: {problem} (recomputed from the mask)"
    code, out, _ = cli(capsys, "validate", source)
    assert code == 1 and _problem_lines(out) == [expected]
    code, out, _ = cli(capsys, "import", source)
    assert code == 0 and _problem_lines(out) == [expected]
    with ProjectStore.open(tmp_path / "instances.srproj", read_only=True) as store:
        [summary] = [s for s in store.list_instances() if s.id == 17]
        assert (summary.area, summary.bbox) == (100, (5.0, 5.0, 10.0, 10.0))  # the square's own pixels
    code, out, _ = cli(capsys, "export", "--project", tmp_path / "instances.srproj", "--out", tmp_path / "o.json")
    assert code == 0
    [ann] = [a for a in json.loads((tmp_path / "o.json").read_text())["annotations"] if a["id"] == 17]
    assert (ann["area"], ann["bbox"]) == (100, [5.0, 5.0, 10.0, 10.0])


def test_usable_area_and_bbox_are_kept_as_the_file_had_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_coco()
    data["annotations"][0].update(area=0, bbox=[-0.5, 0, 40, 30])  # odd but possible: kept as written
    source = write(tmp_path / "instances.json", data)
    code, out, _ = cli(capsys, "validate", source)
    assert code == 0 and _problem_lines(out) == []


# ------------------------------------------------------------------------------------- 5: nothing found
def _images(folder: Path) -> Path:
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((10, 12, 3), np.uint8))
    return folder


def test_masks_that_match_no_image_import_nothing_but_empty_masks_do(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    images = _images(tmp_path / "images")
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(str(masks / "other.png"), np.full((10, 12), 1, np.uint8))  # no image "other" under images/
    code, _, err = cli(capsys, "import", masks, "--images", images, "--project", tmp_path / "p.srproj")
    assert code == 2 and "no usable masks: nothing to import" in err and "no image other.*" in err
    assert not (tmp_path / "p.srproj").exists()
    (masks / "other.png").unlink()
    cv2.imwrite(str(masks / "a.png"), np.zeros((10, 12), np.uint8))  # the image's mask, with no object yet
    code, out, _ = cli(capsys, "import", masks, "--images", images, "--project", tmp_path / "p.srproj")
    assert code == 0 and "1 image," in out


@pytest.mark.parametrize("name", ["masks", "x.json"])
@pytest.mark.parametrize("fmt", [None, "png-labels", "png-instances"])
def test_a_folder_without_png_masks_imports_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, fmt: str | None
) -> None:
    images = _images(tmp_path / "images")
    source = tmp_path / name
    source.mkdir()
    (source / "notes.txt").write_text("no masks here")
    project = tmp_path / "p.srproj"
    for command in ("validate", "import"):
        argv = [command, source, "--images", images, *(["--format", fmt] if fmt else [])]
        code, out, err = cli(capsys, *argv, *(["--project", project] if command == "import" else []))
        assert code == 2, out
        assert err.startswith(f"error: {source}: ") and "no PNG masks" in err and "nothing to import" in err
    assert not project.exists()


def test_a_folder_named_like_a_json_file_is_called_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").mkdir()
    code, _, err = cli(capsys, "import", tmp_path / "x.json")
    assert code == 2
    assert err.startswith(f"error: {tmp_path / 'x.json'}: ") and "a folder" in err and "no PNG masks" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "x.json"]


def test_a_file_without_images_imports_nothing_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "instances.json", {"images": [], "annotations": [], "categories": []})
    for command in ("validate", "import"):
        code, _, err = cli(capsys, command, source)
        assert code == 2 and err.startswith(f"error: {source}: ") and "nothing to import" in err
    assert not (tmp_path / "instances.srproj").exists()


def test_a_file_whose_images_are_all_unusable_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_coco()
    for image in data["images"]:
        image["width"] = 0
    code, _, err = cli(capsys, "import", write(tmp_path / "instances.json", data))
    assert code == 2 and "no usable images" in err and "image 1: width 0 and height 30 are not a valid image size" in err


# ------------------------------------------------------------------------------------- 6: truncated images
def _jpeg(path: Path, keep: float = 1.0, tail: bytes = b"") -> Path:
    pixels = np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)
    data = cv2.imencode(".jpg", pixels)[1].tobytes()
    path.write_bytes(data[: int(len(data) * keep)] + tail)
    return path


def _png(path: Path, keep: float = 1.0) -> Path:
    data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8))[1].tobytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("make, problem", [
    (lambda p: _jpeg(p, keep=0.6), "JPEG ends before its end-of-image marker: truncated, or extra bytes follow it"),
    (lambda p: _png(p, keep=0.6), "PNG ends before its IEND chunk: truncated, or extra bytes follow it"),
])
def test_a_truncated_image_is_reported_by_validate_and_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, problem: str
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _jpeg(images / "a.jpg")
    make(images / "b.jpg")
    source = write(tmp_path / "instances.json", tiny_coco())
    expected = f"{images / 'b.jpg'}: image 2: {problem} (kept)"
    for command in ("validate", "import"):
        code, out, _ = cli(capsys, command, source, "--images", images)
        assert _problem_lines(out) == [expected]
        assert code == (1 if command == "validate" else 0)


def test_whole_images_with_padding_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _jpeg(images / "a.jpg", tail=b"\x00" * 16)  # some cameras pad after the end marker
    _png(images / "b.jpg")  # a PNG under a .jpg name is read by content
    code, out, _ = cli(capsys, "validate", write(tmp_path / "instances.json", tiny_coco()), "--images", images)
    assert code == 0, out


def test_a_truncated_image_in_a_png_mask_import_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _jpeg(images / "a.jpg", keep=0.6)
    cv2.imwrite(str(masks / "a_mask.png"), np.ones((30, 40), np.uint8))
    cv2.imwrite(str(images / "b.png"), np.zeros((30, 40, 3), np.uint8))
    cv2.imwrite(str(masks / "b_mask.png"), np.ones((30, 40), np.uint8))
    code, out, _ = cli(capsys, "validate", masks, "--images", images)
    assert code == 1
    assert f"{images / 'a.jpg'}: a.jpg: JPEG ends before its end-of-image marker" in out


# ------------------------------------------------------------------------------------- 9: looping links
@posix_only
def test_a_looping_link_is_reported_in_coco_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _jpeg(images / "a.jpg")
    os.symlink("b.jpg", images / "b.jpg")
    code, out, _ = cli(capsys, "validate", write(tmp_path / "instances.json", tiny_coco()), "--images", images)
    assert code == 1
    assert _problem_lines(out) == [
        f"{images / 'b.jpg'}: image 2: is a symbolic link that loops (it leads back to itself) (kept)"]


@posix_only
def test_looping_and_dangling_links_are_reported_in_png_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((10, 12, 3), np.uint8))
    cv2.imwrite(str(masks / "a_mask.png"), np.ones((10, 12), np.uint8))
    os.symlink("c.png", images / "b.png")
    os.symlink("b.png", images / "c.png")
    os.symlink("gone.png", masks / "d_mask.png")
    code, out, _ = cli(capsys, "validate", masks, "--images", images)
    assert code == 1
    assert _problem_lines(out) == [
        f"{images / 'b.png'}: b.png: is a symbolic link that loops (it leads back to itself) (skipped)",
        f"{images / 'c.png'}: c.png: is a symbolic link that loops (it leads back to itself) (skipped)",
        f"{masks / 'd_mask.png'}: d_mask.png: is a symbolic link to gone.png, which does not exist (skipped)",
    ]


# ------------------------------------------------------------------------------------- 10: encodings
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_json_in_another_unicode_encoding_is_detected_and_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str
) -> None:
    data = tiny_coco()
    data["categories"][0]["name"] = "chat noir \u00e9\u6f22"
    source = tmp_path / "instances.json"
    source.write_bytes(json.dumps(data, ensure_ascii=False).encode(encoding))
    code, out, err = cli(capsys, "import", source)
    assert code == 0, err
    assert "3 instances" in out and "0 problems" in out
    code, _, err = cli(capsys, "export", "--project", tmp_path / "instances.srproj", "--out", tmp_path / "o.json")
    assert code == 0, err
    exported = json.loads((tmp_path / "o.json").read_text(encoding="utf-8"))
    assert exported["categories"][0]["name"] == "chat noir \u00e9\u6f22"
    assert [a["segmentation"] for a in exported["annotations"]] == [a["segmentation"] for a in data["annotations"]]


def test_results_in_utf16_are_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = write(tmp_path / "meta.json", tiny_coco())
    predictions = [{"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "score": 0.9}]
    source = tmp_path / "results.json"
    source.write_bytes(json.dumps(predictions).encode("utf-16"))
    code, out, err = cli(capsys, "validate", source, "--images-file", meta)
    assert code == 0, err
    assert "1 instance;" in out


def test_text_in_no_unicode_encoding_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "instances.json"
    source.write_bytes(json.dumps(tiny_coco()).replace("cat", "ch\u00e2t").encode("latin-1"))
    code, _, err = cli(capsys, "import", source)
    assert code == 2 and err.startswith(f"error: {source}: ") and "UTF-8" in err
