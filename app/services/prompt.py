"""Masks from boxes on a project's images: the headless ``prompt`` and the save behind the window's box tool.

A box (or every box of a detector's output in COCO results format) goes through a coarse source (the prompt
head, GrabCut, or the user's SAM checkpoint) and the refiner (app/refiner/prompts.py) and becomes a new instance
with one PROMPTED ``Provenance`` (the source, the refiner's weights and steps) and the box in its creation's
history entry. Every box is checked before anything runs (unknown image or category, a box outside its image,
a malformed results file: one ``DatasetError`` naming the file and the record), so bad input saves nothing.
The instances of one image are saved in one transaction; a results file's run records the images it finished
in the project, so running the same command again goes on where a stopped run left off. torch is imported only
when a tool is loaded (``load_prompt_tool``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from app.core.errors import DatasetError, read_input
from app.core.images import read_image_rgb
from app.core.records import ChangeKind, Provenance, ReviewStatus
from app.core.store.errors import ProjectError
from app.core.store.project import MaskLike, ProjectStore
from app.core.wording import plural
from app.refiner.options import RefineOptions
from app.refiner.prompts import PromptError, check_box
from app.services.selection import image_file, known_categories

if TYPE_CHECKING:
    from app.refiner.prompts import CoarseSource, PromptTool

log = logging.getLogger(__name__)

SOURCES = ("encoder", "grabcut", "sam")
"""Coarse sources: the prompt head on the frozen encoder (then GrabCut; the default), GrabCut alone (no weights),
a Segment Anything checkpoint the user has (docs/decisions/0016)."""

Progress = Callable[[int, int, str], None]
"""(boxes done, boxes in all, what just happened)"""


@dataclass(frozen=True)
class PromptSettings:
    """How boxes become masks: the coarse source, its weights, and the refiner run on each coarse mask.

    ``refine`` None keeps the coarse masks (no refiner is loaded). ``heads`` are prompt-head weights files whose
    probabilities are averaged (empty: the shipped prompt-head-v2 and prompt-head-wide-v1).
    """

    source: str = "encoder"
    sam_checkpoint: Path | None = None
    heads: tuple[Path, ...] = ()
    refine: RefineOptions | None = field(default_factory=RefineOptions)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"the coarse source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "sam" and self.sam_checkpoint is None:
            raise ValueError("the SAM source needs a checkpoint file (--sam-checkpoint sam_vit_b_01ec64.pth)")
        if self.source != "sam" and self.sam_checkpoint is not None:
            raise ValueError(f"a SAM checkpoint was given but the source is {self.source!r}; choose --source sam")


def load_coarse_source(settings: PromptSettings, device: str | None = None) -> CoarseSource:
    """The coarse source of ``settings`` (loads SAM or the prompt head: SamError / PromptHeadError on a bad file)."""
    from app.refiner.prompts import EncoderSource, GrabCutSource

    if settings.source == "grabcut":
        return GrabCutSource()
    if settings.source == "sam":
        from app.refiner.sam import SamSource

        assert settings.sam_checkpoint is not None
        return SamSource(settings.sam_checkpoint, device or "cpu")
    source = EncoderSource(settings.heads)
    source.load()
    return source


def load_prompt_tool(settings: PromptSettings) -> PromptTool:
    """The box tool of ``settings``: its coarse source and, unless ``refine`` is None, the refiner (imports torch)."""
    from app.refiner.prompts import PromptTool
    from app.services.refine import load_refiner

    refiner = None if settings.refine is None else load_refiner(settings.refine)
    device = None if refiner is None else refiner.device
    return PromptTool(load_coarse_source(settings, device), refiner, settings.refine)


def prompted_provenance(tool: PromptTool) -> Provenance:
    """What an instance made by ``tool`` records: its coarse source, and the refiner's weights and steps."""
    if tool.refiner is None:
        return Provenance.prompted(tool.source.name, None, 0)
    return Provenance.prompted(tool.source.name, tool.refiner.name, (tool.options or RefineOptions()).steps)


@dataclass(frozen=True)
class BoxPrompt:
    """One box to turn into an instance: image pixels x0, y0, x1, y1 (clipped to the image when checked).

    ``origin`` names it in messages ("detection [3]" of a results file, "image 7" for one box).
    """

    image_id: int
    box: tuple[float, float, float, float]
    category_id: int
    score: float | None = None
    origin: str = "box"


def save_prompted(store: ProjectStore, image_id: int, category_id: int, mask: MaskLike, provenance: Provenance, *,
                  box: Sequence[float] | None = None, score: float | None = None) -> int:
    """Save a prompt's mask as a new instance (unreviewed, on top of the image's others): one transaction, the
    window's box tool and ``prompt`` alike. Returns the new instance's id."""
    if ChangeKind(provenance.kind) is not ChangeKind.PROMPTED:
        raise ValueError(f"a prompt's instance needs a PROMPTED provenance, got {provenance.kind}")
    params: dict[str, Any] = {"prompt": {"source": provenance.mode}}
    if box is not None:
        params["prompt"]["box"] = [float(v) for v in box]
    edit = store.create_instance(image_id, category_id, mask, score=score, status=ReviewStatus.UNREVIEWED,
                                 provenance=provenance, params=params)
    return edit.instance_id


def check_prompts(store: ProjectStore, prompts: Sequence[BoxPrompt], source: Path | None = None) -> list[BoxPrompt]:
    """``prompts`` with their boxes clipped to their images, after checking every one: the image and category
    exist and the box lies (at least 4 x 4 pixels of it) in the image, and every image's file is there.

    Raises one ``DatasetError`` naming ``source`` (the results file; else the project) and the first bad record,
    with how many more there are, before anything is run or saved.
    """
    images = {record.id: record for record in store.images()}
    categories = {c.id for c in store.categories()}
    checked, problems = [], []
    files: set[int] = set()
    known = ""  # the project's categories in words, read once for the first prompt that names another
    for prompt in prompts:
        record = images.get(prompt.image_id)
        if record is None:
            problems.append(f"{prompt.origin}: image id {prompt.image_id} is not in the project")
            continue
        if prompt.category_id not in categories:
            known = known or known_categories(store)
            problems.append(f"{prompt.origin}: category id {prompt.category_id} is not in the project "
                            f"(known: {known})")
            continue
        try:
            box = check_box(prompt.box, (record.height, record.width))
        except PromptError as error:
            problems.append(f"{prompt.origin}: {error}")
            continue
        if record.id not in files:
            try:
                image_file(store, record)
            except DatasetError as error:
                where = f"image {record.id}"  # "detection [3]: image 7", or "image 7" when the origin names it
                problems.append(f"{prompt.origin if prompt.origin == where else f'{prompt.origin}: {where}'}: {error}")
                continue
            files.add(record.id)
        checked.append(BoxPrompt(prompt.image_id, tuple(float(v) for v in box), prompt.category_id,  # type: ignore[arg-type]
                                 prompt.score, prompt.origin))
    if problems:
        more = f" (and {plural(len(problems) - 1, 'more problem')})" if len(problems) > 1 else ""
        raise DatasetError(source or store.path, problems[0] + more)
    return checked


def single_box(store: ProjectStore, image_id: int, box: Sequence[float], category_id: int | None) -> BoxPrompt:
    """One box on one image (``prompt --box``); the category may be left out when the project has only one."""
    store.image(image_id)  # ProjectError naming the project when there is no such image
    if category_id is None:
        categories = store.categories()
        if len(categories) != 1:
            raise ProjectError(store.path, f"give the new instance's category (--category): the project has "
                                           f"{len(categories)} categories")
        category_id = categories[0].id
    if len(box) != 4:
        raise PromptError(f"a box is four numbers x0, y0, x1, y1; got {len(box)}")
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:  # corners typed in the wrong order are most often a COCO bbox (x, y, width, height)
        raise PromptError(f"box {tuple(box)}: --box takes the corners x0,y0,x1,y1 with x1 >= x0 and y1 >= y0 "
                          f"(a COCO bbox x,y,width,height goes in a results file given to --boxes)")
    return BoxPrompt(image_id, (x0, y0, x1, y1), category_id, None, f"image {image_id}")


def read_results_boxes(path: Path, default_category: int | None = None) -> list[BoxPrompt]:
    """The boxes of a COCO results file (a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
    "score"}``, a detector's output): ``DatasetError`` naming the file and the detection for anything else.

    ``default_category`` is used for detections without a ``category_id``.
    """
    try:
        data = json.loads(read_input(path))
    except json.JSONDecodeError as error:
        raise DatasetError(path, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    except UnicodeDecodeError:
        raise DatasetError(path, "not valid JSON (not UTF-8 text)") from None
    if not isinstance(data, list):
        raise DatasetError(path, f"a results file is a JSON list of detections, this is a JSON {type(data).__name__}")
    if not data:
        raise DatasetError(path, "holds no detections (an empty list)")
    boxes = []
    for k, item in enumerate(data):
        record = f"detection [{k}]"
        if not isinstance(item, dict):
            raise DatasetError(path, f"is a {type(item).__name__}, not an object", record)
        image_id = _integer(item.get("image_id"), path, record, "image_id")
        category = item.get("category_id", default_category)
        if category is None:
            raise DatasetError(path, "has no category_id (give one with --category)", record)
        category = _integer(category, path, record, "category_id")
        bbox = item.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_finite(v) for v in bbox):
            raise DatasetError(path, f"bbox must be four finite numbers [x, y, width, height], got {bbox!r}", record)
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise DatasetError(path, f"bbox {bbox} is empty (width and height must be positive)", record)
        score = item.get("score")
        if score is not None and not _finite(score):
            raise DatasetError(path, f"score must be a number, got {score!r}", record)
        boxes.append(BoxPrompt(image_id, (x, y, x + w, y + h), category, None if score is None else float(score),
                               record))
    return boxes


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: object, path: Path, record: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise DatasetError(path, f"{key} must be an integer id, got {value!r}", record)
    return int(value)


@dataclass
class PromptReport:
    """What a run of boxes did: the new instances' ids, images skipped (and why), whether it was stopped."""

    boxes: int = 0
    created: list[int] = field(default_factory=list)
    images: int = 0
    resumed: int = 0
    seconds: float = 0.0
    stopped: bool = False
    problems: list[str] = field(default_factory=list)


def progress_key(results: Path) -> str:
    """The project meta key under which a results file's run records its finished images (by the file's bytes)."""
    return "prompt-results:" + hashlib.sha1(read_input(results)).hexdigest()


def prompt_boxes(store: ProjectStore, tool: PromptTool, prompts: Sequence[BoxPrompt], *,
                 resume_key: str | None = None, progress: Progress | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> PromptReport:
    """Make an instance from every box (checked by ``check_prompts``), image by image, one transaction each.

    With ``resume_key`` the images finished are recorded under it in the project (in the same transaction) and
    skipped by a later run with the same key. ``should_stop`` is asked between boxes; what was saved stays.
    """
    report = PromptReport(boxes=len(prompts))
    started = time.perf_counter()
    provenance = prompted_provenance(tool)
    by_image: dict[int, list[BoxPrompt]] = {}
    for prompt in prompts:
        by_image.setdefault(prompt.image_id, []).append(prompt)
    finished = set(store.meta_value(resume_key, [])) if resume_key else set()
    done = 0
    for image_id, boxes in by_image.items():
        if image_id in finished:
            report.resumed += len(boxes)
            done += len(boxes)
            continue
        record = store.image(image_id)
        try:
            image = read_image_rgb(image_file(store, record))
        except DatasetError as error:
            report.problems.append(str(error))
            log.warning("skipped image %s: %s", image_id, error)
            done += len(boxes)
            continue
        if image.shape[:2] != (record.height, record.width):
            report.problems.append(f"image {image_id} ({record.file_name}): the file is {image.shape[1]}x"
                                   f"{image.shape[0]}, the project says {record.width}x{record.height}; skipped")
            done += len(boxes)
            continue
        masks = []
        for prompt in boxes:
            if should_stop():
                report.stopped = True
                break
            masks.append(tool.box(image, prompt.box).mask)
            done += 1
            if progress is not None:
                progress(done, report.boxes, f"{prompt.origin}: {int(masks[-1].sum())} px")
        if report.stopped:
            break
        with store.transaction():
            for prompt, mask in zip(boxes, masks):
                if not mask.any():  # nothing found in the box: an empty instance would export as area 0
                    report.problems.append(f"{prompt.origin}: nothing was found in the box {prompt.box}; no "
                                           "instance made")
                    continue
                report.created.append(save_prompted(store, image_id, prompt.category_id, mask, provenance,
                                                    box=prompt.box, score=prompt.score))
            if resume_key:
                finished.add(image_id)
                store.set_meta_value(resume_key, sorted(finished))
        report.images += 1
    report.seconds = time.perf_counter() - started
    return report

