"""The JSON reader that keeps each annotation's polygon text: same values as json.loads, texts cut exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.formats.json_polygons import loads_keeping_polygon_text
from tests.core.codec_samples import COCO_TRAIN, COCO_VAL, LABELME_COCO, LVIS_7, LVIS_100, require


@pytest.mark.parametrize("source", [COCO_TRAIN, COCO_VAL, LVIS_100, LVIS_7, LABELME_COCO], ids=lambda p: p.name)
def test_real_files_parse_as_json_loads_does_and_every_polygon_text_is_its_value(source: Path) -> None:
    text = require(source).read_text(encoding="utf-8")
    data, texts = loads_keeping_polygon_text(text, "annotations")
    assert data == json.loads(text)
    assert texts is not None and len(texts) == len(data["annotations"])
    for ann, polygon_text in zip(data["annotations"], texts):
        if isinstance(ann["segmentation"], list):
            assert polygon_text is not None and json.loads(polygon_text) == ann["segmentation"]
        else:
            assert polygon_text is None


def test_texts_keep_the_files_spelling_and_layout() -> None:
    text = (
        '{ "images" : [],\n  "annotations" : [\n'
        '   { "id": 1, "segmentation" : [ [1.50, 2, 1e1 , 4,\n 5, 6.0] ,\n [7, 8, 9, 10, 11, 12] ] , "area": 3 },\n'
        '   {"segmentation": [[0,0,1,0,1,1]], "id": 2}\n  ] }\n'
    )
    data, texts = loads_keeping_polygon_text(text, "annotations")
    assert data == json.loads(text)
    assert texts == ["[ [1.50, 2, 1e1 , 4,\n 5, 6.0] ,\n [7, 8, 9, 10, 11, 12] ]", "[[0,0,1,0,1,1]]"]


@pytest.mark.parametrize("annotation", [
    '{"id": 1, "note": "segmentation", "segmentation": [[0,0,1,0,1,1]]}',  # the token twice
    '{"id": 1, "meta": {"segmentation": [[9]]}, "segmentation": [[0,0,1,0,1,1]]}',  # a nested key
    '{"id": 1, "segmentation": [[5,5,6,5,6,6]], "segmentation": [[0,0,1,0,1,1]]}',  # a repeated key
    '{"id": 1, "segm\\u0065ntation": [[0,0,1,0,1,1]], "x": "segmentation"}',  # an escaped key
    '{"id": 1, "name": "a \\"quoted\\" name", "segmentation": [[0,0,1,0,1,1]]}',  # any backslash
    '{"id": 1, "segmentation": {"size": [2, 2], "counts": "04"}}',  # RLE
    '{"id": 1, "segmentation": []}',
    '{"id": 1, "segmentation": [0, 0, 1, 0, 1, 1]}',  # flat: not a list of lists
])
def test_ambiguous_records_get_no_text_and_the_same_values(annotation: str) -> None:
    text = f'{{"annotations": [{annotation}], "images": []}}'
    data, texts = loads_keeping_polygon_text(text, "annotations")
    assert data == json.loads(text)
    assert texts == [None]


def test_a_results_list_at_the_top_level() -> None:
    text = '[{"image_id": 1, "segmentation": [[0,0,1,0,1,1]], "score": 0.5}, {"image_id": 2, "score": 1}]'
    data, texts = loads_keeping_polygon_text(text, None)
    assert data == json.loads(text) and texts == ["[[0,0,1,0,1,1]]", None]


@pytest.mark.parametrize("text", [
    '{"annotations": [{"segmentation": [[0,0,1,0,1,1]]}], "annotations": 3}',  # the last key wins
    '{"images": []}',
    '[]',
    '{}',
    '"just a string"',
    '{"annotations": [1, 2, 3]}',
])
def test_other_documents_parse_as_json_loads_does(text: str) -> None:
    data, texts = loads_keeping_polygon_text(text, "annotations")
    assert data == json.loads(text)
    assert texts is None or all(t is None for t in texts)


@pytest.mark.parametrize("text", [
    '{"annotations": [{"id": 1,}]}',
    '{"annotations": [{"id": 1}] trailing',
    '{"annotations": [',
    '{"annotations" [1]}',
    '',
])
def test_invalid_json_raises_what_json_loads_raises(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        loads_keeping_polygon_text(text, "annotations")
    assert (got.value.msg, got.value.pos) == (expected.value.msg, expected.value.pos)


def test_a_flat_list_followed_by_nested_lists_gets_no_text() -> None:
    text = '{"annotations": [{"segmentation": [0, 0, 1, 0, 1, 1], "x": [[1]]}]}'
    assert loads_keeping_polygon_text(text, "annotations") == (json.loads(text), [None])
