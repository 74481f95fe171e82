"""Property: random corruptions of a real COCO file never crash the importer with anything but DatasetError,
and whatever it accepts decodes at the image's size and exports again."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.core.formats.coco import load_coco
from app.core.formats.coco_export import save_coco
from app.core.errors import DatasetError
from tests.core.codec_samples import COCO_VAL, coco_api, require


def _sample() -> dict[str, Any]:
    """Three real coco_tiny images: polygons with several parts, a crowd (uncompressed) RLE, and one
    annotation turned into compressed RLE so every encoding meets the corruptions."""
    data = json.loads(require(COCO_VAL).read_text())
    crowd_image = next(a["image_id"] for a in data["annotations"] if a["iscrowd"])
    multi_image = next(a["image_id"] for a in data["annotations"] if len(a["segmentation"]) > 2 and not a["iscrowd"])
    keep = {crowd_image, multi_image, data["images"][0]["id"]}
    anns = [a for a in data["annotations"] if a["image_id"] in keep][:14]
    api = coco_api(COCO_VAL)
    polygon_ann = next(a for a in anns if not a["iscrowd"])
    rle = api.annToRLE(api.anns[polygon_ann["id"]])
    polygon_ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    used = {a["category_id"] for a in anns}
    return {
        "info": {"note": "fuzz sample"},
        "images": [i for i in data["images"] if i["id"] in keep],
        "annotations": anns,
        "categories": [c for c in data["categories"] if c["id"] in used] + data["categories"][:2],
    }


SAMPLE = _sample() if COCO_VAL.exists() else None

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        out += _paths(child, prefix + (key,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    data = json.loads(json.dumps(SAMPLE))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "swap"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(json_values)
        else:
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path and path[: len(other)] != other:  # neither inside the other
                other_parent = _get(data, other[:-1])
                parent[key], other_parent[other[-1]] = other_parent[other[-1]], parent[key]
    text = json.dumps(data).encode()
    op = draw(st.sampled_from(["none", "none", "none", "truncate", "overwrite", "insert"]))
    if op != "none":
        at = draw(st.integers(0, len(text)))
        noise = draw(st.binary(min_size=1, max_size=8))
        text = {"truncate": text[:at], "overwrite": text[:at] + noise + text[at + len(noise):],
                "insert": text[:at] + noise + text[at:]}[op]
    return text


@pytest.mark.skipif(SAMPLE is None, reason=f"real data not found: {COCO_VAL}")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(content=corrupted())
def test_corrupted_files_raise_only_dataset_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances.json"
        path.write_bytes(content)
        try:
            dataset, report = load_coco(path)
        except DatasetError as e:
            assert str(e).startswith("instances.json: ")
            event("DatasetError")
            return
        event("imported with problems" if report.problems else "imported cleanly")
        for problem in report.problems:
            assert problem.problem and problem.action
        for inst in dataset.instances:
            image = dataset.images[inst.image_id]
            assert inst.mask().shape == (image.height, image.width)
            assert inst.category_id in dataset.categories
        for segmentation in ("rle", "polygon"):
            save_coco(dataset, Path(tmp) / f"out_{segmentation}.json", segmentation=segmentation)
            again, again_report = load_coco(Path(tmp) / f"out_{segmentation}.json")
            assert again_report.ok
            assert [i.id for i in again.instances] == [i.id for i in dataset.instances]
            for a, b in zip(dataset.instances, again.instances):
                assert np.array_equal(a.mask(), b.mask())
