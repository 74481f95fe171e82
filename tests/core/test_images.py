"""Image files: header sizes for PNG and JPEG, decoding, and one clear error per bad file."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.errors import DatasetError
from app.core.images import check_image_files, find_image_file, probe_image_size, read_image_rgb
from app.core.records import ImageRecord
from app.core.report import ImportReport
from tests.core.codec_samples import DATA, require


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
def test_probe_and_read_agree(ext: str, tmp_path: Path) -> None:
    image = np.zeros((37, 53, 3), np.uint8)
    image[..., 0] = 200  # blue in OpenCV's BGR
    path = tmp_path / f"x{ext}"
    cv2.imwrite(str(path), image)
    assert probe_image_size(path) == (53, 37)
    rgb = read_image_rgb(path)
    assert rgb.shape == (37, 53, 3) and rgb.dtype == np.uint8 and rgb[0, 0, 2] > 150  # now in RGB order


def test_probe_reads_real_jpeg_headers() -> None:
    folder = require(DATA / "coco_tiny" / "val2017")
    for path in sorted(folder.glob("*.jpg"))[:10]:
        height, width = read_image_rgb(path).shape[:2]
        assert probe_image_size(path) == (width, height)


def test_grey_16_bit_images_become_8_bit_rgb(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), np.full((4, 6), 65535, np.uint16))
    rgb = read_image_rgb(path)
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8 and rgb.max() == 255


@pytest.mark.parametrize("content, problem", [(None, "not found"), (b"", "empty"), (b"\xff\xd8garbage", "not a readable image"),
                                              (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "not a readable image")])
def test_bad_image_files_raise_one_clear_error(content: bytes | None, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    for read in (read_image_rgb, probe_image_size):
        with pytest.raises(DatasetError, match=problem) as err:
            read(path)
        assert str(err.value).startswith("broken.jpg: ")


def test_find_and_check_image_files(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 20, 3), np.uint8))
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    records = [
        ImageRecord(1, "sub/a.png", 20, 10),  # found by its base name
        ImageRecord(2, "b.png", 20, 10),  # missing
        ImageRecord(3, "c.jpg", 20, 10),  # corrupt
        ImageRecord(4, "x.png", 21, 10, extra={"coco_url": "http://h/val2017/a.png"}),  # by coco_url, wrong size
    ]
    assert find_image_file(tmp_path, records[0]) == tmp_path / "a.png"
    report = ImportReport("test")
    check_image_files(records, tmp_path, report)
    assert [(p.record, p.action) for p in report.problems] == [("image 2", "kept"), ("image 3", "kept"), ("image 4", "kept")]
    assert "not found" in report.problems[0].problem and "not a readable image" in report.problems[1].problem
    assert report.problems[2].problem == "image file is 20x10 but the annotations say 21x10"
