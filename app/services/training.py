"""Training and evaluation of the refiner, for the ``train`` / ``train-unet`` / ``eval`` commands and notebooks.

The real datasets (ECSSD, Oxford-IIIT Pets, Penn-Fudan, COCO, LVIS samples) are not package data: training and
evaluation take the folder as ``data``. Its default is ``$SEGREFINER_DATA`` when set, else ``../shared/data``
from the current folder: the project's layout, a checkout beside ``shared/``. torch is imported only inside the
functions that need it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from app.core.atomic import prepare_output, write_text_atomic
from app.core.signals import check_stop, stop_requested

log = logging.getLogger(__name__)

DATA_ENV = "SEGREFINER_DATA"
CHECKOUT_DATA = Path("..") / "shared" / "data"

EvalProgress = Callable[[str, int, int], None]
"""(method, cases done, cases in all)"""


def default_data_dir() -> Path:
    """``$SEGREFINER_DATA``, else ``../shared/data`` (relative to the current folder)."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else CHECKOUT_DATA


def train_config_types() -> dict[str, type]:
    """The run configurations ``train`` (band network) and ``train-unet`` take, by command name."""
    from app.refiner.band_train import BandTrainConfig
    from app.refiner.train import TrainConfig

    return {"train": BandTrainConfig, "train-unet": TrainConfig}


def _sources(data: Path) -> tuple[list, list]:
    from app.refiner.data import shared_sources

    train_sources = shared_sources(data, "train")
    if not train_sources:
        raise FileNotFoundError(f"{data}: no training data found (see README, Training)")
    for s in train_sources:
        log.info("train source %s: %d examples", s.name, len(s))
    return train_sources, shared_sources(data, "val")


def _stop_when(minutes: float) -> Callable[[], bool]:
    """Stop after ``minutes`` of wall time (0: no limit), or at SIGTERM / SIGHUP: the run then validates, saves
    and exports on its way out like a time-budgeted one, and the caller raises ``Terminated`` after it."""
    deadline = time.monotonic() + 60 * minutes if minutes > 0 else math.inf
    return lambda: stop_requested() or time.monotonic() >= deadline


def _exporter(export: Path | None, train_sources: list, metric: str) -> Callable[[Any, dict[str, float]], None]:
    def export_best(trainer: Any, scores: dict[str, float]) -> None:
        from app.refiner.weights import save_weights

        if export is None:
            return
        metadata = {
            "training_data": [f"{s.name} ({len(s)} train examples)" for s in train_sources],
            "step": trainer.step,
            "train_config": trainer.config.__dict__,
            "validation": scores,
        }
        network = getattr(trainer, "net", None) or trainer.model
        save_weights(network, export, metadata, fp16=True)
        log.info("exported best weights (validation %s %.4f) to %s", metric, scores[metric], export)

    return export_best


def train_band(config: Any, data: Path, run: Path, *, init: str | None = None, export: Path | None = None,
               max_minutes: float = 0.0) -> Any:
    """Train (or resume ``run``/last.pt) the band network; validates as it goes and exports the best weights."""
    from app.refiner.band_net import BandNet
    from app.refiner.band_train import ValidationCases, run_band_training
    from app.refiner.evaluate import build_cases
    from app.refiner.weights import WeightsError, load_weights

    train_sources, val_sources = _sources(data)
    validation = (ValidationCases(build_cases(val_sources, config.val_per_kind))
                  if val_sources and config.val_per_kind else None)
    network = None
    if init:
        network, info = load_weights(init)
        if not isinstance(network, BandNet):
            raise WeightsError(f"{info.path}: holds a {info.preset} U-Net, not a band network; use train-unet")
    trainer = run_band_training(config, run, train_sources, validation, init=network,
                                on_best=_exporter(export, train_sources, "score"), should_stop=_stop_when(max_minutes))
    check_stop()
    return trainer


def train_unet(config: Any, data: Path, run: Path, *, init: str | None = None, export: Path | None = None,
               max_minutes: float = 0.0) -> Any:
    """Train (or resume) a SegRefiner U-Net preset; validates as it goes and exports the best weights."""
    from app.refiner.train import ValidationSet, run_training
    from app.refiner.unet import DenoiseUNet
    from app.refiner.weights import WeightsError, load_weights

    train_sources, val_sources = _sources(data)
    validation = ValidationSet.build(val_sources, config.val_instances) if val_sources and config.val_instances else None
    network = None
    if init:
        network, info = load_weights(init)
        if not isinstance(network, DenoiseUNet):
            raise WeightsError(f"{info.path}: holds a band network, not a U-Net; use train")
    trainer = run_training(config, run, train_sources, validation, on_best=_exporter(export, train_sources, "iou"),
                           init_weights=network, should_stop=_stop_when(max_minutes))
    check_stop()
    return trainer


@dataclass(frozen=True)
class EvalRequest:
    """What ``eval`` measures: which weights and pipelines, on which held-out cases, against which baseline."""

    data: Path = field(default_factory=default_data_dir)
    weights: str | None = None
    refiner: bool = True
    modes: tuple[str, ...] = ("instance", "hr")
    per_kind: int = 50
    kinds: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    upscale: float = 1.0
    methods: tuple[str, ...] | None = None
    against: str = "grabcut"
    keep_native: bool = True
    snap: bool = True
    device: str = "auto"
    compile: bool = False
    json: Path | None = None
    """Where the caller will write the result's JSON: checked writable before the evaluation starts."""

    def __post_init__(self) -> None:
        """Values no evaluation can use are refused before any data is read."""
        from app.refiner.options import MODES, check_device

        if self.per_kind < 1:
            raise ValueError(f"--per-kind must be 1 or more, got {self.per_kind}")
        if not self.upscale > 0:
            raise ValueError(f"--upscale must be more than 0, got {self.upscale}")
        unknown = sorted(set(self.modes) - set(MODES))
        if unknown:
            raise ValueError(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
        check_device(self.device)


@dataclass
class EvalResult:
    """Per-case scores of every method, rows per kind, and each of our methods against the baseline."""

    cases: list[Any]
    scored: dict[str, list[Any]]
    rows: list[Any]
    differences: list[Any]

    def tables(self) -> str:
        """Markdown: one table per kind ("all" first), then the bootstrap differences."""
        from app.refiner.evaluate import difference_table, markdown_table

        kinds = ["all", *dict.fromkeys(c.kind for c in self.cases)]
        blocks = [markdown_table(self.rows, kind) for kind in kinds]
        methods = dict.fromkeys(d.method for d in self.differences)
        blocks += [difference_table([d for d in self.differences if d.method == m]) for m in methods]
        return "\n\n".join(blocks)

    def write_json(self, path: Path) -> None:
        """Every row, difference and per-case score, written atomically."""
        write_text_atomic(path, self.to_json())

    def to_json(self) -> str:
        from app.refiner.evaluate import rows_as_dicts

        return json.dumps({
            "cases": [{"kind": c.kind, "source": c.source, "key": c.example.key} for c in self.cases],
            "rows": rows_as_dicts(self.rows),
            "differences": [asdict(d) for d in self.differences],
            "per_case": {name: [{"iou": r.scores.iou, "mba": r.scores.mba, "boundary_iou": r.scores.boundary_iou,
                                 "seconds": r.seconds} for r in results] for name, results in self.scored.items()},
        }, indent=1)


def evaluate_refiner(request: EvalRequest, progress: EvalProgress | None = None,
                     say: Callable[[str], None] = log.info) -> EvalResult:
    """Run the coarse input, the classical refiners and (unless ``refiner`` is False) ours on held-out cases."""
    from app.refiner.api import Refiner
    from app.refiner.data import shared_sources
    from app.refiner.degrade import ALL_KINDS
    from app.refiner.evaluate import NEAR_PERFECT, build_cases, methods_for, paired_bootstrap, score_cases, summarize

    if request.json is not None:
        prepare_output(request.json)
    sources = shared_sources(request.data, "val")
    if not sources:
        raise FileNotFoundError(f"{request.data}: no held-out data found (give the datasets folder with --data, or "
                                f"set SEGREFINER_DATA; see ../shared/data/README.md for what it holds)")
    if request.sources:
        unknown = sorted(set(request.sources) - {s.name for s in sources})
        if unknown:
            raise ValueError(f"unknown source(s) {', '.join(unknown)}; found: {', '.join(s.name for s in sources)}")
        sources = [s for s in sources if s.name in request.sources]
    kinds = request.kinds or (*ALL_KINDS, NEAR_PERFECT)
    cases = build_cases(sources, request.per_kind, kinds=kinds, upscale=request.upscale)
    refiner = Refiner(request.weights, request.device, compile=request.compile) if request.refiner else None
    if refiner is not None and request.compile:
        say("compiling the network (a minute or two)")
        refiner.refine(cases[0].example.image, cases[0].coarse, min_area=0)
    methods = methods_for(refiner, request.modes, keep_native=request.keep_native, snap=request.snap)
    if request.against not in methods:
        raise ValueError(f"--against {request.against}: not a method of this evaluation; known: {', '.join(methods)}")
    if request.methods:
        unknown = sorted(set(request.methods) - set(methods))
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(methods)}")
        methods = {name: methods[name] for name in request.methods}
    say(f"{len(cases)} held-out instances x {len(methods)} methods")
    scored = score_cases(cases, methods, progress)
    differences = []
    if request.against in scored:
        for name in scored:
            if name.startswith("ours"):
                differences += paired_bootstrap(cases, scored, name, request.against)
    return EvalResult(cases, scored, summarize(cases, scored), differences)
