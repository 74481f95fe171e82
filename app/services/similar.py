"""Find similar in a project: example instances -> proposed instances of their category on the project's images.

The examples' prototype (app/refiner/similar.py, SG-One) is compared with every searched image; each region above
the threshold that existing instances do not already cover is outlined by the box prompt, refined, and saved as a
new instance with a PROPOSED ``Provenance``, its similarity as its score, status unreviewed: a *proposal* until
the annotator accepts it or changes its mask. Export leaves proposals out unless asked, the refine queue never
takes them, and a second search does not propose again what a proposal (or any instance) covers
(docs/decisions/0021).

Features are cached beside the project, in ``<project stem>.features/``, one file per image keyed by a hash of the
image file's bytes, so an image whose file changes gets new features; an index there remembers each image's key
with its file's size and modification time (an unchanged file is not hashed again) and the old entry of a changed
image is removed. ``ProjectSimilar`` is what the window keeps while its threshold slider moves; ``find_similar``
is the headless batch, with progress and a stop flag between images. torch is imported only by ``load_finder``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from app.core.atomic import write_json_atomic
from app.core.errors import DatasetError
from app.core.images import read_image_rgb
from app.core.records import Provenance, ReviewStatus
from app.core.store.errors import ProjectError
from app.core.store.project import ProjectStore
from app.core.store.query import InstanceFilter
from app.core.wording import plural
from app.refiner.options import RefineOptions
from app.refiner.similar import DEFAULT_THRESHOLD, FeatureCache, Proposal, Prototype, SimilarError, file_key
from app.services.selection import image_file

if TYPE_CHECKING:
    from app.refiner.similar import SimilarFinder

log = logging.getLogger(__name__)

FEATURES_SUFFIX = ".features"
INDEX_NAME = "index.json"

Progress = Callable[[int, int, str], None]
"""(images done, images to search, what just happened)"""


def features_folder(project: Path) -> Path:
    """Where a project's image features are cached: ``<stem>.features/`` beside the project file."""
    return project.with_name(project.stem + FEATURES_SUFFIX)


class ImageKeys:
    """Each image's content key (a hash of its file's bytes), remembered in the cache folder's index with the
    file's size and modification time; a changed file is hashed again and its old features removed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / INDEX_NAME
        self._index: dict[str, list[Any]] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self._index = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError) as error:
                log.warning("%s: unreadable feature index, every image is hashed again (%s)", self.path, error)

    def key(self, image_id: int, path: Path) -> str:
        stat = path.stat()
        entry = self._index.get(str(image_id))
        if isinstance(entry, list) and len(entry) == 3 and entry[1:] == [stat.st_size, stat.st_mtime_ns]:
            return str(entry[0])
        key = file_key(path)
        if isinstance(entry, list) and entry and entry[0] != key:
            self._forget(str(entry[0]), image_id)
        self._index[str(image_id)] = [key, stat.st_size, stat.st_mtime_ns]
        self._dirty = True
        return key

    def _forget(self, old: str, image_id: int) -> None:
        """Remove an image's old features unless another image has the same content."""
        if any(isinstance(e, list) and e and e[0] == old for i, e in self._index.items() if i != str(image_id)):
            return
        for stale in self.folder.glob(f"{old}-*.npy"):
            stale.unlink(missing_ok=True)
            log.info("image %s changed: removed its old features %s", image_id, stale.name)

    def save(self) -> None:
        if self._dirty:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, self._index, indent=None)
            self._dirty = False


@dataclass(frozen=True)
class SimilarSettings:
    """How proposals are made: the similarity threshold, whether each region is outlined by the box prompt
    (the prompt heads; ``heads`` empty: the shipped ones), and the refiner run on them (None: not refined)."""

    threshold: float = DEFAULT_THRESHOLD
    outline: bool = True
    heads: tuple[Path, ...] = ()
    refine: RefineOptions | None = field(default_factory=RefineOptions)

    def __post_init__(self) -> None:
        if not -1.0 < self.threshold < 1.0:
            raise ValueError(f"the threshold is a cosine similarity in (-1, 1), got {self.threshold}")


def load_finder(project: Path, settings: SimilarSettings) -> SimilarFinder:
    """The finder of ``settings`` on the project's feature cache: loads the prompt head and the refiner (torch)."""
    from app.refiner.prompts import EncoderSource
    from app.refiner.similar import SimilarFinder
    from app.services.refine import load_refiner

    source = None
    if settings.outline:
        source = EncoderSource(settings.heads, grabcut=False)
        source.load()
    refiner = None if settings.refine is None else load_refiner(settings.refine)
    return SimilarFinder(FeatureCache(features_folder(project)), refiner, settings.refine, source)


def proposed_provenance(finder: SimilarFinder) -> Provenance:
    """What a proposal records: how its outline was drawn, and the refiner's weights and steps."""
    source = "similarity" if finder.source is None else finder.source.name
    if finder.refiner is None:
        return Provenance.proposed(source, None, 0)
    return Provenance.proposed(source, finder.refiner.name, (finder.options or RefineOptions()).steps)


@dataclass(frozen=True)
class Examples:
    """What is searched for: the example instances' prototype and their category."""

    instance_ids: tuple[int, ...]
    category_id: int
    prototype: Prototype


def check_examples(store: ProjectStore, instance_ids: Sequence[int]) -> int:
    """The examples' one category, after checking they exist, share it and are not empty (``ProjectError`` /
    ``SimilarError`` naming the instance otherwise); cheap: no mask is decoded."""
    if not instance_ids:
        raise SimilarError("give at least one example instance")
    rows = {row.id: row for row in store.list_instances(InstanceFilter(ids=list(instance_ids)))}
    missing = [i for i in instance_ids if i not in rows]
    if missing:
        raise ProjectError(store.path, f"no instance with id {', '.join(map(str, missing))}")
    categories = sorted({rows[i].category_id for i in instance_ids})
    if len(categories) > 1:
        raise SimilarError(f"the examples must be of one category; instances {list(instance_ids)} are of "
                           f"categories {categories}")
    empty = [i for i in instance_ids if rows[i].area <= 0]
    if empty:
        raise SimilarError(f"instance {empty[0]} has an empty mask: nothing to find similar ones to")
    return categories[0]


class ProjectSimilar:
    """Find-similar on one open project. The window keeps one (with its examples) while the slider moves:
    ``similarity`` previews the map, ``proposals`` gives regions at a threshold, ``save`` adds them."""

    def __init__(self, store: ProjectStore, finder: SimilarFinder) -> None:
        self.store = store
        self.finder = finder
        self.keys = ImageKeys(finder.cache.folder)

    def image(self, image_id: int) -> tuple[np.ndarray, str]:
        """The image's pixels and content key; ``DatasetError`` naming the file when it cannot be used."""
        record = self.store.image(image_id)
        path = image_file(self.store, record)
        image = read_image_rgb(path)
        if image.shape[:2] != (record.height, record.width):
            raise DatasetError(path, f"the file is {image.shape[1]}x{image.shape[0]}, the project says "
                                     f"{record.width}x{record.height}", f"image {image_id}")
        key = self.keys.key(image_id, path)
        return image, key

    def examples(self, instance_ids: Sequence[int]) -> Examples:
        """The prototype of example instances (checked by ``check_examples``); their images must be readable."""
        category = check_examples(self.store, instance_ids)
        pairs, keys = [], []
        for instance_id in instance_ids:
            inst = self.store.instance(instance_id)
            image, key = self.image(inst.image_id)
            pairs.append((image, inst.mask()))
            keys.append(key)
        proto = self.finder.prototype(pairs, keys)
        self.keys.save()
        return Examples(tuple(instance_ids), category, proto)

    def similarity(self, image_id: int, examples: Examples) -> np.ndarray:
        """The similarity map of an image (its stride-8 grid, cosine in [-1, 1]): the slider's preview."""
        image, key = self.image(image_id)
        return self.finder.similarity(image, examples.prototype, key)

    def proposals(self, image_id: int, examples: Examples, threshold: float = DEFAULT_THRESHOLD,
                  refine: bool = True) -> list[Proposal]:
        """Proposals on an image that no instance there covers yet, best score first (refined when the finder
        has a refiner and ``refine``)."""
        image, key = self.image(image_id)
        existing = [inst.mask() for inst in self.store.instances_for_image(image_id)]
        finder = self.finder if refine else replace(self.finder, refiner=None)
        return finder.find(image, examples.prototype, threshold, existing, key)

    def save(self, image_id: int, examples: Examples, proposals: Sequence[Proposal], threshold: float) -> list[int]:
        """Add proposals as new unreviewed instances with their scores: one transaction. Returns their ids."""
        provenance = proposed_provenance(self.finder)
        ids = []
        with self.store.transaction():
            for proposal in proposals:
                mask = proposal.coarse if proposal.mask is None else proposal.mask
                if not mask.any():
                    continue
                params = {"find_similar": {"examples": list(examples.instance_ids), "threshold": threshold}}
                edit = self.store.create_instance(image_id, examples.category_id, mask, score=round(proposal.score, 4),
                                                  status=ReviewStatus.UNREVIEWED, provenance=provenance, params=params)
                ids.append(edit.instance_id)
        return ids

    def close(self) -> None:
        """Write the feature index (which image has which key)."""
        self.keys.save()


@dataclass
class SimilarReport:
    """What a search did: proposals added (ids), images searched, images skipped (and why), whether stopped."""

    images: int = 0
    searched: int = 0
    created: list[int] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False
    problems: list[str] = field(default_factory=list)


def target_images(store: ProjectStore, image_ids: Sequence[int] | None) -> list[int]:
    """The images to search (None: all, in project order); ``ProjectError`` naming an unknown id."""
    known = store.image_ids()
    if image_ids is None:
        return known
    missing = sorted(set(image_ids) - set(known))
    if missing:
        raise ProjectError(store.path, f"no image with id {', '.join(map(str, missing))}")
    return list(dict.fromkeys(image_ids))


def find_similar(store: ProjectStore, finder: SimilarFinder, instance_ids: Sequence[int],
                 image_ids: Sequence[int] | None = None, threshold: float = DEFAULT_THRESHOLD, *,
                 progress: Progress | None = None, should_stop: Callable[[], bool] = lambda: False) -> SimilarReport:
    """Search the images (None: all) for instances like the examples and save the proposals, image by image.

    Bad input (an unknown instance or image id, examples of several categories or empty) raises before anything
    is saved; an image that cannot be read is reported and skipped. ``should_stop`` is asked between images.
    """
    report = SimilarReport()
    started = time.perf_counter()
    targets = target_images(store, image_ids)
    report.images = len(targets)
    search = ProjectSimilar(store, finder)
    examples = search.examples(instance_ids)
    try:
        for done, image_id in enumerate(targets, start=1):
            if should_stop():
                report.stopped = True
                break
            try:
                proposals = search.proposals(image_id, examples, threshold)
            except DatasetError as error:
                report.problems.append(str(error))
                log.warning("skipped image %s: %s", image_id, error)
                what = f"image {image_id}: skipped ({error.problem})"
            else:
                created = search.save(image_id, examples, proposals, threshold)
                report.created += created
                report.searched += 1
                what = f"image {image_id}: {plural(len(created), 'proposal')}"
            if progress is not None:
                progress(done, len(targets), what)
    finally:
        search.close()
    report.seconds = time.perf_counter() - started
    return report
