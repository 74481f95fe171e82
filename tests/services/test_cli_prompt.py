"""``prompt`` and ``find-similar`` on the command line: they save what they say, and bad input gets one message
naming the file or record, exit status 2 and nothing saved."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from app.core.records import ChangeKind
from app.core.store.project import ProjectStore
from app.main import main
from tests.services.prompt_samples import instance_count, make_project


@pytest.fixture
def sample(tmp_path: Path):
    return make_project(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prompt_a_box_saves_one_instance(sample, capsys):
    code, out, _ = run(capsys, "prompt", "--project", sample.path, "--image", 2, "--box", "52,132,128,208",
                       "--category", 1, "--source", "grabcut", "--steps", 0)
    assert code == 0 and "grabcut source, no refiner" in out and "created 1 instance on 1 image" in out
    with ProjectStore.open(sample.path, read_only=True) as store:
        made = store.list_instances()[-1]
    assert (made.image_id, made.category_id, made.provenance_kind) == (2, 1, ChangeKind.PROMPTED)


def test_prompt_boxes_of_a_results_file_resumes_without_duplicates(sample, capsys, tmp_path):
    results = tmp_path / "det.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [30, 40, 80, 80], "score": 0.8},
                                   {"image_id": 3, "category_id": 1, "bbox": [120, 80, 80, 80], "score": 0.7}]))
    argv = ("prompt", "--project", sample.path, "--boxes", results, "--source", "grabcut", "--steps", 0)
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "created 2 instances on 2 images" in out
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "created 0 instances on 0 images" in out and "2 done by an earlier run" in out
    assert instance_count(sample.path) == 4


@pytest.mark.parametrize("args, words", [
    (["--image", 1, "--box", "10,10,10,50", "--category", 1], "image 1: box (10.0, 10.0, 10.0, 50.0) is empty or degenerate"),
    (["--image", 1, "--box", "400,10,500,50", "--category", 1], "lies outside the 320x240 image"),
    (["--image", 1, "--box", "60,50,40,30", "--category", 1], "--box takes the corners x0,y0,x1,y1 with x1 >= x0"),
    (["--image", 42, "--box", "10,10,50,50", "--category", 1], "photos.srproj: no image with id 42"),
    (["--image", 1, "--box", "10,10,50,50", "--category", 9], "category id 9 is not in the project"),
    (["--image", 1, "--box", "10,10,50,50"], "give the new instance's category (--category)"),
    (["--box", "10,10,50,50", "--category", 1], "--box needs --image ID"),
    (["--image", 1, "--box", "10,10,50,50", "--steps", 9], "steps must be in 1..6"),
])
def test_prompt_bad_input_exits_2_with_one_message_and_saves_nothing(sample, capsys, args, words):
    code, out, err = run(capsys, "prompt", "--project", sample.path, "--source", "grabcut", *args)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert instance_count(sample.path) == 2


def test_prompt_with_sam_needs_its_checkpoint(sample, capsys):
    code, out, err = run(capsys, "prompt", "--project", sample.path, "--image", 1, "--box", "10,10,50,50", "--source", "sam")
    assert code == 2 and "the SAM source needs a checkpoint" in err, err


@pytest.mark.parametrize("content, words", [
    ("[{\"image_id\": 1", "det.json: not valid JSON"),
    ("[{\"image_id\": 5, \"category_id\": 1, \"bbox\": [0, 0, 9, 9]}]", "det.json: detection [0]: image id 5 is not in the project"),
])
def test_prompt_a_malformed_results_file_exits_2(sample, capsys, tmp_path, content, words):
    (tmp_path / "det.json").write_text(content)
    code, _, err = run(capsys, "prompt", "--project", sample.path, "--boxes", tmp_path / "det.json", "--source", "grabcut")
    assert code == 2 and words in err, err
    assert instance_count(sample.path) == 2


def test_prompt_a_box_that_is_not_numbers_is_a_usage_error(sample, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["prompt", "--project", str(sample.path), "--image", "1", "--box", "a,b,c,d"])
    assert stop.value.code == 2 and "expected numbers separated by commas" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("segment_anything") is None, reason="the optional extra sam is not installed")
def test_prompt_with_a_sam_file_of_the_wrong_shape_exits_2(sample, capsys, tmp_path):
    import torch

    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16)}, tmp_path / "sam_bad.pth")
    code, _, err = run(capsys, "prompt", "--project", sample.path, "--image", 1, "--box", "10,10,60,60", "--category", 1,
                       "--source", "sam", "--sam-checkpoint", tmp_path / "sam_bad.pth", "--steps", 0)
    assert code == 2 and "sam_bad.pth: not a SAM checkpoint" in err, err
    assert instance_count(sample.path) == 2


def test_prompt_averages_the_heads_it_is_given_and_refuses_a_mismatched_one(sample, capsys, tmp_path):
    from app.refiner.prompt_head import PromptHead, PromptHeadConfig, save_head

    for name, canvas in (("a.safetensors", 64), ("b.safetensors", 64), ("c.safetensors", 96)):
        save_head(PromptHead(PromptHeadConfig(canvas=canvas, widths=(16, 16, 8))), tmp_path / name, {})
    argv = ("prompt", "--project", sample.path, "--image", 2, "--box", "52,132,128,208", "--category", 1, "--steps", 0)
    code, _, err = run(capsys, *argv, "--head", tmp_path / "a.safetensors", "--head", tmp_path / "c.safetensors")
    assert code == 2 and err.count("\n") == 1 and "c.safetensors: its canvas is 96 px" in err, err
    assert instance_count(sample.path) == 2
    code, out, _ = run(capsys, *argv, "--head", tmp_path / "a.safetensors", "--head", tmp_path / "b.safetensors")
    assert code == 0 and "encoder source, no refiner" in out and "created 1 instance " in out, out
    assert instance_count(sample.path) == 3


def test_find_similar_proposes_and_says_how_many(sample, capsys):
    code, out, _ = run(capsys, "find-similar", "--project", sample.path, "--instance", sample.example_id,
                       "--threshold", 0.35, "--steps", 0, "--images", "2,3")
    assert code == 0 and "proposed 3 instances on 2 of 2 images" in out, out
    with ProjectStore.open(sample.path, read_only=True) as store:
        assert sum(r.provenance_kind is ChangeKind.PROPOSED for r in store.list_instances()) == 3
    code, out, _ = run(capsys, "export", "--project", sample.path, "--format", "coco", "--out",
                       sample.path.parent / "out.json", "--include-proposed")
    assert code == 0 and len(json.loads((sample.path.parent / "out.json").read_text())["annotations"]) == 5


@pytest.mark.parametrize("args, words", [
    (["--instance", 77], "photos.srproj: no instance with id 77"),
    (["--instance", "1,2"], "the examples must be of one category"),
    (["--instance", 1, "--images", "1,8"], "photos.srproj: no image with id 8"),
    (["--instance", 1, "--threshold", 2], "the threshold is a cosine similarity in (-1, 1)"),
    (["--instance", 1, "--images", "foo"], "argument --images: expected ids separated by commas, got 'foo'"),
])
def test_find_similar_bad_input_exits_2_and_saves_nothing(sample, capsys, args, words):
    try:
        code, _, err = run(capsys, "find-similar", "--project", sample.path, "--steps", 0, *args)
    except SystemExit as usage:  # argparse's own errors
        code, err = usage.code, capsys.readouterr().err
    assert code == 2 and words in err, err
    assert instance_count(sample.path) == 2
