"""The Edit History dock names what made an instance: a prompt or find-similar, not the annotator who asked."""
from __future__ import annotations

from pathlib import Path

from app.core.records import Provenance
from app.core.store.project import ProjectStore
from app.gui.docks.edit_history import describe_edit
from tests.core.store_samples import blob, ring, sample_dataset


def test_created_instances_say_what_made_them(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "p.srproj", sample_dataset()) as store:
        search = {"find_similar": {"examples": [1, 2], "threshold": 0.2}}
        proposed = store.create_instance(4, 2, blob(), score=0.41, params=search,
                                         provenance=Provenance.proposed("encoder", "band-v1", 6)).instance_id
        prompted = store.create_instance(4, 2, ring(), provenance=Provenance.prompted("grabcut", "band-v1", 6),
                                         params={"prompt": {"box": [1.0, 2.0, 30.0, 40.0]}}).instance_id
        by_hand = store.create_instance(4, 2, ring()).instance_id
        words = {i: describe_edit(store.history(i)[0], {}) for i in (proposed, prompted, by_hand)}
    assert words[proposed] == ("Proposed by Find Similar from 2 examples, score 0.41",
                               "find similar (encoder + refiner band-v1)")
    assert words[prompted] == ("Created from a prompt", "prompt (grabcut + refiner band-v1)")
    assert words[by_hand] == ("Created", "annotator")


def test_a_revert_says_what_it_took_back_and_a_revert_of_it_says_redone(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "p.srproj", sample_dataset()) as store:
        instance_id = store.create_instance(4, 2, ring()).instance_id
        brush = store.set_mask(instance_id, blob(), params={"action": "brush", "author": "ann"})
        undo = store.revert(brush.id, {"author": "ann"})
        redo = store.revert(undo.id)
        edits = {edit.id: edit for edit in store.history(instance_id)}
    assert describe_edit(edits[undo.id], {}, edits)[0].startswith("Reverted: Brush (of ")
    assert describe_edit(edits[redo.id], {}, edits)[0] == "Redone: Brush"
    assert describe_edit(edits[undo.id], {})[0] == f"Reverted edit {brush.id}"  # without the others: its number
    assert describe_edit(edits[undo.id], {}, edits)[1] == "ann" and edits[undo.id].params["reverts"] == brush.id
    assert describe_edit(edits[redo.id], {}, edits)[1] == "annotator"  # none recorded
