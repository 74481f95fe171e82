"""encode_mask / decode_mask: the same RLE as pycocotools' own calls, for every layout a caller hands in."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.core.records import (
    Instance, MaskError, RLEError, decode_mask, encode_mask, rle_areas, rle_boxes, rle_geometry, rle_union,
)


def _shape() -> np.ndarray:
    mask = np.zeros((37, 53), np.uint8)
    cv2.ellipse(mask, (30, 18), (15, 9), 20, 0, 360, 1, thickness=-1)
    mask[15:20, 25:30] = 0  # a hole
    mask[30:35, 2:6] = 1  # a second part
    return mask


@pytest.mark.parametrize("layout", ["bool", "uint8", "uint8 of 255", "fortran", "strided view"])
def test_encode_matches_pycocotools(layout: str) -> None:
    mask = _shape()
    expected = mask_utils.encode(np.asfortranarray(mask))
    expected["counts"] = expected["counts"].decode("ascii")
    given = {
        "bool": mask.astype(bool),
        "uint8": mask,
        "uint8 of 255": mask * 255,
        "fortran": np.asfortranarray(mask.astype(bool)),
        "strided view": np.pad(mask, ((0, 0), (0, 53)))[:, :53],
    }[layout]
    assert encode_mask(given) == expected


def test_decode_is_row_major_bool_and_round_trips() -> None:
    mask = _shape().astype(bool)
    decoded = decode_mask(encode_mask(mask))
    assert decoded.dtype == bool and decoded.flags["C_CONTIGUOUS"]
    assert np.array_equal(decoded, mask)
    assert np.array_equal(decode_mask(mask_utils.encode(np.zeros((4, 6), np.uint8, order="F"))), np.zeros((4, 6), bool))


def test_encode_refuses_a_mask_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 3, 4), bool))


def test_areas_and_boxes_check_every_rle_before_pycocotools() -> None:
    """pycocotools reads a malformed string past its end and writes runs past its buffer: the checked
    functions refuse it first and say which of the list it was."""
    good = encode_mask(np.eye(6, 8, dtype=bool))
    bad = {"size": [6, 8], "counts": "2543571b"}  # its last character says more follows
    short = {"size": [6, 8], "counts": "0000"}
    assert rle_areas([good, good]) == [6, 6] and rle_boxes([good]).tolist() == [[0.0, 0.0, 6.0, 6.0]]
    areas, boxes = rle_geometry([good])
    assert areas == [6] and boxes.tolist() == [[0.0, 0.0, 6.0, 6.0]]
    for rles, index, words in (([good, bad], 1, "not a compressed RLE string"), ([short, good], 0, "covers 0 pixels"),
                               ([{"size": [-6, 8], "counts": good["counts"]}], 0, "is not an image size")):
        for checked in (rle_areas, rle_boxes, rle_geometry):
            with pytest.raises(RLEError, match=words) as caught:
                checked(rles)
            assert caught.value.index == index
    with pytest.raises(MaskError, match=r"^instance 5: its mask's RLE counts are not a compressed RLE string$"):
        Instance(5, 1, 1, bad).area
    with pytest.raises(MaskError, match=r"^instance 5: its mask's RLE covers 0 pixels"):
        Instance(5, 1, 1, short).bbox


def test_the_union_of_rles_is_their_masks_union_and_refuses_a_damaged_one() -> None:
    parts = [_shape().astype(bool), np.eye(37, 53, dtype=bool), np.zeros((37, 53), bool)]
    union = rle_union([encode_mask(m) for m in parts])
    assert np.array_equal(decode_mask(union), parts[0] | parts[1] | parts[2])
    with pytest.raises(RLEError, match="covers 0 pixels") as caught:
        rle_union([encode_mask(parts[0]), {"size": [37, 53], "counts": "0000"}])
    assert caught.value.index == 1
