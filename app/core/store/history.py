"""The edit history record: what one accepted edit did to one instance.

An edit keeps the instance fields it changed, before and after (``status`` always, so a history view can
show the review state at every step), and the mask before and after when the mask changed. ``before`` is
None for a created instance and ``after`` None for a deleted one; a deletion keeps the whole row so it can
be reverted. Field names are the project file's column names (``status``, ``category_id``, ``prov_kind``,
``z_order``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Sequence

from app.core.records import ReviewStatus
from app.core.store.rows import damage_named, load_json, rle_from

EDIT_COLUMNS = (
    "id, instance_id, timestamp, action, height, width, before_counts, after_counts, before_state, "
    "after_state, params"
)


class EditAction(str, Enum):
    """What kind of edit a history entry records."""

    CREATE = "create"
    DELETE = "delete"
    MANUAL = "manual"
    REFINE = "refine"
    STATUS = "status"
    CATEGORY = "category"
    LAYER = "layer"
    REVERT = "revert"


@dataclass(frozen=True)
class Edit:
    """One entry of an instance's history. ``params`` holds the caller's details (refiner settings, or the
    id of the edit a revert undid)."""

    id: int
    instance_id: int
    timestamp: float
    action: EditAction
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    before_rle: dict[str, Any] | None
    after_rle: dict[str, Any] | None
    params: dict[str, Any]

    @property
    def mask_changed(self) -> bool:
        return self.before_rle is not None or self.after_rle is not None

    @property
    def before_status(self) -> ReviewStatus | None:
        return None if self.before is None else ReviewStatus(self.before["status"])

    @property
    def after_status(self) -> ReviewStatus | None:
        return None if self.after is None else ReviewStatus(self.after["status"])


@damage_named("edit")
def edit_from_row(row: Sequence[Any]) -> Edit:
    eid, instance_id, timestamp, action, h, w, before_counts, after_counts, before, after, params = row
    return Edit(
        id=eid, instance_id=instance_id, timestamp=timestamp, action=EditAction(action),
        before=load_json(before), after=load_json(after),
        before_rle=None if before_counts is None else rle_from(before_counts, h, w),
        after_rle=None if after_counts is None else rle_from(after_counts, h, w),
        params=load_json(params),
    )
