"""Result shards of a distributed refinement: each rank appends its refined masks to its own file, and the one
process that writes the project merges them, exactly once.

A shard file is JSON lines beside the project (``<project>.shards/<job>-rank<r>.jsonl``): a header line (rank,
pid, job), one record per refined instance (its RLE and what the provenance needs) and a final ``done`` line.
Each line carries a CRC-32 of its content, and the file is fsync'd every few records, so a rank killed mid-write
leaves at most a torn last line, which readers ignore (that instance is refined again by the next run).

Merging writes a batch of records *and* how far each file has been merged (a meta value of the project) in one
SQLite transaction, so a crash can neither lose a merged record nor merge one twice. Files of finished or killed
jobs are merged at the start of the next run, then removed.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import DatasetError
from app.core.records import Provenance
from app.core.store.errors import ProjectError
from app.core.store.project import ProjectStore

log = logging.getLogger(__name__)

OFFSETS_KEY = "shard_offsets"
SUFFIX = ".jsonl"


def shard_dir(project: Path) -> Path:
    """The folder beside ``project`` that holds its shard files."""
    return project.with_name(project.name + ".shards")


def shard_path(project: Path, job: str, rank: int) -> Path:
    return shard_dir(project) / f"{job}-rank{rank}{SUFFIX}"


def _line(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return json.dumps({"crc": zlib.crc32(body.encode()), "body": payload}, separators=(",", ":"), sort_keys=True).encode() + b"\n"


@dataclass
class ShardRecord:
    """One refined instance as a rank wrote it."""

    instance_id: int
    image_id: int
    rle: dict[str, Any]
    weights: str
    mode: str
    steps: int
    confidence: float

    def provenance(self) -> Provenance:
        return Provenance.refined(self.weights, self.mode, self.steps, self.confidence)


class ShardWriter:
    """Appends records to one rank's shard file; fsyncs every ``sync_every`` records and on close."""

    def __init__(self, path: Path, rank: int, job: str, sync_every: int = 32) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "ab")
        self._pending = 0
        self.records = 0
        self.sync_every = sync_every
        self._write({"header": True, "rank": rank, "pid": os.getpid(), "job": job})
        self.sync()

    def _write(self, payload: dict[str, Any]) -> None:
        self._file.write(_line(payload))
        self._file.flush()

    def add(self, record: ShardRecord) -> None:
        self._write({"instance": record.instance_id, "image": record.image_id, "rle": record.rle,
                     "weights": record.weights, "mode": record.mode, "steps": record.steps,
                     "confidence": record.confidence})
        self.records += 1
        self._pending += 1
        if self._pending >= self.sync_every:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._file.fileno())
        self._pending = 0

    def finish(self) -> None:
        """Write the ``done`` line (the rank refined all it was given), sync and close."""
        self._write({"done": True, "records": self.records})
        self.close()

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


@dataclass
class ShardContents:
    """What a read from ``offset`` found: complete records, whether the rank finished, where to read next."""

    records: list[ShardRecord] = field(default_factory=list)
    done: bool = False
    offset: int = 0
    torn: int = 0


def read_shard(path: Path, offset: int = 0) -> ShardContents:
    """The complete, intact lines of a shard file after ``offset``; a torn or corrupt line is skipped (counted)."""
    out = ShardContents(offset=offset)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return out
    end = data.rfind(b"\n") + 1
    for raw in data[:end].splitlines():
        payload = _parse(raw)
        if payload is None:
            out.torn += 1
        elif payload.get("done"):
            out.done = True
        elif "instance" in payload:
            out.records.append(ShardRecord(int(payload["instance"]), int(payload["image"]), payload["rle"],
                                           str(payload["weights"]), str(payload["mode"]), int(payload["steps"]),
                                           float(payload["confidence"])))
    out.offset = offset + end
    return out


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        line = json.loads(raw)
        body = line["body"]
        if zlib.crc32(json.dumps(body, separators=(",", ":"), sort_keys=True).encode()) != line["crc"]:
            return None
        return body
    except (ValueError, KeyError, TypeError):
        return None


class ShardMerger:
    """Merges shard files into a project opened for writing, each record once (see the module docstring)."""

    def __init__(self, store: ProjectStore, files: list[Path]) -> None:
        self.store = store
        self.files = list(files)
        self.done: set[Path] = set()
        self.merged = 0

    def poll(self) -> int:
        """Merge what is new in every file; returns how many records were merged now."""
        offsets = dict(self.store.meta_value(OFFSETS_KEY, {}))
        batch: list[ShardRecord] = []
        for path in self.files:
            contents = read_shard(path, offsets.get(path.name, 0))
            if contents.torn:
                log.warning("%s: %d torn or corrupt line(s) skipped; their instances are refined again next run",
                            path, contents.torn)
            batch += contents.records
            offsets[path.name] = contents.offset
            if contents.done:
                self.done.add(path)
        if not batch and offsets == self.store.meta_value(OFFSETS_KEY, {}):
            return 0
        with self.store.transaction():
            for record in batch:
                _merge(self.store, record)
            self.store.set_meta_value(OFFSETS_KEY, offsets)
        self.merged += len(batch)
        return len(batch)

    def remove_files(self) -> None:
        """Delete the merged files, then forget their offsets (a crash in between leaves only a stale offset)."""
        for path in self.files:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # only when empty: another job's files may be there
            shard_dir(self.store.path).rmdir()
        offsets = {k: v for k, v in self.store.meta_value(OFFSETS_KEY, {}).items()
                   if k not in {p.name for p in self.files}}
        self.store.set_meta_value(OFFSETS_KEY, offsets)


def _merge(store: ProjectStore, record: ShardRecord) -> None:
    try:
        store.set_mask(record.instance_id, record.rle, provenance=record.provenance())
    except (ProjectError, ValueError) as error:
        log.warning("shard record for instance %d not merged: %s", record.instance_id, error)


def merge_leftovers(store: ProjectStore) -> int:
    """Merge every shard file beside the project (jobs that finished or were killed) and remove them."""
    folder = shard_dir(store.path)
    files = sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
    if not files:
        return 0
    merger = ShardMerger(store, files)
    merger.poll()
    merger.remove_files()
    log.info("merged %d refined instance(s) left in %d shard file(s) by an earlier run", merger.merged, len(files))
    return merger.merged


def check_shard_folder(project: Path) -> None:
    """DatasetError when the shard folder cannot be made beside the project (a read-only folder, say)."""
    folder = shard_dir(project)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as error:
        raise DatasetError(folder, f"cannot make the shard folder: {error.strerror}") from error
