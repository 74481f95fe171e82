"""The shipped default weights: present, checksummed, and better than the coarse input on held-out real images."""
from __future__ import annotations

import pytest

from app.core.metrics import MetricAccumulator
from app.refiner.api import DEFAULT_WEIGHTS, Refiner
from app.refiner.evaluate import NEAR_PERFECT, build_cases
from app.refiner.weights import REGISTRY, resolve_weights
from tests.shared_data import sources_or_skip

ENTRY = REGISTRY[DEFAULT_WEIGHTS]


def test_default_weights_are_shipped_with_their_checksum():
    path, entry = resolve_weights(DEFAULT_WEIGHTS)
    assert entry.sha256, "the default weights must be registered with their sha256"
    assert path.is_file() and path.stat().st_size < 50 * 2**20


@pytest.fixture(scope="module")
def refiner() -> Refiner:
    return Refiner(DEFAULT_WEIGHTS, device="cpu")


@pytest.fixture(scope="module")
def cases():
    # Held-out images (the validation split training never saw), fixed seeds, kinds where a refiner should help.
    return build_cases(sources_or_skip("val"), per_kind=3, seed=7, kinds=("segrefiner", "segrefiner_expand", "shift", NEAR_PERFECT))


def _score(refiner: Refiner, cases, near_perfect: bool) -> tuple[float, float]:
    before, after = MetricAccumulator(), MetricAccumulator()
    for case in cases:
        if (case.kind == NEAR_PERFECT) != near_perfect:
            continue
        refined = refiner.refine(case.example.image, case.coarse, min_area=0)
        before.add(case.coarse, case.example.mask, case.example.ignore)
        after.add(refined, case.example.mask, case.example.ignore)
    return before.summary().iou, after.summary().iou


def test_the_default_is_the_band_refiner(refiner):
    assert ENTRY.preset == "band" and refiner.info.preset == "band"


@pytest.mark.slow
def test_shipped_weights_refine_real_images_better_than_the_coarse_input(refiner, cases):
    coarse_iou, refined_iou = _score(refiner, cases, near_perfect=False)
    assert refined_iou > coarse_iou + 0.04, (coarse_iou, refined_iou)  # 82.99 -> 94.84 here (band-v1: 92.47)


@pytest.mark.slow
def test_shipped_weights_harm_near_perfect_masks_at_most_as_measured(refiner, cases):
    # Measured on 50 held-out near-perfect masks (app/weights/MODEL_CARD.md): band-v2 with the snap loses 1.23 IoU
    # points dataset-level, 0.48 for the median mask, nearly all of it on polygon ground truth (two of these three
    # cases), where the network moves a mask a pixel off the polygon onto the image's edge (band-v1: 0.58 / 0.26).
    # This pins the shipped behaviour so a change of weights or pipeline cannot make it worse unnoticed.
    coarse_iou, refined_iou = _score(refiner, cases, near_perfect=True)
    assert refined_iou >= coarse_iou - 0.008, (coarse_iou, refined_iou)  # 99.76 -> 99.13 here (band-v1: 99.59)


@pytest.mark.slow
def test_shipped_weights_keep_near_perfect_pixel_accurate_masks_within_the_goal():
    # Issue 11's goal (at most 0.1 IoU lost on near-perfect masks) where the ground truth follows the pixels: every
    # held-out near-perfect mask of ECSSD and Pets (outside its unknown band), the model card's 74 (99.26 -> 99.18;
    # `./studio eval --sources ecssd,pets --kinds near_perfect --per-kind 100`). A sample of 12 of them moved by
    # +-0.05 with every change of the snap's parameters, as much as the margin it was to check.
    sources = [s for s in sources_or_skip("val") if s.name in ("ecssd", "pets")]
    if not sources:
        pytest.skip("ECSSD and Pets are not in the shared data")
    cases = build_cases(sources, per_kind=100, kinds=(NEAR_PERFECT,))
    coarse_iou, refined_iou = _score(Refiner(DEFAULT_WEIGHTS, device="cpu"), cases, near_perfect=True)
    assert refined_iou >= coarse_iou - 0.001, (coarse_iou, refined_iou)
