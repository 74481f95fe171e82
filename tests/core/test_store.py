"""The project store: create / open / resume, queries, edits with history and revert, locking."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.core.store.history import EditAction
from app.core.records import (
    ChangeKind, Dataset, ImageRecord, Instance, Provenance, ReviewStatus, SegmentationFormat, encode_mask,
)
from app.core.store.project import ProjectStore
from app.core.store.errors import ProjectError, ReadOnlyProjectError
from app.core.store.packing import pack_original, unpack_original
from app.core.store.query import InstanceFilter
from tests.core.codec_samples import tiny_coco
from tests.core.store_samples import H, W, blob, ring, sample_dataset, two_parts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    ProjectStore.create(tmp_path / "p.srproj", sample_dataset(), source_path=tmp_path / "src.json").close()
    return tmp_path / "p.srproj"


@pytest.fixture
def store(project: Path):
    with ProjectStore.open(project) as s:
        yield s


# ---------------------------------------------------------------------------------------------- create / open
def test_create_then_open_gives_back_the_dataset(store: ProjectStore, tmp_path: Path) -> None:
    ds = sample_dataset()
    assert not store.read_only
    assert store.kind == "lvis"
    assert store.extra == ds.extra
    assert store.source_path == (tmp_path / "src.json").resolve()
    assert store.images() == list(ds.images.values())
    assert store.categories() == list(ds.categories.values())
    stored = list(store.iter_instances())
    assert [i.id for i in stored] == [i.id for i in ds.instances]
    for got, want in zip(stored, ds.instances):
        assert np.array_equal(got.mask(), want.mask())
        assert (got.image_id, got.category_id, got.score, got.iscrowd, got.extra) == (
            want.image_id, want.category_id, want.score, want.iscrowd, want.extra)
        assert got.status is ReviewStatus.UNREVIEWED and got.provenance.kind is ChangeKind.IMPORTED


def test_file_order_is_overlap_order(store: ProjectStore) -> None:
    assert [i.id for i in store.instances_for_image(10)] == [31, 7]
    assert [i.z_order for i in store.instances_for_image(10)] == [0, 1]
    assert store.instances_for_image(999) == []


def test_create_refuses_an_existing_path(project: Path) -> None:
    with pytest.raises(ProjectError, match="already exists"):
        ProjectStore.create(project, sample_dataset())


def test_create_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=f"the folder {tmp_path / 'nowhere'} does not exist"):
        ProjectStore.create(tmp_path / "nowhere" / "p.srproj", sample_dataset())
    assert not (tmp_path / "nowhere").exists()


def test_adding_a_copy_of_the_projects_own_annotations_is_refused(store: ProjectStore) -> None:
    with pytest.raises(ProjectError, match="already holds all 4 annotations of the dataset being added"):
        store.add_dataset(sample_dataset())
    part = sample_dataset()
    part.instances = part.instances[:2] + [Instance(1000, 4, 2, encode_mask(blob()))]
    assert store.add_dataset(part).instances_added == 3  # some new: added, the taken ids renumbered


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ds: ds.instances.append(Instance(99, 77, 1, ds.instances[0].rle)), "unknown image id 77"),
        (lambda ds: ds.instances.append(Instance(99, 4, 42, ds.instances[0].rle)), "unknown category id 42"),
        (lambda ds: ds.instances.append(Instance(31, 4, 1, ds.instances[0].rle)), "duplicate annotation id"),
        (lambda ds: ds.instances.append(Instance(99, 4, 1, encode_mask(np.ones((3, 3), bool)))), "mask size"),
    ],
)
def test_failed_create_leaves_no_file(tmp_path: Path, corrupt, message: str) -> None:
    ds = sample_dataset()
    corrupt(ds)
    with pytest.raises(ProjectError, match=message):
        ProjectStore.create(tmp_path / "p.srproj", ds)
    assert list(tmp_path.iterdir()) == []


def test_open_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no such project file"):
        ProjectStore.open(tmp_path / "nope.srproj")


@pytest.mark.parametrize("content", [b"", b'{"images": []}', b"SQLite format 3\x00" + b"\x07" * 200])
def test_open_something_that_is_not_a_project(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.srproj"
    path.write_bytes(content)
    with pytest.raises(ProjectError, match="x.srproj: "):
        ProjectStore.open(path)
    assert path.read_bytes() == content


def test_open_a_foreign_sqlite_database_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ProjectError, match="not a SegRefiner Studio project"):
        ProjectStore.open(path)
    assert path.read_bytes() == before


def test_open_a_project_from_a_newer_version(project: Path) -> None:
    conn = sqlite3.connect(project)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ProjectError, match="newer SegRefiner Studio"):
        ProjectStore.open(project)


def test_project_is_wal_with_foreign_keys(store: ProjectStore) -> None:
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_session_state_resumes(project: Path) -> None:
    with ProjectStore.open(project) as s:
        assert s.session_state() == {}
        s.save_session_state({"image_id": 10, "instance_id": 7, "filters": {"statuses": ["unreviewed"]}})
        s.save_session_state({"instance_id": 31})
    with ProjectStore.open(project) as s:
        assert s.session_state() == {"image_id": 10, "instance_id": 31, "filters": {"statuses": ["unreviewed"]}}


def test_images_dir_and_image_path(store: ProjectStore, tmp_path: Path) -> None:
    assert store.image_path(store.image(4)) is None
    store.set_images_dir(tmp_path)
    assert store.image_path(store.image(4)) is None  # no such file
    (tmp_path / "a.jpg").write_bytes(b"")
    assert store.image_path(store.image(4)) == tmp_path.resolve() / "a.jpg"
    with pytest.raises(ProjectError, match="no image with id 5"):
        store.image(5)


# ------------------------------------------------------------------------------------------------- queries
def test_counts(store: ProjectStore) -> None:
    assert store.counts_by_category() == {2: 2, 1: 1, 3: 1}
    assert store.counts_by_image() == {10: 2, 4: 2}
    assert store.counts_by_status()[ReviewStatus.UNREVIEWED] == 4
    assert store.counts_by_status()[ReviewStatus.ACCEPTED] == 0
    store.set_status(7, ReviewStatus.ACCEPTED)
    assert store.counts_by_category([ReviewStatus.ACCEPTED]) == {1: 1}
    assert store.counts_by_image([ReviewStatus.UNREVIEWED]) == {10: 1, 4: 2}
    assert store.image_count() == 2
    areas = sorted(int(m.sum()) for m in (ring(), blob(), two_parts(), blob()))  # 164, 300, 500, 500
    assert store.count_areas([0, 200, 500]) == [1, 1, 2]
    assert store.count_areas([200, 400]) == [1, 2] and sum(store.count_areas([0])) == len(areas)
    store._conn.execute("DROP INDEX instances_by_area")  # as in a project made before the index
    assert store.count_areas([0, 200, 500]) == [1, 1, 2] and store.count_areas([200, 400]) == [1, 2]
    assert store.counts_by_category_and_status() == {2: {ReviewStatus.UNREVIEWED: 2},
                                                     1: {ReviewStatus.ACCEPTED: 1}, 3: {ReviewStatus.UNREVIEWED: 1}}


def test_list_filters_and_sorts_in_sql(store: ProjectStore) -> None:
    ids = lambda **kw: [s.id for s in store.list_instances(InstanceFilter(**kw))]  # noqa: E731
    assert ids() == [5, 7, 12, 31]
    assert ids(image_id=10) == [7, 31]
    assert ids(category_ids=[2]) == [12, 31]
    assert ids(category_ids=[]) == []
    assert ids(sort_by="score", descending=True) == [31, 7, 5, 12]  # no score last
    assert ids(sort_by="score") == [7, 31, 5, 12]
    assert ids(min_score=0.5) == [31]
    assert ids(sort_by="area", descending=True, limit=2) == [5, 7]
    assert ids(sort_by="area", descending=True, limit=2, offset=2) == [31, 12]
    assert ids(min_area=int(ring().sum()) + 1) == [5, 7]
    assert store.count_instances(InstanceFilter(image_id=4)) == 2
    summary = store.list_instances(InstanceFilter(image_id=4, category_ids=[2]))[0]
    assert summary.area == int(two_parts().sum())
    assert summary.bbox == (30.0, 2.0, 28.0, 36.0)
    with pytest.raises(ValueError, match="cannot sort"):
        store.list_instances(InstanceFilter(sort_by="counts; DROP TABLE instances"))


def test_list_by_change_size_and_confidence(store: ProjectStore) -> None:
    refined = Provenance(ChangeKind.REFINED, weights="compact", mode="lr", steps=6)
    store.set_mask(31, ring() | blob(), provenance=replace(refined, mean_confidence=0.7))
    store.set_mask(12, two_parts()[::-1], provenance=replace(refined, mean_confidence=0.95))
    changed = {31: int((blob() & ~ring()).sum()), 12: int((two_parts() ^ two_parts()[::-1]).sum())}
    assert changed[31] > changed[12]
    rows = store.list_instances(InstanceFilter(sort_by="changed_pixels", descending=True))
    assert [r.id for r in rows] == [31, 12, 5, 7]  # never refined: last
    assert {r.id: r.changed_pixels for r in rows[:2]} == changed
    assert [r.id for r in store.list_instances(InstanceFilter(sort_by="changed_pixels"))] == [12, 31, 5, 7]
    assert [r.id for r in store.list_instances(InstanceFilter(max_mean_confidence=0.8))] == [31]
    assert [r.id for r in store.list_instances(InstanceFilter(provenance_kinds=[ChangeKind.REFINED]))] == [12, 31]
    by_confidence = InstanceFilter(min_changed_pixels=1, sort_by="mean_confidence")
    assert [r.id for r in store.list_instances(by_confidence)] == [31, 12]


def test_iter_instances_by_status(store: ProjectStore) -> None:
    store.set_status(12, ReviewStatus.ACCEPTED)
    store.set_status(7, ReviewStatus.REJECTED)
    assert [i.id for i in store.iter_instances(statuses=[ReviewStatus.ACCEPTED])] == [12]


# ------------------------------------------------------------------------------------ edits and history
def test_manual_edit_updates_mask_geometry_and_history(store: ProjectStore) -> None:
    new = ring()
    new[10:20, 10:20] = True
    edit = store.set_mask(31, new)
    inst = store.instance(31)
    assert np.array_equal(inst.mask(), new)
    assert inst.provenance.kind is ChangeKind.MANUAL
    assert inst.changed_pixels is None  # only refinements count changed pixels
    assert edit.action is EditAction.MANUAL and edit.mask_changed
    assert np.array_equal(Instance(0, 0, 0, edit.before_rle).mask(), ring())
    assert np.array_equal(Instance(0, 0, 0, edit.after_rle).mask(), new)
    assert store.list_instances(InstanceFilter(image_id=10, category_ids=[2]))[0].area == int(new.sum())
    assert store.history(31) == [edit]


def test_revert_a_refinement_days_later(store: ProjectStore) -> None:
    refined = Provenance(ChangeKind.REFINED, weights="segrefiner_lr", mode="lr", steps=6)
    refine = store.set_mask(7, ring(), provenance=replace(refined, mean_confidence=0.6), params={"seed": 3})
    status = store.set_status(7, ReviewStatus.ACCEPTED)
    inst = store.instance(7)
    assert inst.provenance.weights == "segrefiner_lr" and inst.provenance.steps == 6
    assert inst.changed_pixels == int((ring() ^ blob()).sum()) and inst.mean_confidence == 0.6
    assert refine.params == {"seed": 3}

    revert = store.revert(refine.id)
    inst = store.instance(7)
    assert np.array_equal(inst.mask(), blob())
    assert inst.provenance.kind is ChangeKind.IMPORTED
    assert inst.changed_pixels is None and inst.mean_confidence is None
    assert inst.status is ReviewStatus.ACCEPTED  # the later status change is not the refinement's to undo
    assert revert.action is EditAction.REVERT and revert.params == {"reverts": refine.id}
    assert [e.id for e in store.history(7)] == [refine.id, status.id, revert.id]

    store.revert(revert.id)  # a revert is an edit like any other
    assert np.array_equal(store.instance(7).mask(), ring())
    assert store.instance(7).provenance.kind is ChangeKind.REFINED


def test_status_category_and_layer_edits_revert(store: ProjectStore) -> None:
    edit = store.set_status(5, ReviewStatus.NEEDS_WORK)
    assert (edit.before_status, edit.after_status) == (ReviewStatus.UNREVIEWED, ReviewStatus.NEEDS_WORK)
    assert not edit.mask_changed
    cat = store.set_category(5, 2)
    layer = store.set_layer(5, z_order=-1, locked=True, hidden=True)
    inst = store.instance(5)
    assert (inst.status, inst.category_id, inst.z_order, inst.locked, inst.hidden) == (
        ReviewStatus.NEEDS_WORK, 2, -1, True, True)
    assert [i.id for i in store.instances_for_image(4)] == [5, 12]
    assert [s.id for s in store.list_instances(InstanceFilter(image_id=4, include_hidden=False))] == [12]
    store.revert(layer.id)
    store.revert(cat.id)
    store.revert(edit.id)
    inst = store.instance(5)
    assert (inst.status, inst.category_id, inst.z_order, inst.locked, inst.hidden) == (
        ReviewStatus.UNREVIEWED, 3, 1, False, False)


def test_create_delete_and_their_reverts(store: ProjectStore) -> None:
    created = store.create_instance(4, 1, two_parts(), score=0.4)
    new_id = created.instance_id
    assert new_id == 32
    assert [i.id for i in store.instances_for_image(4)][-1] == new_id  # on top
    deleted = store.delete_instance(new_id)
    with pytest.raises(ProjectError, match=f"no instance with id {new_id}"):
        store.instance(new_id)
    assert store.create_instance(4, 1, ring()).instance_id == 33  # ids of deleted instances are not reused
    store.revert(deleted.id)
    restored = store.instance(new_id)
    assert np.array_equal(restored.mask(), two_parts()) and restored.score == 0.4
    with pytest.raises(ProjectError, match="already undone"):
        store.revert(deleted.id)
    store.revert(created.id)
    assert store.count_instances(InstanceFilter(image_id=4)) == 3
    assert [e.action for e in store.history(new_id)] == [EditAction.CREATE, EditAction.DELETE, EditAction.REVERT,
                                                          EditAction.REVERT]


def test_bad_edits_change_nothing(store: ProjectStore) -> None:
    with pytest.raises(ValueError, match=r"instance 7: mask is \(3, 3\)"):
        store.set_mask(7, np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="RLE size"):
        store.set_mask(7, encode_mask(np.ones((3, 3), bool)))
    with pytest.raises(ProjectError, match="no category with id 42"):
        store.set_category(7, 42)
    with pytest.raises(ProjectError, match="no instance with id 4242"):
        store.set_status(4242, ReviewStatus.ACCEPTED)
    with pytest.raises(ProjectError, match="no image with id 4242"):
        store.create_instance(4242, 1, ring())
    with pytest.raises(ProjectError, match="no edit with id 4242"):
        store.revert(4242)
    assert store.history(7) == []
    assert np.array_equal(store.instance(7).mask(), blob())


def test_rle_masks_are_accepted(store: ProjectStore) -> None:
    store.set_mask(7, encode_mask(ring()))
    assert np.array_equal(store.instance(7).mask(), ring())


def test_edits_survive_reopening(project: Path) -> None:
    with ProjectStore.open(project) as s:
        edit = s.set_mask(31, blob())
    with ProjectStore.open(project) as s:
        assert s.history(31) == [edit]
        assert np.array_equal(s.instance(31).mask(), blob())


# ------------------------------------------------------------------------------------------ adding data
def _predictions() -> Dataset:
    ds = sample_dataset()
    ds.images[11] = ImageRecord(11, "c.jpg", W, H)
    ds.instances = [
        Instance(7, 11, 1, encode_mask(ring()), score=0.3),
        Instance(1000, 4, 2, encode_mask(blob()), score=0.8),
    ]
    return ds


def test_add_dataset_renumbers_taken_ids(store: ProjectStore) -> None:
    result = store.add_dataset(_predictions())
    assert (result.images_added, result.categories_added, result.instances_added) == (1, 0, 2)
    assert result.renumbered == {7: 1001}
    assert np.array_equal(store.instance(1001).mask(), ring())
    assert store.instance(1001).image_id == 11
    assert [i.id for i in store.instances_for_image(4)] == [12, 5, 1000]  # added on top
    assert [i.file_name for i in store.images()] == ["b.jpg", "a.jpg", "c.jpg"]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ds: setattr(ds.images[4], "file_name", "zzz.jpg"), "image 4 is"),
        (lambda ds: setattr(ds.categories[2], "name", "wolf"), "category 2 is 'dog' here but 'wolf'"),
        (lambda ds: ds.instances.append(Instance(2000, 11, 77, ds.instances[0].rle)), "unknown category id 77"),
        (lambda ds: ds.instances.append(Instance(2000, 11, 1, encode_mask(np.ones((2, 2), bool)))), "mask size"),
    ],
)
def test_failed_add_touches_nothing(project: Path, corrupt, message: str) -> None:
    before = project.read_bytes()
    with ProjectStore.open(project) as s:
        ds = _predictions()
        corrupt(ds)
        with pytest.raises(ProjectError, match=message):
            s.add_dataset(ds)
        assert s.image_count() == 2 and s.count_instances() == 4
    assert project.read_bytes() == before


# ------------------------------------------------------------------------------------------------ locking
def test_read_only_on_request(project: Path) -> None:
    with ProjectStore.open(project, read_only=True) as s:
        assert s.read_only
        assert s.count_instances() == 4
        with pytest.raises(ReadOnlyProjectError, match="read-only"):
            s.set_status(7, ReviewStatus.ACCEPTED)
        with pytest.raises(ReadOnlyProjectError):
            s.save_session_state({"image_id": 4})
    with ProjectStore.open(project) as s:
        assert not s.read_only



def test_a_sibling_writes_under_the_owners_lock_and_releases_nothing(project: Path) -> None:
    with ProjectStore.open(project) as owner:
        sibling = owner.sibling()
        sibling.set_status(7, ReviewStatus.ACCEPTED)
        assert owner.instance(7).status is ReviewStatus.ACCEPTED  # the owner's reads see the sibling's commit
        sibling.close()
        with ProjectStore.open(project) as second:
            assert second.read_only  # the owner still holds the lock after the sibling closed
    with ProjectStore.open(project, read_only=True) as reader, pytest.raises(ReadOnlyProjectError):
        reader.sibling()


HOLDER = textwrap.dedent(
    """
    import sys
    from app.core.store.project import ProjectStore
    store = ProjectStore.open(sys.argv[1])
    print("writable" if not store.read_only else "read-only", flush=True)
    sys.stdin.readline()
    store.set_status(7, "accepted")
    print("saved", flush=True)
    sys.stdin.readline()
    """
)


def _holder(project: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(project)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "writable"
    return proc


def test_second_window_opens_read_only_naming_the_holder(project: Path) -> None:
    proc = _holder(project)
    try:
        with ProjectStore.open(project) as second:
            assert second.read_only
            assert f"pid {proc.pid}" in second.read_only_reason
            with pytest.raises(ReadOnlyProjectError, match=f"pid {proc.pid}"):
                second.set_status(31, ReviewStatus.ACCEPTED)
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "saved"
            assert second.instance(7).status is ReviewStatus.ACCEPTED  # sees the holder's commits
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    with ProjectStore.open(project) as third:
        assert not third.read_only


def test_lock_dies_with_its_process(project: Path) -> None:
    proc = _holder(project)
    proc.kill()
    proc.wait(timeout=10)
    with ProjectStore.open(project) as s:
        assert not s.read_only
        s.set_status(31, ReviewStatus.REJECTED)


def test_history_json_is_plain_column_values(store: ProjectStore) -> None:
    edit = store.set_status(31, ReviewStatus.ACCEPTED)
    row = store._conn.execute("SELECT before_state, after_state FROM edits WHERE id = ?", (edit.id,)).fetchone()
    assert [json.loads(v) for v in row] == [{"status": "unreviewed"}, {"status": "accepted"}]


def test_imported_geometry_is_kept_until_the_mask_is_edited(tmp_path: Path) -> None:
    ds = sample_dataset()
    polygon = {"segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]], "area": 400.0, "bbox": [5, 5, 20, 20]}
    ds.instances[0].original_segmentation = polygon
    ds.instances[0].source_format = SegmentationFormat.POLYGON
    with ProjectStore.create(tmp_path / "p.srproj", ds) as store:
        listed = lambda: store.list_instances(InstanceFilter(image_id=10, category_ids=[2]))[0]  # noqa: E731
        inst = store.instance(31)
        assert (inst.original_segmentation, inst.source_format) == (polygon, SegmentationFormat.POLYGON)
        assert (listed().area, listed().bbox) == (400.0, (5.0, 5.0, 20.0, 20.0))  # the annotation's own
        assert store.instance(7).source_format is None
        edit = store.set_mask(31, blob())
        inst = store.instance(31)
        assert (inst.original_segmentation, inst.source_format) == (None, SegmentationFormat.MASK)
        assert (listed().area, listed().bbox) == (blob().sum(), (15.0, 15.0, 25.0, 20.0))  # the mask's
        store.revert(edit.id)
        inst = store.instance(31)
        assert (inst.original_segmentation, inst.source_format) == (polygon, SegmentationFormat.POLYGON)
        assert np.array_equal(inst.mask(), ring())
        assert listed().area == 400.0


@pytest.mark.parametrize(
    "original",
    [
        {"segmentation": [[12.67, 249.44, 35.21, 246.69, 44.57, 245.03]], "area": 959.73,
         "bbox": [12.08, 245.03, 32.49, 37.45]},
        {"segmentation": [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], "area": 7, "bbox": [1, 2, 8, 10]},
        {"segmentation": [[0.1, 0.30000000000000004, 1e-300, 5e300, -6.5, 0.0]]},
        {"segmentation": [[1, 2, 3, 4, 5, 6]], "area": 2**40},
    ],
)
def test_imported_polygons_are_packed_and_come_back_exactly(original: dict) -> None:
    packed = pack_original(original)
    assert isinstance(packed, bytes)
    back = unpack_original(packed)
    assert json.dumps(back) == json.dumps(original)  # same text: integers stay integers


@pytest.mark.parametrize(
    "original",
    [
        {"segmentation": [[1, 2, 3, 4, 5, 6]], "other": 1},
        {"segmentation": []},
        {"segmentation": [["a", 1]]},
        {"segmentation": [[1, 2, 3, 4, 5, 6]], "bbox": [1, 2, 3]},
        {"segmentation": [[1, 2, 3, 4, 5, 2**70]]},
        {"segmentation": [[1, 2, 3, 4, 5, 6]], "area": True},
        {"area": 3.5},
    ],
)
def test_unusual_imported_geometry_is_kept_as_json(original: dict) -> None:
    packed = pack_original(original)
    assert isinstance(packed, str)
    assert unpack_original(packed) == original


@pytest.mark.parametrize("extra", [{}, {"area": 959.73, "bbox": [12.08, 245.03, 32.49, 37.45]}, {"area": 7}])
def test_imported_polygon_text_is_packed_as_text(extra: dict) -> None:
    from app.core.records import SourcePolygons

    original = {"segmentation": SourcePolygons("[[12.670, 249.44, 35.21,246.69, 44.57, 1e2]]"), **extra}
    packed = pack_original(original)
    assert isinstance(packed, bytes) and b"[[12.670, 249.44, 35.21,246.69, 44.57, 1e2]]" in packed
    assert unpack_original(packed) == original


def test_a_polygon_mixing_integers_and_floats_comes_back_equal() -> None:
    original = {"segmentation": [[1, 2.5, 3, 4, 5, 6]], "bbox": [1, 2.5, 4, 3.5]}
    assert unpack_original(pack_original(original)) == original


# ------------------------------------------------------------------- imported polygons, rasterised on first use
def _polygon_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project imported from a COCO file of polygons spelt as a person would not (``5.50``, spaces)."""
    from app.core.formats.coco import load_coco

    source = tmp_path / "src.json"
    data = tiny_coco()
    text = json.dumps(data).replace('[[5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]]', '[[5.50, 5, 15,5, 15.0,15, 5, 15 ]]')
    source.write_text(text)
    dataset, report = load_coco(source)
    assert report.ok and not any(inst.rasterised for inst in dataset.instances)
    ProjectStore.create(tmp_path / "p.srproj", dataset, source_path=source).close()
    return tmp_path / "p.srproj", source


def test_imported_polygons_are_stored_as_their_text_and_rasterised_on_first_use(tmp_path: Path) -> None:
    from app.core.records import SourcePolygons
    from app.core.formats.polygons import polygons_to_rle

    project, source = _polygon_project(tmp_path)
    with ProjectStore.open(project) as store:
        assert store._conn.execute("SELECT COUNT(*) FROM instance_masks WHERE counts IS NULL").fetchone()[0] == 3
        inst = store.instance(17)
        assert not inst.rasterised
        assert inst.original_segmentation["segmentation"] == SourcePolygons("[[5.50, 5, 15,5, 15.0,15, 5, 15 ]]")
        expected = polygons_to_rle([[5.5, 5, 15, 5, 15, 15, 5, 15]], 30, 40)
        assert inst.rle == expected and inst.rasterised
        edit = store.set_mask(17, np.zeros((30, 40), bool))
        assert edit.before_rle == expected  # the history holds the imported pixels
        store.revert(edit.id)
        back = store.instance(17)
        assert back.rle == expected and back.original_segmentation["area"] == 100.0
        assert back.original_segmentation["segmentation"] == [[5.5, 5, 15, 5, 15, 15, 5, 15]]
        triangle = store.instance(18).mask()
        deletion = store.delete_instance(18)  # still polygons only: its history must hold the pixels
        store.revert(deletion.id)
        assert np.array_equal(store.instance(18).mask(), triangle) and triangle.any()


def test_source_export_of_an_unedited_project_writes_the_files_own_polygon_text(tmp_path: Path) -> None:
    from app.core.formats.coco_export import write_coco

    project, source = _polygon_project(tmp_path)
    with ProjectStore.open(project, read_only=True) as store:
        write_coco(tmp_path / "out.json", store.extra, store.images(), store.categories(), store.iter_instances())
    out = (tmp_path / "out.json").read_text()
    assert out.count('"segmentation":[[5.50, 5, 15,5, 15.0,15, 5, 15 ]]') == 2
    assert json.loads(out)["annotations"] == json.loads(source.read_text())["annotations"]


def test_adding_polygons_to_an_existing_project_stores_their_pixels(tmp_path: Path, store: ProjectStore) -> None:
    """A project made by format 1 requires counts; an addition always rasterises (it is a small file)."""
    from app.core.formats.coco import load_coco

    data = tiny_coco(W, H)
    data["categories"] = [{"id": 1, "name": "acorn"}, {"id": 2, "name": "dog"}]
    for record in data["images"] + data["annotations"]:
        record["id"] += 100
    for ann in data["annotations"]:
        ann["image_id"] += 100
    (tmp_path / "add.json").write_text(json.dumps(data))
    dataset, _ = load_coco(tmp_path / "add.json")
    store.add_dataset(dataset)
    assert store.counts_by_image()[101] == 2
    assert store._conn.execute("SELECT COUNT(*) FROM instance_masks WHERE counts IS NULL").fetchone()[0] == 0


def test_a_format_1_project_still_opens(project: Path) -> None:
    conn = sqlite3.connect(project)
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    conn.commit()
    conn.close()
    with ProjectStore.open(project) as store:
        assert np.array_equal(store.instance(31).mask(), ring())
