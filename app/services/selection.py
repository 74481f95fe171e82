"""Which instances of a project a refinement run takes, and where their image files are.

The window's refine queue ("all instances of the image", "all unreviewed") and the headless ``refine`` both
select through ``Selection`` and find files through ``image_file``, so they refine the same instances and
read the same files on the same project (docs/decisions/0013).

Rules every selection keeps, whatever its fields say:
- locked instances are never refined: locking is how an annotator protects an instance;
- crowd regions (``iscrowd``) are never refined: they cover many objects, the refiner is made for one;
- empty masks are never refined: there is nothing to refine.
Hidden instances are selected like the others: hiding is a view setting, locking is the protection.
Instances whose last change was a refinement are skipped unless ``redo``, so a run that stopped resumes
where it left off, and a hand edit after a refinement makes an instance eligible again. Instances made from a
prompt were refined when made: they count as refined. Find-similar proposals are never selected: they were
refined when proposed and are reviewed one by one (docs/decisions/0021).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

from app.core.errors import DatasetError
from app.core.records import ChangeKind, ImageRecord, ReviewStatus
from app.core.store.errors import ProjectError
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from app.core.store.rows import InstanceSummary


@dataclass(frozen=True)
class Selection:
    """The instances to refine: by status (None: any), category, image, minimum score; ``limit`` caps the
    count after the rules above, in refinement order (images in project order, instances by id)."""

    statuses: Collection[ReviewStatus] | None = (ReviewStatus.UNREVIEWED,)
    category_ids: Collection[int] | None = None
    image_id: int | None = None
    min_score: float | None = None
    redo: bool = False
    limit: int | None = None
    min_area: float = 0
    """Instances under this many pixels are kept out (``TOO_SMALL``): the refiner's smallest area
    (``RefineOptions.smallest_area``), below which it passes a mask through, so a limit counts instances it
    will refine and a run repeated does not pick the same small ones again."""

    def query(self) -> InstanceFilter:
        done = (ChangeKind.PROPOSED,) if self.redo else (ChangeKind.PROPOSED, ChangeKind.REFINED, ChangeKind.PROMPTED)
        kinds = [k for k in ChangeKind if k not in done]
        return InstanceFilter(image_id=self.image_id, statuses=self.statuses, category_ids=self.category_ids,
                              min_score=self.min_score, provenance_kinds=kinds, sort_by="id")

    @staticmethod
    def admits(row: InstanceSummary) -> bool:
        """The rules no selection lifts: not locked, not a crowd region, not empty."""
        return never_refined(row.locked, bool(row.iscrowd), row.area) is None


LOCKED, CROWD, EMPTY = "locked", "crowd", "empty"
"""Why an instance is never refined (``never_refined``), as reports count them."""
TOO_SMALL = "too small"
"""Why a selection with a ``min_area`` keeps an instance out."""


def never_refined(locked: bool, crowd: bool, area: float) -> str | None:
    """Why an instance may not be refined whatever the selection (``LOCKED``, ``CROWD``, ``EMPTY``), or None.

    The one statement of the rules, for a selection (rows of the store) and for the window's "refine the
    selected instance" (the open image's live lock state and mask)."""
    if locked:
        return LOCKED
    if crowd:
        return CROWD
    if area <= 0:
        return EMPTY
    return None


@dataclass
class RefinePlan:
    """What a selection refines (image id -> instance ids, in refinement order) and how many instances it
    matched but the rules keep out, by reason (``LOCKED``, ``CROWD``, ``EMPTY``, ``TOO_SMALL``)."""

    by_image: dict[int, list[int]]
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.by_image.values())


def plan_refinement(store: ProjectStore, selection: Selection) -> RefinePlan:
    """The instances ``selection`` refines, and those it matched that the rules keep out."""
    by_image: dict[int, list[int]] = {}
    skipped: Counter[str] = Counter()
    for row in store.list_instances(selection.query()):
        reason = never_refined(row.locked, bool(row.iscrowd), row.area)
        if reason is None and row.area < selection.min_area:
            reason = TOO_SMALL
        if reason is None:
            by_image.setdefault(row.image_id, []).append(row.id)
        else:
            skipped[reason] += 1
    return RefinePlan(_in_project_order(store, by_image, selection.limit), skipped)


def select_instances(store: ProjectStore, selection: Selection) -> dict[int, list[int]]:
    """Image id -> ids of its selected instances, images in the project's order, instances by id."""
    return plan_refinement(store, selection).by_image


def _in_project_order(store: ProjectStore, by_image: dict[int, list[int]], limit: int | None) -> dict[int, list[int]]:
    """``by_image`` with images in the project's order, cut to ``limit`` instances."""
    ordered: dict[int, list[int]] = {}
    left = limit
    for image_id in store.image_ids():
        ids = by_image.get(image_id)
        if not ids:
            continue
        if left is not None:
            ids = ids[:left]
            left -= len(ids)
        if ids:
            ordered[image_id] = ids
        if left == 0:
            break
    return ordered


def check_images_folder(images_dir: Path | None) -> None:
    """An images folder the user gave must be a folder: ``DatasetError`` naming it before any work otherwise."""
    if images_dir is not None and not images_dir.is_dir():
        raise DatasetError(images_dir, "no such folder (the images folder given)" if not images_dir.exists()
                           else "is not a folder (the images folder given)")


def image_file(store: ProjectStore, record: ImageRecord) -> Path:
    """The image's file (its ``file_name`` under the project's images folder, else its base name there, as
    in the LVIS layout's ``val2017/x.jpg`` with a flat folder, else its ``coco_url``'s); DatasetError naming
    the file and the folder when there is none."""
    if store.images_dir is None:
        raise DatasetError(record.file_name, "the project knows no images folder: set it (refine --images-dir, "
                                             "or File > Locate Images Folder)")
    path = store.image_path(record)
    if path is None:
        raise DatasetError(record.file_name, f"image file not found under {store.images_dir}")
    return path


def known_categories(store: ProjectStore, shown: int = 12) -> str:
    """The project's categories for a message: "1 person, 2 bicycle, ... (80 in all)"."""
    categories = sorted(store.categories(), key=lambda c: c.id)
    listed = ", ".join(f"{c.id} {c.name}" for c in categories[:shown])
    return (listed + (f", ... ({len(categories)} in all)" if len(categories) > shown else "")) or "none"


def check_categories(store: ProjectStore, selection: Selection) -> None:
    """A selection's category ids must be the project's: ``ProjectError`` naming the project otherwise (a typo
    would select nothing, and "refined 0 of 0" reads like success)."""
    unknown = sorted(set(selection.category_ids or ()) - {c.id for c in store.categories()})
    if unknown:
        raise ProjectError(store.path, f"category id {unknown[0]} is not in the project (known: "
                                       f"{known_categories(store)})")
