"""Find similar (SG-One): the feature cache, prototypes, proposals, and one pedestrian finding the others."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.images import read_image_rgb
from app.core.metrics import iou
from app.refiner import similar
from app.refiner.options import RefineOptions
from app.refiner.data import split_of
from app.refiner.similar import (
    FeatureCache,
    PrecomputeCancelled,
    Prototype,
    SimilarError,
    SimilarFinder,
    content_key,
    file_key,
    propose,
    prototype,
    self_supported,
    similarity_map,
)
from tests.shared_data import DATA, require


def image(seed: int = 0, shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    return (np.random.default_rng(seed).random((*shape, 3)) * 255).astype(np.uint8)


def test_features_are_cached_by_content_and_read_back(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "features")
    first = cache.get(image(0))
    assert len(list((tmp_path / "features").glob("*.npy"))) == 1
    monkeypatch.setattr(similar, "compute_features", lambda _: pytest.fail("recomputed a cached image"))
    again = cache.get(image(0))
    assert np.allclose(first, again, atol=1e-2)
    assert np.allclose(np.linalg.norm(again, axis=0), 1.0, atol=1e-3)
    assert content_key(image(0)) != content_key(image(1))


def test_a_key_that_is_a_file_path_is_cached_inside_the_folder(tmp_path):
    """Keying by an image's path (as the benchmark does) once wrote the features beside the image: in ../shared."""
    photos = tmp_path / "photos"
    photos.mkdir()
    key = str(photos / "a.png")
    cache = FeatureCache(tmp_path / "features")
    cache.get(image(0), key)
    assert list(photos.iterdir()) == [] and cache.has(key)
    assert [p.parent for p in (tmp_path / "features").glob("*.npy")] == [tmp_path / "features"]
    assert cache.path("ab12").name.startswith("ab12-")  # hex digests (file_key, content_key) are kept as they are


def test_precompute_reports_progress_and_stops_on_cancel(tmp_path):
    cache = FeatureCache(tmp_path)
    items = [(f"k{i}", lambda i=i: image(i)) for i in range(3)]
    seen = []
    with pytest.raises(PrecomputeCancelled, match="after 2 of 3"):
        cache.precompute(items, progress=lambda done, total: seen.append((done, total)), cancel=lambda: len(seen) >= 2)
    assert seen == [(1, 3), (2, 3)] and cache.has("k1") and not cache.has("k2")
    assert cache.precompute(items) == 1


def test_file_key_hashes_the_bytes(tmp_path):
    (tmp_path / "a.png").write_bytes(b"one")
    (tmp_path / "b.png").write_bytes(b"one")
    (tmp_path / "c.png").write_bytes(b"two")
    assert file_key(tmp_path / "a.png") == file_key(tmp_path / "b.png") != file_key(tmp_path / "c.png")


def test_prototype_averages_examples_and_refuses_empty_ones():
    features = np.zeros((2, 4, 4), np.float32)
    features[0, :2] = 1.0
    features[1, 2:] = 1.0
    top, bottom = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    top[:4], bottom[4:] = True, True
    proto = prototype([(features, top), (features, bottom)])
    assert np.allclose(proto.vector, [2 ** -0.5, 2 ** -0.5]) and proto.area_fraction == 0.5
    with pytest.raises(SimilarError, match="empty"):
        prototype([(features, np.zeros((8, 8), bool))])


def test_proposals_are_regions_above_the_threshold_minus_existing_instances():
    sim = np.zeros((20, 20), np.float32)
    sim[2:6, 2:6] = 0.9
    sim[10:16, 10:16] = 0.6
    sim[2:4, 15:17] = 0.7
    shape = (200, 200)
    found = propose(sim, shape, threshold=0.5, min_area=0.02)
    assert [round(p.score, 1) for p in found] == [0.9, 0.6]  # the 2x2 region is under 2 % of the image
    taken = np.zeros(shape, bool)
    taken[20:60, 20:60] = True
    found = propose(sim, shape, threshold=0.5, existing=[taken], min_area=0.02)
    assert [round(p.score, 1) for p in found] == [0.6]
    assert not propose(sim, shape, threshold=0.95)


def test_one_pedestrian_finds_most_others_in_held_out_images(tmp_path):
    support, targets = "FudanPed00063", ("PennPed00073", "FudanPed00039", "FudanPed00026")
    assert {split_of(f"pennfudan/{s}") for s in (support, *targets)} == {"val"}
    folder = require(DATA / "pennfudan")

    def labels(stem: str) -> np.ndarray:
        return cv2.imread(str(folder / f"PedMasks/{stem}_mask.png"), cv2.IMREAD_UNCHANGED)

    finder = SimilarFinder(FeatureCache(tmp_path))
    proto = finder.prototype([(read_image_rgb(folder / f"PNGImages/{support}.png"), labels(support) == 1)])
    found = people = proposed = 0
    for target in targets:
        truth = [labels(target) == k for k in np.unique(labels(target))[1:]]
        proposals = finder.find(read_image_rgb(folder / f"PNGImages/{target}.png"), proto)
        found += sum(any(iou(p.coarse, t) >= 0.5 for p in proposals) for t in truth)
        people += len(truth)
        proposed += len(proposals)
    assert found >= 4 and people == 7 and proposed <= 10


def test_the_refiner_refines_every_proposal(tmp_path, random_refiner):
    finder = SimilarFinder(FeatureCache(tmp_path), random_refiner, RefineOptions(steps=1))
    picture = image(3, (96, 128))
    sim = np.zeros((24, 32), np.float32)
    sim[4:12, 4:12] = 1.0
    sim[14:22, 18:28] = 0.8
    proposals = propose(sim, picture.shape[:2], 0.5)
    steps = list(finder.refine_steps(picture, proposals))
    assert steps[-1].final and sorted(steps[-1].indices) == [0, 1]
    proto = Prototype(np.ones(112, np.float32) / np.sqrt(112), 0.01)
    for proposal in finder.find(picture, proto, threshold=-1.0):
        assert proposal.mask is not None and proposal.mask.shape == picture.shape[:2]


class BoxFiller:
    """A coarse source that fills the prompt's box: shows what the finder asked for."""

    name = "box"

    def __init__(self) -> None:
        self.boxes = []

    def segment(self, image, prompt):
        self.boxes.append(prompt.box)
        out = np.zeros(image.shape[:2], bool)
        x0, y0, x1, y1 = prompt.box
        out[y0:y1, x0:x1] = True
        return out


def test_a_coarse_source_outlines_each_region_from_its_box(tmp_path, monkeypatch):
    picture = image(4, (80, 80))
    sim = np.zeros((20, 20), np.float32)
    sim[2:8, 2:8] = 0.9
    sim[12:18, 10:18] = 0.8
    monkeypatch.setattr(SimilarFinder, "similarity", lambda self, img, proto, key=None: sim)
    existing = np.zeros((80, 80), bool)
    existing[:20, :20] = True  # covers part of the first region's box
    source = BoxFiller()
    finder = SimilarFinder(FeatureCache(tmp_path), source=source)
    proposals = finder.find(picture, Prototype(np.ones(4, np.float32) / 2, 0.05), 0.5, existing=[existing])
    assert len(proposals) == 2 and len(source.boxes) == 2
    for proposal, box in zip(proposals, source.boxes):
        x0, y0, x1, y1 = box
        filled = np.zeros((80, 80), bool)
        filled[y0:y1, x0:x1] = True
        assert np.array_equal(proposal.coarse, filled & ~existing)


def test_an_outline_mostly_covered_by_existing_instances_is_dropped(tmp_path, monkeypatch):
    picture = image(5, (80, 80))
    sim = np.zeros((20, 20), np.float32)
    sim[2:8, 2:8] = 0.9
    sim[12:18, 10:18] = 0.8
    monkeypatch.setattr(SimilarFinder, "similarity", lambda self, img, proto, key=None: sim)
    earlier = np.zeros((80, 80), bool)
    earlier[4:34, 4:34] = True  # an earlier search's outline of the first region, larger than the region itself
    finder = SimilarFinder(FeatureCache(tmp_path), source=BoxFiller())
    proposals = finder.find(picture, Prototype(np.ones(4, np.float32) / 2, 0.05), 0.5, existing=[earlier])
    assert len(proposals) == 1 and proposals[0].score == pytest.approx(0.8)


def test_self_support_moves_the_prototype_to_the_images_own_look_of_the_object():
    object_look, distractor, ground = np.array([0.8, 0.6, 0.0]), np.array([0.6, 0.0, 0.8]), np.array([0.0, 0.0, 1.0])
    features = np.empty((3, 10, 10), np.float32)
    features[:] = ground[:, None, None]
    features[:, 4:8, 4:8] = object_look[:, None, None]  # 16 % of the image, more than the top 3 %
    features[:, 0:2, 0:2] = distractor[:, None, None]
    proto = Prototype(np.array([1.0, 0.0, 0.0], np.float32), 0.1)
    plain = similarity_map(features, proto, self_support=False)
    adapted = similarity_map(features, proto)
    assert plain[5, 5] - plain[0, 0] == pytest.approx(0.2, abs=1e-6)
    assert adapted[5, 5] - adapted[0, 0] > 0.35 and adapted[5, 5] > plain[5, 5]  # the margin almost doubles
    assert np.linalg.norm(self_supported(features, proto.vector)) == pytest.approx(1.0)
