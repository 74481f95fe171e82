"""The prompt service: a box on a project image -> a new instance with one PROMPTED provenance; a detector's results
file -> an instance per box, checked first, resumable; the refine selection and stats around prompted instances."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.core.errors import DatasetError
from app.core.metrics import iou
from app.core.records import ChangeKind, Provenance, ReviewStatus
from app.core.store.errors import ProjectError
from app.core.store.project import ProjectStore
from app.refiner.options import RefineOptions
from app.refiner.prompts import GrabCutSource, PromptError, PromptTool
from app.services.prompt import (
    BoxPrompt, PromptSettings, check_prompts, load_prompt_tool, progress_key, prompt_boxes, prompted_provenance,
    read_results_boxes, save_prompted, single_box,
)
from app.services.selection import Selection, select_instances
from app.services.stats import project_stats
from tests.services.prompt_samples import DISCS, make_project


@pytest.fixture
def sample(tmp_path: Path):
    return make_project(tmp_path)


def disc_box(image: int, k: int, pad: int = 6) -> tuple[int, int, int, int]:
    x, y, r = DISCS[image - 1][k]
    return x - r - pad, y - r - pad, x + r + pad, y + r + pad


def write_results(path: Path, detections: list) -> Path:
    path.write_text(json.dumps(detections))
    return path


def test_a_box_becomes_an_instance_with_one_prompted_provenance(sample):
    tool = PromptTool(GrabCutSource())
    with ProjectStore.open(sample.path) as store:
        prompt = single_box(store, 2, disc_box(2, 1), 1)
        report = prompt_boxes(store, tool, check_prompts(store, [prompt]))
        assert len(report.created) == 1 and report.images == 1 and not report.problems
        made = store.instance(report.created[0])
        history = store.history(made.id)
    assert iou(made.mask(), sample.truth[2][1]) > 0.9
    assert (made.image_id, made.category_id, made.status) == (2, 1, ReviewStatus.UNREVIEWED)
    assert made.provenance.kind is ChangeKind.PROMPTED
    assert (made.provenance.mode, made.provenance.weights, made.provenance.steps) == ("grabcut", None, 0)
    assert len(history) == 1 and history[0].action.value == "create"
    assert history[0].params == {"prompt": {"source": "grabcut", "box": [float(v) for v in disc_box(2, 1)]}}


def test_the_refiner_run_is_recorded(sample, random_weights):
    settings = PromptSettings("grabcut", refine=RefineOptions(weights=str(random_weights), device="cpu", steps=2))
    tool = load_prompt_tool(settings)
    assert prompted_provenance(tool).weights == random_weights.name and prompted_provenance(tool).steps == 2
    with ProjectStore.open(sample.path) as store:
        report = prompt_boxes(store, tool, check_prompts(store, [single_box(store, 1, disc_box(1, 1), 1)]))
        made = store.instance(report.created[0])
    assert made.mask().any()
    assert (made.provenance.kind, made.provenance.mode, made.provenance.weights, made.provenance.steps) == (
        ChangeKind.PROMPTED, "grabcut", random_weights.name, 2)


def test_save_prompted_takes_only_a_prompted_provenance(sample):
    with ProjectStore.open(sample.path) as store, pytest.raises(ValueError, match="PROMPTED"):
        save_prompted(store, 1, 1, sample.truth[1][0], Provenance.manual())


def test_a_results_file_gives_an_instance_per_box_with_its_score_and_category(sample, tmp_path):
    results = write_results(tmp_path / "det.json", [
        {"image_id": 1, "category_id": 1, "bbox": [30, 40, 80, 80], "score": 0.9},
        {"image_id": 2, "bbox": [56, 136, 68, 68], "score": 0.5},
        {"image_id": 2, "category_id": 2, "bbox": [10, 170, 70, 70]},
    ])
    boxes = read_results_boxes(results, default_category=1)
    assert [(b.image_id, b.category_id, b.score) for b in boxes] == [(1, 1, 0.9), (2, 1, 0.5), (2, 2, None)]
    assert boxes[0].box == (30.0, 40.0, 110.0, 120.0) and boxes[1].origin == "detection [1]"
    seen = []
    with ProjectStore.open(sample.path) as store:
        report = prompt_boxes(store, PromptTool(GrabCutSource()), check_prompts(store, boxes, results),
                              progress=lambda done, total, what: seen.append((done, total)))
        made = [store.instance(i) for i in report.created]
    assert [(m.image_id, m.category_id, m.score) for m in made] == [(1, 1, 0.9), (2, 1, 0.5), (2, 2, None)]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert iou(made[1].mask(), sample.truth[2][0]) > 0.85


@pytest.mark.parametrize("content, words", [
    ("[{\"image_id\": 1,", r"det.json: not valid JSON \(line 1"),
    ("{\"images\": []}", "det.json: a results file is a JSON list of detections, this is a JSON dict"),
    ("[]", "det.json: holds no detections"),
    ("[3]", r"det.json: detection \[0\]: is a int, not an object"),
    ("[{\"image_id\": \"a\", \"category_id\": 1, \"bbox\": [0, 0, 5, 5]}]", r"detection \[0\]: image_id must be an integer"),
    ("[{\"image_id\": 1, \"bbox\": [0, 0, 5, 5]}]", r"detection \[0\]: has no category_id"),
    ("[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 5]}]", r"bbox must be four finite numbers"),
    ("[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, \"5\", 5]}]", r"bbox must be four finite numbers"),
    ("[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 0, 5]}]", r"bbox \[0, 0, 0, 5\] is empty"),
    ("[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 5, 5], \"score\": \"high\"}]", "score must be a number"),
    ("", "det.json: file is empty"),
])
def test_a_malformed_results_file_gets_one_message_naming_the_file_and_detection(tmp_path, content, words):
    (tmp_path / "det.json").write_text(content)
    with pytest.raises(DatasetError, match=words):
        read_results_boxes(tmp_path / "det.json")


@pytest.mark.parametrize("detection, words", [
    ({"image_id": 9, "category_id": 1, "bbox": [0, 0, 20, 20]}, r"detection \[1\]: image id 9 is not in the project"),
    ({"image_id": 1, "category_id": 7, "bbox": [0, 0, 20, 20]}, r"detection \[1\]: category id 7 is not in the project"),
    ({"image_id": 1, "category_id": 1, "bbox": [400, 10, 20, 20]}, r"detection \[1\]: box .* lies outside the 320x240 image"),
    ({"image_id": 1, "category_id": 1, "bbox": [318, 10, 20, 20]}, r"detection \[1\]: box .* is empty or degenerate"),
])
def test_bad_boxes_stop_the_run_before_anything_is_saved(sample, tmp_path, detection, words):
    results = write_results(tmp_path / "det.json", [{"image_id": 1, "category_id": 1, "bbox": [30, 40, 80, 80]}, detection])
    with ProjectStore.open(sample.path) as store:
        with pytest.raises(DatasetError, match=f"det.json: .*{words}"):
            check_prompts(store, read_results_boxes(results), results)
        assert store.count_instances() == 2


def test_every_problem_is_counted_and_a_missing_image_file_is_one(sample, tmp_path):
    (sample.images_dir / "photo2.png").unlink()
    results = write_results(tmp_path / "det.json", [{"image_id": 3, "category_id": 1, "bbox": [0, 0, 20, 20]},
                                                    {"image_id": 9, "category_id": 1, "bbox": [0, 0, 20, 20]}])
    with ProjectStore.open(sample.path) as store:
        with pytest.raises(DatasetError, match=r"detection \[0\]: image 3: photo2.png: image file not found.*\(and 1 more"):
            check_prompts(store, read_results_boxes(results), results)
        with pytest.raises(DatasetError, match=r"photos.srproj: image 3: photo2.png: image file not found") as caught:
            check_prompts(store, [single_box(store, 3, (0, 0, 20, 20), 1)])
        assert "image 3: image 3" not in str(caught.value)  # the box's own origin names the image once


def test_one_box_needs_a_known_image_and_a_category_when_there_are_several(sample):
    with ProjectStore.open(sample.path) as store:
        with pytest.raises(ProjectError, match="photos.srproj: no image with id 42"):
            single_box(store, 42, (0, 0, 20, 20), 1)
        with pytest.raises(ProjectError, match="give the new instance's category"):
            single_box(store, 1, (0, 0, 20, 20), None)
        with pytest.raises(PromptError, match="four numbers"):
            single_box(store, 1, (0, 0, 20), 1)
        with pytest.raises(DatasetError, match="image 1: box .* is empty or degenerate"):
            check_prompts(store, [single_box(store, 1, (10, 10, 10, 50), 1)])


def test_a_stopped_run_goes_on_where_it_left_off(sample, tmp_path):
    results = write_results(tmp_path / "det.json", [
        {"image_id": 1, "category_id": 1, "bbox": [30, 40, 80, 80]},
        {"image_id": 2, "category_id": 1, "bbox": [56, 136, 68, 68]},
        {"image_id": 3, "category_id": 1, "bbox": [120, 80, 80, 80]},
    ])
    key = progress_key(results)
    tool = PromptTool(GrabCutSource())
    with ProjectStore.open(sample.path) as store:
        boxes = check_prompts(store, read_results_boxes(results), results)
        first = prompt_boxes(store, tool, boxes, resume_key=key, should_stop=lambda: store.count_instances() > 3)
        assert first.stopped and [store.instance(i).image_id for i in first.created] == [1, 2]
        second = prompt_boxes(store, tool, boxes, resume_key=key)
        assert second.resumed == 2 and [store.instance(i).image_id for i in second.created] == [3]
        assert store.count_instances() == 5
        assert prompt_boxes(store, tool, boxes, resume_key=key).created == []


def test_an_unreadable_image_is_reported_and_the_others_done(sample):
    (sample.images_dir / "photo0.png").write_bytes(b"not a png")
    with ProjectStore.open(sample.path) as store:
        boxes = [BoxPrompt(1, disc_box(1, 0), 1), BoxPrompt(2, disc_box(2, 0), 1)]
        report = prompt_boxes(store, PromptTool(GrabCutSource()), boxes)
        assert [store.instance(i).image_id for i in report.created] == [2]
    assert len(report.problems) == 1 and "photo0.png" in report.problems[0]


@pytest.mark.parametrize("kwargs, words", [
    ({"source": "magic"}, "one of encoder, grabcut, sam"),
    ({"source": "sam"}, "needs a checkpoint"),
    ({"source": "encoder", "sam_checkpoint": Path("sam.pth")}, "choose --source sam"),
])
def test_settings_say_what_is_missing(kwargs, words):
    with pytest.raises(ValueError, match=words):
        PromptSettings(**kwargs)


def test_prompted_instances_count_as_refined_for_the_refine_queue_and_in_stats(sample):
    with ProjectStore.open(sample.path) as store:
        made = prompt_boxes(store, PromptTool(GrabCutSource()), [BoxPrompt(2, disc_box(2, 0), 1)]).created[0]
        assert made not in sum(select_instances(store, Selection()).values(), [])
        assert made in sum(select_instances(store, Selection(redo=True)).values(), [])
    stats = project_stats(sample.path)
    assert stats["by_last_change"]["prompted"] == 1 and stats["by_last_change"]["imported"] == 2


def test_a_box_in_which_nothing_is_found_makes_no_instance_and_says_so(sample):
    class FindsNothing:  # a coarse source whose answer is empty, as GrabCut's can be on a bare background
        name = "finds-nothing"

        def segment(self, image, prompt):  # type: ignore[no-untyped-def]
            return np.zeros(image.shape[:2], bool)

    with ProjectStore.open(sample.path) as store:
        before = store.count_instances()
        report = prompt_boxes(store, PromptTool(FindsNothing()), [BoxPrompt(2, disc_box(2, 0), 1, origin="detection [0]")])
        assert report.created == [] and store.count_instances() == before
    assert report.problems == [f"detection [0]: nothing was found in the box {disc_box(2, 0)}; no instance made"]
