"""Instances made by prompts and find-similar in the store: their provenance kinds, the creation's history entry, and
the filter that leaves out proposals not accepted yet."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.core.records import ChangeKind, Provenance, ReviewStatus, SegmentationFormat
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from tests.core.store_samples import blob, ring, sample_dataset


@pytest.fixture
def store(tmp_path: Path):
    with ProjectStore.create(tmp_path / "p.srproj", sample_dataset()) as s:
        yield s


def test_prompted_and_proposed_instances_keep_their_provenance_and_history(store: ProjectStore) -> None:
    prompted = store.create_instance(4, 2, ring(), provenance=Provenance.prompted("encoder", "compact-v1", 6),
                                     params={"prompt": {"box": [1.0, 2.0, 30.0, 40.0]}}).instance_id
    proposed = store.create_instance(4, 2, blob(), score=0.41, provenance=Provenance.proposed("encoder", None, 0)).instance_id
    made = store.instance(prompted)
    assert (made.provenance.kind, made.provenance.mode, made.provenance.weights, made.provenance.steps) == (
        ChangeKind.PROMPTED, "encoder", "compact-v1", 6)
    assert made.source_format is SegmentationFormat.MASK
    assert store.history(prompted)[0].params == {"prompt": {"box": [1.0, 2.0, 30.0, 40.0]}}
    assert store.instance(proposed).provenance.kind is ChangeKind.PROPOSED and store.instance(proposed).score == 0.41
    assert [r.id for r in store.list_instances(InstanceFilter(provenance_kinds=[ChangeKind.PROPOSED]))] == [proposed]


def test_the_proposal_filter_keeps_accepted_and_edited_proposals(store: ProjectStore) -> None:
    ids = [store.create_instance(4, 2, blob(), provenance=Provenance.proposed("encoder", None, 0)).instance_id
           for _ in range(4)]
    store.set_status(ids[0], ReviewStatus.ACCEPTED)
    store.set_status(ids[1], ReviewStatus.REJECTED)
    store.set_mask(ids[2], ring())  # a hand edit: the annotator's instance now
    kept = {r.id for r in store.list_instances(InstanceFilter(proposals=False))}
    assert kept == {31, 7, 12, 5, ids[0], ids[2]}
    assert store.count_instances(InstanceFilter(proposals=False)) == 6
    assert {i.id for i in store.iter_instances(proposals=False)} == kept
    assert len(list(store.iter_instances())) == 8


def test_instances_are_listed_by_id(store: ProjectStore) -> None:
    assert [r.id for r in store.list_instances(InstanceFilter(ids=[12, 31, 99]))] == [12, 31]
    assert store.list_instances(InstanceFilter(ids=[])) == []
