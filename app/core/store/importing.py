"""Filling a project from a dataset: a new file in one pass, or an addition to an existing one.

Both check every instance against the images and categories before it is written and stop at the first
that cannot be stored, with one error naming the annotation; the caller's transaction (or the temporary
file of a new project) then takes everything back.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterator

from app.core.gc_pause import paused_gc
from app.core.records import Dataset, Instance
from app.core.store.errors import ProjectError
from app.core.store.files import connect, fsync_file, sqlite_problem
from app.core.store.lock import ProjectLock
from app.core.store.rows import INSERT_CATEGORY, INSERT_IMAGE, category_row, image_row, insert_instances
from app.core.store.schema import FORMAT_VERSION, INDEXES, SCHEMA

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` during long operations."""

_PROGRESS_EVERY = 2_000  # often enough for a stop request (app.core.signals) to be seen promptly


@dataclasses.dataclass(frozen=True)
class AddResult:
    """What ``add_dataset`` put into an existing project. ``renumbered`` maps incoming instance ids that
    were already taken to the ids they got."""

    images_added: int
    categories_added: int
    instances_added: int
    renumbered: dict[int, int] = dataclasses.field(default_factory=dict)


def add_to_project(
    conn: sqlite3.Connection, project: Path, dataset: Dataset, progress: ProgressFn | None
) -> AddResult:
    """Add a dataset inside the caller's write transaction (see ``ProjectStore.add_dataset``)."""
    rows = conn.execute("SELECT id, file_name, height, width FROM images")
    known_images = {r[0]: (r[1], r[2], r[3]) for r in rows}
    known_cats = dict(conn.execute("SELECT id, name FROM categories"))
    new_images = [img for img in dataset.images.values() if img.id not in known_images]
    new_cats = [cat for cat in dataset.categories.values() if cat.id not in known_cats]
    for img in dataset.images.values():
        if img.id in known_images and known_images[img.id] != (img.file_name, img.height, img.width):
            raise ProjectError(
                project, f"image {img.id} is {known_images[img.id]} here but "
                f"{(img.file_name, img.height, img.width)} in the dataset being added"
            )
    for cat in dataset.categories.values():
        if cat.id in known_cats and known_cats[cat.id] != cat.name:
            raise ProjectError(
                project, f"category {cat.id} is {known_cats[cat.id]!r} here but {cat.name!r} in the "
                "dataset being added"
            )
    _refuse_a_copy(conn, project, dataset)
    image_seq, cat_seq = (
        conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
        for table in ("images", "categories")
    )
    conn.executemany(INSERT_IMAGE, (image_row(image_seq + 1 + i, img) for i, img in enumerate(new_images)))
    conn.executemany(INSERT_CATEGORY, (category_row(cat_seq + 1 + i, c) for i, c in enumerate(new_cats)))
    sizes = {img_id: (h, w) for img_id, (_, h, w) in known_images.items()}
    sizes.update((img.id, (img.height, img.width)) for img in new_images)
    taken = {r[0] for r in conn.execute("SELECT id FROM instances UNION SELECT instance_id FROM edits")}
    renumbered = _renumber(dataset.instances, taken)
    next_z = dict(conn.execute("SELECT image_id, MAX(z_order) + 1 FROM instances GROUP BY image_id"))
    incoming = (_with_id(inst, renumbered.get(inst.id, inst.id)) for inst in dataset.instances)
    category_ids = set(known_cats) | {c.id for c in new_cats}
    checked = _checked(project, incoming, sizes, category_ids, progress, len(dataset.instances))
    insert_instances(conn, checked, next_z, rasterise=True)  # the file may be format 1 (counts NOT NULL)
    return AddResult(len(new_images), len(new_cats), len(dataset.instances), renumbered)


def _refuse_a_copy(conn: sqlite3.Connection, project: Path, dataset: Dataset) -> None:
    """Refuse a dataset whose every annotation is already here (the same id on the same image and category): a
    copy of the project's own source, or an export of it, which would otherwise be renumbered and held twice."""
    if not dataset.instances:
        return
    here = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, image_id, category_id FROM instances")}
    if all(here.get(inst.id) == (inst.image_id, inst.category_id) for inst in dataset.instances):
        raise ProjectError(project, f"already holds all {len(dataset.instances)} annotations of the dataset being "
                                    "added (the same ids on the same images and categories): adding them would hold "
                                    "every one twice; import the file as a new project to compare the two")


def build_project(
    conn: sqlite3.Connection,
    dataset: Dataset,
    source_path: str | os.PathLike[str] | None,
    images_dir: str | os.PathLike[str] | None,
    progress: ProgressFn | None,
) -> None:
    """Fill a fresh file: no journal while building (the file is thrown away on failure), indexes last."""
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    conn.executescript(SCHEMA)
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": dataset.kind,
        "extra": dataset.extra,
        "source_path": None if source_path is None else str(Path(source_path).resolve()),
        "images_dir": None if images_dir is None else str(Path(images_dir).resolve()),
        "created": time.time(),
    }
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    conn.executemany(INSERT_IMAGE, (image_row(i, img) for i, img in enumerate(dataset.images.values())))
    conn.executemany(INSERT_CATEGORY, (category_row(i, c) for i, c in enumerate(dataset.categories.values())))
    sizes = {img.id: (img.height, img.width) for img in dataset.images.values()}
    source = source_path or "dataset"
    checked = _checked(source, iter(dataset.instances), sizes, set(dataset.categories), progress,
                       len(dataset.instances))
    insert_instances(conn, checked, {}, rasterise=False)
    conn.execute("COMMIT")
    conn.executescript(INDEXES)
    conn.execute("PRAGMA journal_mode = WAL")


def _checked(
    source: str | os.PathLike[str],
    instances: Iterator[Instance],
    sizes: dict[int, tuple[int, int]],
    category_ids: set[int],
    progress: ProgressFn | None,
    total: int,
) -> Iterator[Instance]:
    """Pass instances through, stopping with one clear error at the first that cannot be stored."""
    seen: set[int] = set()
    for done, inst in enumerate(instances, 1):
        problem = None
        if inst.id in seen:
            problem = "duplicate annotation id"
        elif inst.image_id not in sizes:
            problem = f"unknown image id {inst.image_id}"
        elif inst.category_id not in category_ids:
            problem = f"unknown category id {inst.category_id}"
        elif inst.size != sizes[inst.image_id]:
            problem = f"mask size {inst.size} differs from the image's {sizes[inst.image_id]}"
        if problem is not None:
            raise ProjectError(source, problem, f"annotation {inst.id} (image {inst.image_id})")
        seen.add(inst.id)
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, total)
        yield inst
    if progress is not None:
        progress(total, total)


def _renumber(instances: list[Instance], taken: set[int]) -> dict[int, int]:
    next_id = max(taken | {inst.id for inst in instances}, default=0) + 1
    renumbered: dict[int, int] = {}
    for inst in instances:
        if inst.id in taken:
            renumbered[inst.id] = next_id
            next_id += 1
    return renumbered


def _with_id(inst: Instance, new_id: int) -> Instance:
    if new_id == inst.id:
        return inst
    return dataclasses.replace(inst, id=new_id)


def create_project_file(path: Path, dataset: Dataset, source_path: str | os.PathLike[str] | None,
                        images_dir: str | os.PathLike[str] | None,
                        progress: ProgressFn | None) -> tuple[sqlite3.Connection, ProjectLock]:
    """Build a new project in ``.<name>.importing`` beside ``path`` and rename it into place, under the project's
    lock; returns the open connection and the held lock. An error, Ctrl+C or SIGTERM leaves no project rather
    than half of one (a SIGKILL can leave the hidden temporary file; the next create of the same project removes
    it)."""
    if not path.parent.is_dir():
        raise ProjectError(path, f"the folder {path.parent} does not exist")
    lock = ProjectLock(path)
    try:
        locked = lock.acquire()
    except OSError as e:
        raise ProjectError(path, f"cannot create the lock file {lock.path}: {e.strerror}") from e
    if not locked:
        raise ProjectError(path, f"already open for writing by {lock.holder()}")
    tmp = path.with_name(f".{path.name}.importing")
    leftovers = [tmp.with_name(tmp.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
    try:
        if path.exists():
            raise ProjectError(path, "already exists; open it, or add the dataset to it")
        for stale in (tmp, *leftovers):  # a killed create's, removed under the lock
            stale.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            with paused_gc():
                build_project(conn, dataset, source_path, images_dir, progress)
        finally:
            conn.close()
        fsync_file(tmp)
        os.replace(tmp, path)
        return connect(path, read_only=False), lock
    except BaseException as e:
        for partial in (tmp, *leftovers):
            partial.unlink(missing_ok=True)
        lock.release()
        if isinstance(e, sqlite3.Error):
            raise ProjectError(path, f"could not write the project: {sqlite_problem(e, path)}") from e
        raise
