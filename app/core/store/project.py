"""The project store: one SQLite file per dataset holding its images, categories, every instance's current
mask, status and layer state, the edit history, and where the annotator left off.

Why it looks the way it does:
- Every accepted edit is one ``BEGIN IMMEDIATE ... COMMIT`` in WAL mode with a full fsync, so killing the
  process loses at most the edit in progress and the file always opens.
- Opening reads only the meta table: listings, counts and masks are SQL queries made when asked, so a
  245k-instance LVIS project opens in well under a second and never sits in memory.
- A new project is built in a temporary file beside the target and renamed into place; adding a dataset to
  an existing project is one transaction, rolled back whole on any problem. Either way a failed import
  leaves what was there untouched.
- The first window holds an OS lock on ``<project>.lock``; a second one opens read-only and says who holds
  it. Writes on a read-only store raise ``ReadOnlyProjectError``. Closing removes the lock file.
- Every SQLite error reaches the caller as a ``ProjectError`` that names the project and says what happened
  (another program writing, a full disk, a read-only folder, a damaged file): ``files.sqlite_problem``.
A store (like its SQLite connection) belongs to the thread that opened it; another thread that needs to
read opens its own with ``read_only=True``.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from app.core.gc_pause import paused_gc
from app.core.images import find_image_file
from app.core.store.history import EDIT_COLUMNS, Edit, EditAction, edit_from_row
from app.core.records import (
    Category, ChangeKind, Dataset, ImageRecord, Instance, Provenance, ReviewStatus, SegmentationFormat,
    encode_mask, rasterise_original, rle_xor_area,
)
from app.core.store.check import integrity_problems
from app.core.store.errors import ProjectError, ReadOnlyProjectError
from app.core.store.importing import AddResult, ProgressFn, add_to_project, create_project_file
from app.core.store.lock import ProjectLock
from app.core.store.packing import pack_original, unpack_original
from app.core.store.query import (
    InstanceFilter, count_areas, counts_by_category_and_status, limit_clause, order_clause, where_clause,
)
from app.core.store.rows import (
    CATEGORY_COLUMNS, IMAGE_COLUMNS, INSERT_MASK, INSTANCE_COLUMNS, INSTANCES_WITH_MASKS, SUMMARY_COLUMNS,
    InstanceSummary, StoredInstance, category_from_row, counts_text, dump_json, geometry, image_from_row,
    insert_instances, instance_from_row, provenance_values, rle_from, summary_from_row,
)
from app.core.store.files import NOT_UTF8, check_project, connect, read_meta, reads, sqlite_problem, take_lock
from app.core.store.schema import configure

log = logging.getLogger(__name__)

MaskLike = np.ndarray | dict[str, Any]
"""A (H, W) bool/uint8 array, or a compressed COCO RLE of the instance's image size."""

# Instance columns an edit may change, as recorded in the history; area and bbox follow the mask.
STATE_COLUMNS = (
    "category_id", "score", "iscrowd", "status", "prov_kind", "prov_weights", "prov_mode", "prov_steps",
    "prov_time", "z_order", "locked", "hidden", "changed_pixels", "mean_confidence", "source_format",
    "original_segmentation", "extra",
)
ROW_COLUMNS = ("image_id", *STATE_COLUMNS)
MASK_COLUMNS = frozenset({"counts", "original_segmentation"})  # in instance_masks; the rest in instances


class ProjectStore:
    """An open project file. Make one with ``ProjectStore.create`` or ``ProjectStore.open``; close it (or use
    it as a context manager) to release the writer lock."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: ProjectLock | None, reason: str | None):
        self.path = path
        self._conn = conn
        self._lock = lock
        self.read_only_reason = reason
        self._meta = read_meta(conn, path)

    # ----------------------------------------------------------------------------------- open / create
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> ProjectStore:
        """Open an existing project. Writable unless ``read_only`` or another window holds the lock (then
        read-only with ``read_only_reason`` saying why). Raises ProjectError for a file that is missing, not
        a project, or from a newer version."""
        path = Path(path)
        if not path.is_file():
            raise ProjectError(path, "no such project file")
        check_project(path)
        lock, reason = None, "opened read-only on request"
        if not read_only:
            lock, reason = take_lock(path)
        conn = None
        try:
            conn = connect(path, read_only=lock is None)
            store = cls(path, conn, lock, reason)
        except BaseException as e:
            if conn is not None:
                conn.close()
            if lock is not None:
                lock.release()
            if isinstance(e, sqlite3.Error):
                raise ProjectError(path, f"cannot open: {sqlite_problem(e, path)}") from e
            if isinstance(e, UnicodeDecodeError):
                raise ProjectError(path, NOT_UTF8) from None
            raise
        if reason is not None:
            log.debug("%s opened read-only: %s", path, reason)
        return store

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        dataset: Dataset,
        *,
        source_path: str | os.PathLike[str] | None = None,
        images_dir: str | os.PathLike[str] | None = None,
        progress: ProgressFn | None = None,
    ) -> ProjectStore:
        """Make a new project from a dataset and open it.

        Built in ``.<name>.importing`` beside the target and renamed into place under the project's lock, so
        an error, Ctrl+C or SIGTERM leaves no project rather than half of one (a SIGKILL can leave the hidden
        temporary file; the next create of the same project removes it).
        """
        path = Path(path)
        conn, lock = create_project_file(path, dataset, source_path, images_dir, progress)
        return cls(path, conn, lock, None)

    def sibling(self) -> ProjectStore:
        """Another writable connection to this project, for another thread (SQLite connections are per
        thread), covered by the writer lock this store holds: the sibling's lock object is never taken, so
        closing the sibling releases nothing. Only for a writable store; close the sibling first."""
        if self.read_only:
            raise ReadOnlyProjectError(self.path, f"opened read-only ({self.read_only_reason}); no writer to share")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            configure(conn, read_only=False)
        except sqlite3.Error as e:
            raise ProjectError(self.path, f"cannot open a second connection: {sqlite_problem(e, self.path)}") from e
        return ProjectStore(self.path, conn, ProjectLock(self.path), None)

    def close(self) -> None:
        """Close the connection and let go of the writer lock, removing its file."""
        self._conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- meta
    @property
    def read_only(self) -> bool:
        return self._lock is None

    @property
    def kind(self) -> str:
        """The format the dataset came from ("coco", "lvis", "png"): export's default."""
        return self._meta["kind"]

    @property
    def extra(self) -> dict[str, Any]:
        """Top-level keys of the imported file other than images/annotations/categories (info, licenses)."""
        return self._meta["extra"]

    @property
    def source_path(self) -> Path | None:
        value = self._meta.get("source_path")
        return None if value is None else Path(value)

    @property
    def images_dir(self) -> Path | None:
        value = self._meta.get("images_dir")
        return None if value is None else Path(value)

    def set_images_dir(self, images_dir: str | os.PathLike[str]) -> None:
        """Point the project at the folder its images are in (they moved, or were not given on import)."""
        value = str(Path(images_dir).resolve())
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('images_dir', ?)", (json.dumps(value),))
        self._meta["images_dir"] = value

    def image_path(self, image: ImageRecord) -> Path | None:
        """The image's file under the project's images folder (``find_image_file``: the one resolver the
        window and the command line share), None when no folder is set or no file matches."""
        return None if self.images_dir is None else find_image_file(self.images_dir, image)

    # --------------------------------------------------------------------------------- reading
    @reads
    def images(self) -> list[ImageRecord]:
        """Every image in file order (20k records for LVIS val: fine to hold)."""
        return [image_from_row(r) for r in self._conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images ORDER BY seq")]

    @reads
    def image_ids(self) -> list[int]:
        """Every image id in file order (what a refine queue walks)."""
        return [r[0] for r in self._conn.execute("SELECT id FROM images ORDER BY seq")]

    @reads
    def image(self, image_id: int) -> ImageRecord:
        row = self._conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise ProjectError(self.path, f"no image with id {image_id}")
        return image_from_row(row)

    @reads
    def categories(self) -> list[Category]:
        return [
            category_from_row(r)
            for r in self._conn.execute(f"SELECT {CATEGORY_COLUMNS} FROM categories ORDER BY seq")
        ]

    @reads
    def instance(self, instance_id: int) -> StoredInstance:
        row = self._conn.execute(
            f"SELECT {INSTANCE_COLUMNS} FROM {INSTANCES_WITH_MASKS} WHERE id = ?", (instance_id,)
        ).fetchone()
        if row is None:
            raise ProjectError(self.path, f"no instance with id {instance_id}")
        return instance_from_row(row)

    @reads
    def instances_for_image(self, image_id: int) -> list[StoredInstance]:
        """The image's instances, bottom of the overlap order first."""
        rows = self._conn.execute(
            f"SELECT {INSTANCE_COLUMNS} FROM {INSTANCES_WITH_MASKS} WHERE image_id = ? ORDER BY z_order, id",
            (image_id,),
        )
        return [instance_from_row(r) for r in rows]

    def iter_instances(
        self, *, statuses: Iterable[ReviewStatus] | None = None, by_image: bool = False, proposals: bool = True,
    ) -> Iterator[StoredInstance]:
        """Every instance (optionally only those with the given statuses; without proposals not accepted yet
        unless ``proposals``), streamed: in file order, or grouped by image with each image's bottom instance
        first (``by_image``, for label maps)."""
        where, params = where_clause(InstanceFilter(statuses=statuses, proposals=proposals))
        order = "image_id, z_order, id" if by_image else "seq"
        sql = f"SELECT {INSTANCE_COLUMNS} FROM {INSTANCES_WITH_MASKS}{where} ORDER BY {order}"
        for row in self._conn.execute(sql, params):
            yield instance_from_row(row)

    @reads
    def list_instances(self, query: InstanceFilter | None = None) -> list[InstanceSummary]:
        """Instances without their masks, filtered and sorted in SQL (page with limit/offset)."""
        query = query or InstanceFilter()
        where, params = where_clause(query)
        limit, limit_params = limit_clause(query)
        sql = f"SELECT {SUMMARY_COLUMNS} FROM instances{where}{order_clause(query)}{limit}"
        return [summary_from_row(r) for r in self._conn.execute(sql, params + limit_params)]

    @reads
    def count_instances(self, query: InstanceFilter | None = None) -> int:
        where, params = where_clause(query or InstanceFilter())
        return self._conn.execute(f"SELECT COUNT(*) FROM instances{where}", params).fetchone()[0]

    @reads
    def image_count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    @reads
    def counts_by_category(self, statuses: Iterable[ReviewStatus] | None = None) -> dict[int, int]:
        """Instances per category id (categories without instances are absent)."""
        return self._grouped("category_id", statuses)

    @reads
    def counts_by_image(self, statuses: Iterable[ReviewStatus] | None = None) -> dict[int, int]:
        """Instances per image id: with ``statuses=[UNREVIEWED]``, what is left to review on each image."""
        return self._grouped("image_id", statuses)

    @reads
    def counts_by_status(self) -> dict[ReviewStatus, int]:
        counts = dict(self._conn.execute("SELECT status, COUNT(*) FROM instances GROUP BY status"))
        return {s: counts.get(s.value, 0) for s in ReviewStatus}

    @reads
    def counts_by_category_and_status(self) -> dict[int, dict[ReviewStatus, int]]:
        """Instances per category id and status (``query.counts_by_category_and_status``)."""
        return counts_by_category_and_status(self._conn, self.path)

    @reads
    def count_areas(self, bounds: Sequence[float]) -> list[int]:
        """How many instance areas fall in each of [bounds[i], bounds[i + 1]), the last bin open above
        (``query.count_areas``). Areas are as export writes them: an unedited annotation's own area (a
        polygon's, for COCO), else its mask's pixel count."""
        return count_areas(self._conn, bounds)

    def _grouped(self, column: str, statuses: Iterable[ReviewStatus] | None) -> dict[int, int]:
        where, params = where_clause(InstanceFilter(statuses=statuses))
        return dict(self._conn.execute(f"SELECT {column}, COUNT(*) FROM instances{where} GROUP BY {column}", params))

    def integrity_problems(self) -> list[str]:
        """What is wrong with the project file, one line each; [] when it is sound (``store.check``: SQLite's
        integrity and foreign-key checks, then ours)."""
        try:
            return integrity_problems(self._conn)
        except sqlite3.DatabaseError as e:
            return [f"SQLite: {e}"]

    # --------------------------------------------------------------------------------- editing
    def set_mask(
        self,
        instance_id: int,
        mask: MaskLike,
        *,
        provenance: Provenance | None = None,
        params: dict[str, Any] | None = None,
    ) -> Edit:
        """Replace an instance's mask. ``provenance`` says what made it (default: a manual edit now); a
        REFINED provenance records a 'refine' edit and sets the instance's changed-pixel count and mean
        confidence (kept through later hand edits, as figures of the last refinement)."""
        provenance = provenance or Provenance.manual()
        refined = provenance.is_refined
        kind, weights, mode, steps, stamp = provenance_values(provenance)
        changes: dict[str, Any] = {
            "prov_kind": kind, "prov_weights": weights, "prov_mode": mode, "prov_steps": steps,
            "prov_time": stamp,
        }
        if refined:
            changes["mean_confidence"] = provenance.mean_confidence
        action = EditAction.REFINE if refined else EditAction.MANUAL
        return self._change(instance_id, action, changes, mask=mask, params=params)

    def set_status(self, instance_id: int, status: ReviewStatus) -> Edit:
        return self._change(instance_id, EditAction.STATUS, {"status": ReviewStatus(status).value})

    def set_category(self, instance_id: int, category_id: int) -> Edit:
        with self._write():
            self._require_category(category_id)
            return self._change(instance_id, EditAction.CATEGORY, {"category_id": category_id})

    def set_layer(
        self, instance_id: int, *, z_order: int | None = None, locked: bool | None = None,
        hidden: bool | None = None,
    ) -> Edit:
        """Change an instance's overlap order, lock or visibility (unset arguments stay as they are)."""
        values = {"z_order": z_order, "locked": locked, "hidden": hidden}
        changes = {k: int(v) for k, v in values.items() if v is not None}
        return self._change(instance_id, EditAction.LAYER, changes)

    def create_instance(
        self,
        image_id: int,
        category_id: int,
        mask: MaskLike,
        *,
        score: float | None = None,
        status: ReviewStatus = ReviewStatus.UNREVIEWED,
        provenance: Provenance | None = None,
        params: dict[str, Any] | None = None,
    ) -> Edit:
        """Add a new instance on top of the image's others; the edit's ``instance_id`` is its new id.
        ``params`` go into the creation's history entry (what made it: a prompt's box, find-similar's examples)."""
        with self._write() as conn:
            image = self.image(image_id)
            rle = self._rle_for(mask, (image.height, image.width), f"new instance on image {image_id}")
            new_id = conn.execute(
                "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM instances "
                "UNION ALL SELECT MAX(instance_id) FROM edits)"
            ).fetchone()[0]
            new_id = 1 if new_id is None else new_id + 1
            top = conn.execute("SELECT MAX(z_order) FROM instances WHERE image_id = ?", (image_id,)).fetchone()[0]
            inst = Instance(
                new_id, image_id, category_id, rle, score=score, status=status,
                provenance=provenance or Provenance(ChangeKind.MANUAL), source_format=SegmentationFormat.MASK,
            )
            self._require_category(category_id)
            insert_instances(conn, [inst], {image_id: 0 if top is None else top + 1}, rasterise=True)
            return self._record_whole(new_id, EditAction.CREATE, None, self._row(new_id), params or {})

    def delete_instance(self, instance_id: int) -> Edit:
        with self._write():
            return self._delete(instance_id, EditAction.DELETE, {})

    @reads
    def history(self, instance_id: int) -> list[Edit]:
        """Every recorded edit of an instance, oldest first (kept after the instance is deleted)."""
        rows = self._conn.execute(
            f"SELECT {EDIT_COLUMNS} FROM edits WHERE instance_id = ? ORDER BY id", (instance_id,)
        )
        return [edit_from_row(r) for r in rows]

    @reads
    def edit(self, edit_id: int) -> Edit:
        row = self._conn.execute(f"SELECT {EDIT_COLUMNS} FROM edits WHERE id = ?", (edit_id,)).fetchone()
        if row is None:
            raise ProjectError(self.path, f"no edit with id {edit_id}")
        return edit_from_row(row)

    def revert(self, edit_id: int, params: dict[str, Any] | None = None) -> Edit:
        """Put back what an edit changed (fields and mask as they were before it), as a new 'revert' edit.

        Fields that later edits changed and this one did not are left alone; a revert can itself be reverted.
        Reverting a creation deletes the instance, reverting a deletion restores it. ``params`` (its author) are kept.
        """
        with self._write():
            edit = self.edit(edit_id)
            params = {**(params or {}), "reverts": edit_id}
            if edit.before is None:
                return self._delete(edit.instance_id, EditAction.REVERT, params)
            if edit.after is None:
                return self._restore(edit, params)
            changed = {k: v for k, v in edit.before.items() if edit.after.get(k) != v}
            return self._change(edit.instance_id, EditAction.REVERT, changed, mask=edit.before_rle, params=params)

    # ------------------------------------------------------------------------------ transactions, meta
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several edits (and meta values) into one transaction: all are saved, or none is."""
        with self._write():
            yield

    def meta_value(self, key: str, default: Any = None) -> Any:
        """A value stored with :meth:`set_meta_value` (or one of the project's own meta keys)."""
        return self._meta.get(key, default)

    def set_meta_value(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` in the project's meta table (joins an open transaction)."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
        self._meta[key] = value

    # ----------------------------------------------------------------------------------- session state
    @reads
    def session_state(self) -> dict[str, Any]:
        """Where the annotator left off: the GUI's own keys (current image, instance, filters, ...)."""
        state = {}
        for key, value in self._conn.execute("SELECT key, value FROM session_state"):
            try:
                state[key] = json.loads(value)
            except (TypeError, ValueError):  # a damaged entry costs only where the annotator was, not work
                log.warning("%s: session state %r is not JSON; ignored", self.path, key)
        return state

    def save_session_state(self, values: dict[str, Any]) -> None:
        """Set some keys of the session state (one transaction); others keep their values."""
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO session_state VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
            )

    # ------------------------------------------------------------------------------------ importing
    def add_dataset(self, dataset: Dataset, *, progress: ProgressFn | None = None) -> AddResult:
        """Add a dataset's images, categories and instances (a model's predictions, say) to this project.

        One transaction: an image or category id already here with a different file name, size or
        category name, or an instance that does not fit its image, rolls everything back and raises
        ProjectError. Incoming instance ids already in use are renumbered.
        """
        with self._write() as conn, paused_gc():
            return add_to_project(conn, self.path, dataset, progress)

    # ------------------------------------------------------------------------------------- internals
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, or a join into the one already open (revert calls the edit helpers)."""
        if self.read_only:
            raise ReadOnlyProjectError(self.path, f"opened read-only ({self.read_only_reason}); nothing was changed")
        conn = self._conn
        if conn.in_transaction:
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")  # waits schema.BUSY_TIMEOUT_S for another program's write
        except sqlite3.Error as e:
            raise ProjectError(self.path, f"{sqlite_problem(e, self.path)}; nothing was changed") from e
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ProjectError(self.path, f"could not save the change: {sqlite_problem(e, self.path)}") from e
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _row(self, instance_id: int) -> dict[str, Any]:
        row = self._conn.execute(
            f"SELECT counts, height, width, {', '.join(ROW_COLUMNS)} FROM {INSTANCES_WITH_MASKS} WHERE id = ?",
            (instance_id,),
        ).fetchone()
        if row is None:
            raise ProjectError(self.path, f"no instance with id {instance_id}")
        values = dict(zip(("counts", "height", "width", *ROW_COLUMNS), row))
        values["original_segmentation"] = original = unpack_original(values["original_segmentation"])
        if values["counts"] is None:  # imported polygons not rasterised yet: the history needs the pixels
            values["counts"] = rasterise_original(original, values["height"], values["width"])["counts"]
        return values

    def _rle_for(self, mask: MaskLike, size: tuple[int, int], what: str) -> dict[str, Any]:
        if isinstance(mask, np.ndarray):
            if mask.shape != size:
                raise ValueError(f"{what}: mask is {mask.shape[:2]} but the image is {size}")
            return encode_mask(mask)
        if tuple(mask["size"]) != size:
            raise ValueError(f"{what}: RLE size {tuple(mask['size'])} but the image is {size}")
        return {"size": list(size), "counts": counts_text(mask)}

    def _change(
        self, instance_id: int, action: EditAction, changes: dict[str, Any], *, mask: MaskLike | None = None,
        params: dict[str, Any] | None = None,
    ) -> Edit:
        """Apply field changes (and a new mask) to one instance and record them, in one transaction."""
        with self._write():
            row = self._row(instance_id)
            changes = dict(changes)
            assignments = dict(changes)
            if mask is not None:
                rle = self._rle_for(mask, (row["height"], row["width"]), f"instance {instance_id}")
                new_counts = counts_text(rle)
                old_rle = rle_from(row["counts"], row["height"], row["width"])
                if action is EditAction.REFINE:
                    changes["changed_pixels"] = rle_xor_area(old_rle, rle)
                if action is not EditAction.REVERT:  # the imported geometry no longer describes the mask
                    changes["original_segmentation"] = None
                    changes["source_format"] = SegmentationFormat.MASK.value
                assignments = dict(changes)
                original = changes.get("original_segmentation", row["original_segmentation"])
                area, x, y, w, h = geometry([original], lambda _: rle)[0]
                assignments.update(counts=new_counts, area=area, bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h)
            self._update(instance_id, assignments)
            keys = [k for k in STATE_COLUMNS if k in changes or k == "status"]
            before = {k: row[k] for k in keys}
            after = {k: changes.get(k, row[k]) for k in keys}
            counts = (row["counts"], new_counts) if mask is not None else (None, None)
            size = (row["height"], row["width"])
            return self._record(instance_id, action, size, (before, after), counts, params or {})

    def _delete(self, instance_id: int, action: EditAction, params: dict[str, Any]) -> Edit:
        row = self._row(instance_id)
        self._conn.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
        return self._record_whole(instance_id, action, row, None, params)

    def _restore(self, deletion: Edit, params: dict[str, Any]) -> Edit:
        """Put a deleted instance back with its id, mask and every field it had."""
        if self._conn.execute("SELECT 1 FROM instances WHERE id = ?", (deletion.instance_id,)).fetchone():
            raise ProjectError(self.path, f"instance {deletion.instance_id} exists; its deletion is already undone")
        rle = deletion.before_rle
        state = dict(deletion.before or {})
        original = state.pop("original_segmentation")
        area, x, y, w, h = geometry([original], lambda _: rle)[0]
        columns = ("id", "height", "width", "area", "bbox_x", "bbox_y", "bbox_w", "bbox_h", *state)
        values = (deletion.instance_id, *rle["size"], area, x, y, w, h, *state.values())
        self._conn.execute(
            f"INSERT INTO instances ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values
        )
        self._conn.execute(INSERT_MASK, (deletion.instance_id, counts_text(rle), pack_original(original)))
        restored = self._row(deletion.instance_id)
        return self._record_whole(deletion.instance_id, EditAction.REVERT, None, restored, params)

    def _update(self, instance_id: int, assignments: dict[str, Any]) -> None:
        """Write columns of one instance, each to the table that holds it."""
        for table, key, wanted in (("instance_masks", "instance_id", True), ("instances", "id", False)):
            columns = {k: v for k, v in assignments.items() if (k in MASK_COLUMNS) == wanted}
            if columns:
                sets = ", ".join(f"{column} = ?" for column in columns)
                values = [pack_original(v) if k == "original_segmentation" else v for k, v in columns.items()]
                self._conn.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", (*values, instance_id))

    def _require_category(self, category_id: int) -> None:
        if self._conn.execute("SELECT 1 FROM categories WHERE id = ?", (category_id,)).fetchone() is None:
            raise ProjectError(self.path, f"no category with id {category_id}")

    def _record_whole(
        self, instance_id: int, action: EditAction, before: dict[str, Any] | None, after: dict[str, Any] | None,
        params: dict[str, Any],
    ) -> Edit:
        """Record a creation (``before`` None) or deletion (``after`` None): the whole row, mask included."""
        row = dict(after if before is None else before or {})
        counts, height, width = row.pop("counts"), row.pop("height"), row.pop("width")
        states = (None, row) if before is None else (row, None)
        pair = (None, counts) if before is None else (counts, None)
        return self._record(instance_id, action, (height, width), states, pair, params)

    def _record(
        self,
        instance_id: int,
        action: EditAction,
        size: tuple[int, int],
        states: tuple[dict[str, Any] | None, dict[str, Any] | None],
        counts: tuple[str | None, str | None],
        params: dict[str, Any],
    ) -> Edit:
        """Insert one history row and return it."""
        before, after = (None if s is None else dump_json(s) for s in states)
        cur = self._conn.execute(
            "INSERT INTO edits (instance_id, timestamp, action, height, width, before_counts, after_counts, "
            "before_state, after_state, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (instance_id, time.time(), action.value, *size, *counts, before, after, dump_json(params)),
        )
        return self.edit(cur.lastrowid)
