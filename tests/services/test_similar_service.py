"""The find-similar service: examples -> proposals saved with a PROPOSED provenance and a score, features cached
beside the project and invalidated when an image changes, proposals left out of exports and the refine queue
until accepted, bad input refused before anything is saved, progress and stop between images."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.metrics import iou
from app.core.records import ChangeKind, ReviewStatus
from app.core.store.errors import ProjectError
from app.core.store.project import ProjectStore
from app.refiner import similar as engine
from app.refiner.similar import SimilarError
from app.services.datasets import export_project
from app.services.selection import Selection, select_instances
from app.services.similar import (
    INDEX_NAME, ProjectSimilar, SimilarSettings, features_folder, find_similar, load_finder, target_images,
)
from app.services.stats import project_stats
from tests.services.prompt_samples import make_project

THRESHOLD = 0.35  # the synthetic discs score about 0.55, the rest of the photos under 0.3


@pytest.fixture
def sample(tmp_path: Path):
    return make_project(tmp_path)


@pytest.fixture
def finder(sample):
    return load_finder(sample.path, SimilarSettings(THRESHOLD, refine=None))


def test_every_disc_is_proposed_once_with_its_score(sample, finder):
    seen = []
    with ProjectStore.open(sample.path) as store:
        report = find_similar(store, finder, [sample.example_id], threshold=THRESHOLD,
                              progress=lambda done, total, what: seen.append((done, total, what)))
        made = [store.instance(i) for i in report.created]
        history = store.history(made[0].id)
    truths = [(image, truth) for image in sample.image_ids for k, truth in enumerate(sample.truth[image])
              if (image, k) != (1, 0)]
    assert len(made) == len(truths) == 4 and report.searched == 3 and not report.problems
    for image, truth in truths:
        assert any(m.image_id == image and iou(m.mask(), truth) > 0.9 for m in made), image
    for m in made:
        assert (m.category_id, m.status, m.provenance.kind) == (1, ReviewStatus.UNREVIEWED, ChangeKind.PROPOSED)
        assert (m.provenance.mode, m.provenance.weights, m.provenance.steps) == ("encoder", None, 0)
        assert 0.35 <= m.score <= 1
    assert history[0].params == {"find_similar": {"examples": [sample.example_id], "threshold": THRESHOLD}}
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)] and seen[1][2] == "image 2: 2 proposals"


def test_a_second_search_proposes_nothing_new(sample, finder):
    with ProjectStore.open(sample.path) as store:
        first = find_similar(store, finder, [sample.example_id], threshold=THRESHOLD)
        again = find_similar(store, finder, [sample.example_id], [2, 3], threshold=THRESHOLD)
    assert len(first.created) == 4 and again.created == [] and again.searched == 2


def test_features_are_cached_beside_the_project_and_renewed_when_an_image_changes(sample, finder, monkeypatch):
    folder = features_folder(sample.path)
    assert folder == sample.path.parent / "photos.features"
    with ProjectStore.open(sample.path) as store:
        find_similar(store, finder, [sample.example_id], threshold=THRESHOLD)
    cached = sorted(folder.glob("*.npy"))
    index = json.loads((folder / INDEX_NAME).read_text())
    assert len(cached) == 3 and sorted(index) == ["1", "2", "3"]
    computed = []
    original = engine.compute_features
    monkeypatch.setattr(engine, "compute_features", lambda image: computed.append(image.shape) or original(image))
    with ProjectStore.open(sample.path) as store:
        find_similar(store, finder, [sample.example_id], threshold=THRESHOLD)
    assert computed == []
    path = sample.images_dir / "photo2.png"
    image = cv2.imread(str(path))
    cv2.imwrite(str(path), cv2.flip(image, 1))
    with ProjectStore.open(sample.path) as store:
        find_similar(store, finder, [sample.example_id], [3], threshold=THRESHOLD)
    assert len(computed) == 1
    assert len(list(folder.glob("*.npy"))) == 3 and index["3"][0] not in " ".join(p.name for p in folder.glob("*.npy"))


def test_proposals_are_exported_only_once_accepted_unless_asked(sample, finder, tmp_path):
    with ProjectStore.open(sample.path) as store:
        made = find_similar(store, finder, [sample.example_id], threshold=THRESHOLD).created
        store.set_status(made[0], ReviewStatus.ACCEPTED)
        store.set_status(made[1], ReviewStatus.REJECTED)
    report = export_project(sample.path, "coco", tmp_path / "out.json")
    exported = {a["id"] for a in json.loads((tmp_path / "out.json").read_text())["annotations"]}
    assert exported == {1, 2, made[0]}
    assert report.counts["proposals not accepted (left out)"] == 3
    export_project(sample.path, "coco", tmp_path / "all.json", include_proposed=True)
    assert len(json.loads((tmp_path / "all.json").read_text())["annotations"]) == 6
    export_project(sample.path, "coco", tmp_path / "accepted.json", accepted_only=True)
    assert [a["id"] for a in json.loads((tmp_path / "accepted.json").read_text())["annotations"]] == [made[0]]
    stats = project_stats(sample.path)
    assert stats["proposals_pending"] == 3 and stats["by_last_change"]["proposed"] == 4


def test_a_proposal_edited_by_hand_is_the_annotators(sample, finder, tmp_path):
    with ProjectStore.open(sample.path) as store:
        made = find_similar(store, finder, [sample.example_id], threshold=THRESHOLD).created
        store.set_mask(made[0], store.instance(made[0]).mask())
    export_project(sample.path, "coco", tmp_path / "out.json")
    assert made[0] in {a["id"] for a in json.loads((tmp_path / "out.json").read_text())["annotations"]}


def test_the_refine_queue_never_takes_proposals(sample, finder):
    with ProjectStore.open(sample.path) as store:
        made = set(find_similar(store, finder, [sample.example_id], threshold=THRESHOLD).created)
        for selection in (Selection(), Selection(statuses=None, redo=True)):
            assert not made & set(sum(select_instances(store, selection).values(), []))


@pytest.mark.parametrize("instances, images, error, words", [
    ([99], None, ProjectError, "photos.srproj: no instance with id 99"),
    ([1, 2], None, SimilarError, r"one category; instances \[1, 2\] are of categories \[1, 2\]"),
    ([], None, SimilarError, "at least one example"),
    ([1], [1, 42], ProjectError, "photos.srproj: no image with id 42"),
])
def test_bad_input_is_refused_before_anything_is_saved(sample, finder, instances, images, error, words):
    with ProjectStore.open(sample.path) as store:
        with pytest.raises(error, match=words):
            find_similar(store, finder, instances, images, threshold=THRESHOLD)
        assert store.count_instances() == 2


def test_an_empty_example_is_refused(sample, finder):
    with ProjectStore.open(sample.path) as store:
        empty = store.create_instance(2, 1, np.zeros((240, 320), bool)).instance_id
        with pytest.raises(SimilarError, match=f"instance {empty} has an empty mask"):
            find_similar(store, finder, [empty], threshold=THRESHOLD)


def test_an_unreadable_image_is_reported_and_the_search_goes_on(sample, finder):
    (sample.images_dir / "photo1.png").write_bytes(b"")
    with ProjectStore.open(sample.path) as store:
        report = find_similar(store, finder, [sample.example_id], threshold=THRESHOLD)
        assert {store.instance(i).image_id for i in report.created} == {1, 3}
    assert report.searched == 2 and len(report.problems) == 1 and "photo1.png" in report.problems[0]


def test_a_stop_between_images_keeps_what_was_saved(sample, finder):
    with ProjectStore.open(sample.path) as store:
        report = find_similar(store, finder, [sample.example_id], threshold=THRESHOLD,
                              should_stop=lambda: store.count_instances() > 2)
        assert report.stopped and report.searched == 1 and {store.instance(i).image_id for i in report.created} == {1}


def test_the_window_previews_the_map_and_proposes_without_saving(sample, finder):
    with ProjectStore.open(sample.path) as store:
        search = ProjectSimilar(store, finder)
        examples = search.examples([sample.example_id])
        similarity = search.similarity(2, examples)
        loose = search.proposals(2, examples, 0.2)
        strict = search.proposals(2, examples, 0.5)
        assert store.count_instances() == 2
        assert similarity.ndim == 2 and similarity.max() > 0.5
        assert len(loose) >= len(strict) == 2 and all(p.score >= 0.5 for p in strict)
        assert len(search.save(2, examples, strict, 0.5)) == 2
        assert target_images(store, None) == [1, 2, 3]


def test_the_threshold_is_a_cosine():
    with pytest.raises(ValueError, match=r"in \(-1, 1\)"):
        SimilarSettings(threshold=1.5)
