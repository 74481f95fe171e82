"""Shard files and their merge: torn lines ignored, each record merged once, balanced deterministic shards."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.core.formats.coco import load_coco
from app.core.package_data import demo_dir
from app.core.records import encode_mask
from app.core.store.project import ProjectStore
from app.services.distributed import shard_images, torchrun_ranks
from app.services.shards import OFFSETS_KEY, ShardMerger, ShardRecord, ShardWriter, merge_leftovers, read_shard, shard_path


@pytest.fixture
def project(tmp_path) -> Path:
    images = tmp_path / "images"
    shutil.copytree(demo_dir(), images)
    dataset, _ = load_coco(images / "demo.json", images_dir=images)
    path = tmp_path / "demo.srproj"
    ProjectStore.create(path, dataset, images_dir=images).close()
    return path


def _record(store: ProjectStore, instance_id: int) -> ShardRecord:
    inst = store.instance(instance_id)
    mask = inst.mask().copy()
    mask[:4, :4] = ~mask[:4, :4]  # a visible change
    return ShardRecord(instance_id, inst.image_id, encode_mask(mask), "w.safetensors", "instance", 3, 0.8)


def test_records_round_trip_and_a_torn_last_line_is_left_for_later(project):
    with ProjectStore.open(project, read_only=True) as store:
        ids = [r.id for r in store.list_instances()]
        records = [_record(store, i) for i in ids[:3]]
    path = shard_path(project, "job1", 1)
    writer = ShardWriter(path, 1, "job1", sync_every=2)
    for record in records:
        writer.add(record)
    writer.close()
    with open(path, "ab") as handle:  # a rank killed in the middle of a write
        handle.write(b'{"body":{"instance":')
    contents = read_shard(path)
    assert [r.instance_id for r in contents.records] == ids[:3] and not contents.done
    assert contents.records[0] == records[0] and contents.offset < path.stat().st_size
    assert read_shard(path, contents.offset).records == []


def test_a_corrupt_line_is_skipped_and_counted(project, tmp_path):
    path = tmp_path / "x.jsonl"
    writer = ShardWriter(path, 0, "j")
    with ProjectStore.open(project, read_only=True) as store:
        writer.add(_record(store, store.list_instances()[0].id))
    writer.finish()
    data = path.read_bytes().replace(b'"mode":"instance"', b'"mode":"hr"')  # CRC no longer matches
    path.write_bytes(data)
    contents = read_shard(path)
    assert contents.records == [] and contents.torn == 1 and contents.done


def test_merge_is_exactly_once_across_polls_and_restarts(project):
    with ProjectStore.open(project) as store:
        ids = [r.id for r in store.list_instances()]
        path = shard_path(project, "jobA", 0)
        writer = ShardWriter(path, 0, "jobA")
        writer.add(_record(store, ids[0]))
        merger = ShardMerger(store, [path])
        assert merger.poll() == 1 and merger.poll() == 0
        writer.add(_record(store, ids[1]))
        writer.finish()
        assert merger.poll() == 1 and merger.done == {path}
        assert store.meta_value(OFFSETS_KEY) == {path.name: path.stat().st_size}
    with ProjectStore.open(project) as store:  # a restart before the files were removed merges nothing twice
        assert merge_leftovers(store) == 0 and not path.exists() and store.meta_value(OFFSETS_KEY) == {}
        refines = [sum(e.action.value == "refine" for e in store.history(i)) for i in ids]
        assert refines[:2] == [1, 1] and sum(refines) == 2
        assert store.instance(ids[0]).provenance.weights == "w.safetensors"


def test_shards_balance_instances_and_are_deterministic():
    rng = np.random.default_rng(0)
    by_image = {i: list(range(int(n))) for i, n in enumerate(rng.integers(1, 40, 200))}
    shards = shard_images(by_image, 3)
    assert shards == shard_images(dict(by_image), 3)
    assert sorted(i for s in shards for i in s) == list(by_image)
    loads = [sum(len(by_image[i]) for i in s) for s in shards]
    assert max(loads) - min(loads) <= max(len(v) for v in by_image.values())
    assert all(s == sorted(s) for s in shards)  # project order kept inside a shard


def test_torchrun_environment_is_detected(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert torchrun_ranks() is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert torchrun_ranks().world == 1  # one process: sharded only when asked (--distributed)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranks = torchrun_ranks()
    assert (ranks.rank, ranks.world, ranks.local_rank, ranks.leader) == (1, 4, 1, False)


def test_distributed_without_torchrun_is_one_clear_error(project, monkeypatch, capsys):
    from app.main import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["refine", str(project), "--distributed"]) == 2
    assert "start the command with torchrun" in capsys.readouterr().err
