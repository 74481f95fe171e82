"""Refining a whole dataset on several processes under ``torchrun`` (torch.distributed), and the image loader
that keeps the network fed.

Every rank takes a deterministic shard of the selected images (balanced by instance count), refines it on its own
device (``cuda:LOCAL_RANK``, else the CPU) and appends the results to its own shard file (app/services/shards.py).
Rank 0 alone writes the project: it merges leftovers of earlier runs, decides the selection and tells the others
(one broadcast), then merges every rank's shard as records arrive and at the end. A re-run skips what was merged,
so a killed rank or job is resumed by running the same command again.

Backends: NCCL on GPUs, gloo on CPUs. torch is imported only inside the functions that need it.
"""
from __future__ import annotations

import ctypes
import heapq
import logging
import os
import signal
import sys
import time
import uuid
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from app.core.errors import DatasetError
from app.core.images import read_image_rgb
from app.core.records import encode_mask
from app.core.store.project import ProjectStore
from app.refiner.options import RefineOptions
from app.services.refine import BatchReport, open_for_refining, refined_mask
from app.services.selection import Selection, image_file, select_instances
from app.services.shards import ShardMerger, ShardRecord, ShardWriter, check_shard_folder, merge_leftovers, shard_path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
GlobalProgress = Callable[[int, int, float], None]
"""(instances merged, instances selected, seconds since the start) — rank 0's view of the whole job."""


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in a torchrun job."""

    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def torchrun_ranks() -> Ranks | None:
    """The job's ranks when this process was started by torchrun (or another launcher setting RANK and
    WORLD_SIZE), else None."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    return Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))


def shard_images(by_image: dict[int, list[int]], world: int) -> list[list[int]]:
    """Images split into ``world`` shards with balanced instance counts (largest first to the lightest shard);
    deterministic, and each shard keeps the project's image order."""
    order = {image_id: n for n, image_id in enumerate(by_image)}
    heap = [(0, r) for r in range(world)]
    shards: list[list[int]] = [[] for _ in range(world)]
    for image_id, ids in sorted(by_image.items(), key=lambda item: (-len(item[1]), order[item[0]])):
        load, r = heapq.heappop(heap)
        shards[r].append(image_id)
        heapq.heappush(heap, (load + len(ids), r))
    return [sorted(s, key=order.__getitem__) for s in shards]


@dataclass
class LoadedImage:
    """An image and its selected instances' masks, decoded ahead of the network (or why it could not be)."""

    image_id: int
    ids: list[int]
    image: np.ndarray | None = None
    masks: list[np.ndarray] | None = None
    problem: str | None = None
    path_name: str = ""
    seconds: float = 0.0


class ImageFeed:
    """Image ids -> :class:`LoadedImage`: what the data loader's workers decode (each opens the project read-only)."""

    def __init__(self, project: Path, items: list[tuple[int, list[int]]]) -> None:
        self.project = project
        self.items = items
        self._store: ProjectStore | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> LoadedImage:
        image_id, ids = self.items[index]
        started = time.perf_counter()
        if self._store is None:
            self._store = ProjectStore.open(self.project, read_only=True)
        out = LoadedImage(image_id, ids)
        try:
            path = image_file(self._store, self._store.image(image_id))
            out.path_name = path.name
            out.image = read_image_rgb(path)
            stored = {inst.id: inst for inst in self._store.instances_for_image(image_id)}
            out.masks = [stored[i].mask() for i in ids]
            if out.masks and out.masks[0].shape != out.image.shape[:2]:
                raise DatasetError(path, f"the image is {out.image.shape[1]}x{out.image.shape[0]} but its masks are "
                                         f"{out.masks[0].shape[1]}x{out.masks[0].shape[0]}")
        except DatasetError as error:
            out.image, out.masks, out.problem = None, None, str(error)
        out.seconds = time.perf_counter() - started
        return out


def _as_is(item: LoadedImage) -> LoadedImage:
    return item


def _die_with_parent(_worker_id: int) -> None:
    """Loader workers end when their rank does, even one killed with SIGKILL (Linux): otherwise a worker blocked
    on a full result pipe outlives it forever."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def load_images(project: Path, items: list[tuple[int, list[int]]], workers: int) -> Iterator[LoadedImage]:
    """The images of ``items`` decoded by ``workers`` processes ahead of the caller (in this process when 0)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(ImageFeed(project, items), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_as_is, prefetch_factor=4 if workers else None,
                        worker_init_fn=_die_with_parent if workers else None)
    yield from loader


@dataclass
class Timing:
    """Where a rank's time went (seconds): waiting for decoded images, the refiner, pasting + encoding, shard writes."""

    waiting: float = 0.0
    refining: float = 0.0
    pasting: float = 0.0
    writing: float = 0.0
    decoding: float = 0.0  # inside the loader's workers, overlapped with the rest


def refine_sharded(
    project: Path,
    options: RefineOptions,
    selection: Selection,
    ranks: Ranks,
    *,
    workers: int = 2,
    images_dir: Path | None = None,
    progress: GlobalProgress | None = None,
    refiner_factory: Callable[[RefineOptions], Any] | None = None,
) -> tuple[BatchReport, Timing]:
    """This rank's part of a distributed ``refine`` (see the module docstring); returns its report and timing."""
    import torch
    import torch.distributed as dist

    device = _rank_device(options, ranks)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(hours=12))
    try:
        with ExitStack() as stack:
            store = None
            payload: list[Any] = [None, None]
            if ranks.leader:
                check_shard_folder(project)
                store = stack.enter_context(open_for_refining(project, images_dir))
                merge_leftovers(store)
                payload = [uuid.uuid4().hex[:12], select_instances(store, selection)]
            dist.broadcast_object_list(payload, src=0)
            job, by_image = payload
            mine = shard_images(by_image, ranks.world)[ranks.rank]
            total = sum(len(ids) for ids in by_image.values())
            log.info("[rank %d/%d] %d of %d images, %d instances, on %s", ranks.rank, ranks.world, len(mine),
                     len(by_image), sum(len(by_image[i]) for i in mine), device)
            refiner = (refiner_factory or _default_factory)(replace(options, device=device))
            writer = stack.enter_context(closing(ShardWriter(shard_path(project, job, ranks.rank), ranks.rank, job)))
            started = time.perf_counter()
            shards = [shard_path(project, job, r) for r in range(ranks.world)]
            merger = ShardMerger(store, shards) if store is not None else None

            def merge() -> None:
                if merger.poll() and progress is not None:
                    progress(merger.merged, total, time.perf_counter() - started)

            report = BatchReport(selected=sum(len(by_image[i]) for i in mine))
            timing = Timing()
            _refine_images(project, by_image, mine, options, refiner, writer, report, timing, workers, ranks,
                           merge if merger is not None else None)
            writer.finish()
            if merger is not None:
                while len(merger.done) < len(merger.files):
                    merge()
                    time.sleep(0.5)
                merge()
                merger.remove_files()
            report.seconds = time.perf_counter() - started
        dist.barrier()
        return report, timing
    finally:
        dist.destroy_process_group()


def _rank_device(options: RefineOptions, ranks: Ranks) -> str:
    import torch

    if options.device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank % torch.cuda.device_count()}"
    return "cpu" if options.device == "auto" else options.device


def _default_factory(options: RefineOptions) -> Any:
    from app.services.refine import load_refiner

    return load_refiner(options)


def _refine_images(project: Path, by_image: dict[int, list[int]], mine: list[int], options: RefineOptions,
                   refiner: Any, writer: ShardWriter, report: BatchReport, timing: Timing, workers: int,
                   ranks: Ranks, after_image: Callable[[], None] | None) -> None:
    """Refine this rank's images in groups holding at least a network batch of instances (the refiner batches
    across the images of a group), writing each image's records as one shard batch."""
    group: list[LoadedImage] = []
    done = 0
    waited = time.perf_counter()
    for item in load_images(project, [(i, by_image[i]) for i in mine], workers):
        timing.waiting += time.perf_counter() - waited
        timing.decoding += item.seconds
        report.images += 1
        if item.problem is not None:
            report.problems.append(item.problem)
            log.warning("[rank %d] skipped image %d: %s", ranks.rank, item.image_id, item.problem)
            done += 1
            if after_image is not None:
                after_image()
        else:
            group.append(item)
        if group and (sum(len(g.ids) for g in group) >= refiner.batch_size or done + len(group) == len(mine)):
            _refine_group(group, options, refiner, writer, report, timing, ranks, after_image)
            done += len(group)
            log.info("[rank %d] %d/%d images", ranks.rank, done, len(mine))
            group = []
        waited = time.perf_counter()


def _refine_group(group: list[LoadedImage], options: RefineOptions, refiner: Any, writer: ShardWriter,
                  report: BatchReport, timing: Timing, ranks: Ranks, after_image: Callable[[], None] | None) -> None:
    t0 = time.perf_counter()
    finals = refiner.refine_images([(item.image, item.masks) for item in group], options)
    timing.refining += time.perf_counter() - t0
    for item, patches in zip(group, finals):
        t1 = time.perf_counter()
        records, changed = [], 0
        for k, instance_id in enumerate(item.ids):
            patch = patches[k]
            if patch.skipped:
                report.passed_through += 1
                continue
            rle = encode_mask(refined_mask(patch, item.masks[k]))
            confidence = float(patch.confidence.mean()) if patch.confidence.size else 0.0
            records.append(ShardRecord(instance_id, item.image_id, rle, refiner.name, options.mode,
                                       patch.reverse_steps, confidence))
            changed += patch.changed
            report.unchanged += patch.changed == 0
        t2 = time.perf_counter()
        for record in records:
            writer.add(record)
        writer.sync()
        timing.pasting += t2 - t1
        timing.writing += time.perf_counter() - t2
        report.refined += len(records)
        report.changed_pixels += changed
        log.info("[rank %d] image %d (%s): %d instance(s), %d px changed", ranks.rank, item.image_id, item.path_name,
                 len(item.ids), changed)
        if after_image is not None:
            after_image()
