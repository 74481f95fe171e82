"""``refine`` under torchrun (gloo, CPU): the same masks as one process, and a killed rank resumed exactly once."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from app.core.package_data import demo_dir
from app.core.store.project import ProjectStore
from app.refiner.band_net import BandConfig, BandNet
from app.refiner.weights import save_weights
from app.services.shards import shard_dir

pytestmark = pytest.mark.slow
COPIES = 3  # the demo's 4 photos, three times over: 12 images, 39 instances


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A small band network whose head is not zero, so refinements really change masks."""
    torch.manual_seed(0)
    net = BandNet(BandConfig(widths=(16, 16, 16, 8)))
    torch.nn.init.normal_(net.head3.weight, std=0.5)
    return save_weights(net, tmp_path_factory.mktemp("w") / "tiny-band.safetensors")


def _dataset(folder: Path) -> Path:
    """The demo photos copied COPIES times under new names and ids, as one COCO file."""
    demo = json.loads((demo_dir() / "demo.json").read_text())
    images, annotations = [], []
    for copy in range(COPIES):
        for image in demo["images"]:
            name = f"c{copy}_{image['file_name']}"
            shutil.copy(demo_dir() / image["file_name"], folder / name)
            images.append({**image, "id": image["id"] + 100 * copy, "file_name": name})
        for ann in demo["annotations"]:
            annotations.append({**ann, "id": ann["id"] + 1000 * copy, "image_id": ann["image_id"] + 100 * copy})
    path = folder / "copies.json"
    path.write_text(json.dumps({**demo, "images": images, "annotations": annotations}))
    return path


@pytest.fixture
def projects(tmp_path) -> tuple[Path, Path]:
    source = _dataset(tmp_path)
    out = []
    for name in ("single", "sharded"):
        project = tmp_path / f"{name}.srproj"
        subprocess.run([sys.executable, "-m", "app", "import", str(source), "--images", str(tmp_path),
                        "--project", str(project)], check=True, capture_output=True)
        out.append(project)
    return out[0], out[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _refine(project: Path, weights: Path, processes: int) -> subprocess.Popen:
    args = ["-m", "app", "refine", str(project), "--weights", str(weights), "--steps", "2", "--workers", "1"]
    if processes > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *args, "--distributed"]
    return subprocess.Popen([sys.executable, *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out
    assert "Traceback" not in out
    return out


def _masks(project: Path) -> dict[int, bytes]:
    with ProjectStore.open(project, read_only=True) as store:
        return {r.id: store.instance(r.id).mask().tobytes() for r in store.list_instances()}


def _refinements(project: Path) -> dict[int, int]:
    with ProjectStore.open(project, read_only=True) as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {r.id: sum(e.action.value == "refine" for e in store.history(r.id)) for r in store.list_instances()}


def test_two_processes_give_exactly_the_masks_of_one(projects, weights):
    single, sharded = projects
    _finish(_refine(single, weights, 1))
    out = _finish(_refine(sharded, weights, 2))
    assert "[rank 0/2] refined" in out and "[rank 1/2] refined" in out
    assert _masks(single) == _masks(sharded)
    assert set(_refinements(sharded).values()) == {1}
    assert not shard_dir(sharded).exists()


def test_a_killed_rank_is_resumed_and_every_instance_refined_once(projects, weights):
    _, project = projects
    job = _refine(project, weights, 2)
    victim = _wait_for_a_record(shard_dir(project), rank=1)
    os.kill(victim, signal.SIGKILL)
    out, _ = job.communicate(timeout=300)
    assert job.returncode != 0
    leftover = list(shard_dir(project).glob("*.jsonl"))
    assert leftover, "the killed job leaves its shards for the next run"
    _finish(_refine(project, weights, 2))
    refinements = _refinements(project)
    assert set(refinements.values()) == {1} and len(refinements) == 13 * COPIES
    assert not shard_dir(project).exists()


def _wait_for_a_record(folder: Path, rank: int, timeout: float = 600) -> int:
    """The pid of ``rank`` once its shard holds a refined instance (but not its last one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in folder.glob(f"*-rank{rank}.jsonl"):
            lines = [json.loads(line)["body"] for line in path.read_text().splitlines() if line.endswith("}")]
            if any("instance" in body for body in lines) and not any(body.get("done") for body in lines):
                return int(lines[0]["pid"])
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} wrote no record in {timeout} s")
