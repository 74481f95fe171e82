"""``plan_refinement``: what a selection refines and, by reason, what the rules keep out (the window reports
these counts; a crowd region, a locked or an empty instance is never refined)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from app.core.store.project import ProjectStore
from app.services.selection import CROWD, EMPTY, LOCKED, Selection, never_refined, plan_refinement, select_instances

from .store_samples import sample_dataset


def test_the_plan_refines_what_the_rules_allow_and_counts_the_rest(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "p.srproj", sample_dataset()) as store:
        store.set_layer(7, locked=True)
        empty = store.create_instance(4, 2, np.zeros((40, 60), bool)).instance_id
        plan = plan_refinement(store, Selection())
        assert plan.by_image == {4: [12], 10: [31]} == select_instances(store, Selection())
        assert plan.total == 2
        assert plan.skipped == Counter({LOCKED: 1, CROWD: 1, EMPTY: 1})
        one_image = plan_refinement(store, Selection(image_id=4))
        assert one_image.by_image == {4: [12]} and one_image.skipped == Counter({CROWD: 1, EMPTY: 1})
        assert empty not in plan.by_image.get(4, [])


@pytest.mark.parametrize("locked, crowd, area, reason", [
    (False, False, 10.0, None), (True, False, 10.0, LOCKED), (False, True, 10.0, CROWD), (False, False, 0.0, EMPTY),
    (True, True, 0.0, LOCKED),
])
def test_never_refined_names_the_rule(locked: bool, crowd: bool, area: float, reason: str | None) -> None:
    assert never_refined(locked, crowd, area) == reason


def test_pixel_area_counts_the_pixels_of_the_stored_mask(tmp_path: Path) -> None:
    from app.core.records import encode_mask
    from app.services.stats import pixel_area

    from .store_samples import ring

    with ProjectStore.create(tmp_path / "p.srproj", sample_dataset()) as store:
        assert pixel_area(store, 31) == int(ring().sum()) == 300
        store.set_mask(31, encode_mask(np.zeros((40, 60), bool)))
        assert pixel_area(store, 31) == 0
