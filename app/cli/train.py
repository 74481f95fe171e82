"""``train`` (the default band network) and ``train-unet`` (a SegRefiner U-Net): train or resume on real data."""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from app.refiner.data import shared_sources
from app.refiner.weights import load_weights, save_weights
from app.services.training import default_data_dir

log = logging.getLogger(__name__)

DEFAULT_DATA = default_data_dir()


def _config_arguments(parser: argparse.ArgumentParser, config_type: type) -> None:
    defaults = config_type()
    for f in fields(config_type):
        if f.name == "source_weights":
            continue
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                            default=getattr(defaults, f.name))


def _common_arguments(parser: argparse.ArgumentParser, run: str) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder holding ecssd/, oxford_pets/, pennfudan/, coco_tiny/, lvis_val_100/ "
                             "(default: $SEGREFINER_DATA, else ../shared/data)")
    parser.add_argument("--run", type=Path, default=Path(run), help="run folder (last.pt is resumed when present)")
    parser.add_argument("--init", help="start from these weights (name or .safetensors file) instead of random")
    parser.add_argument("--export", type=Path, help="write the best validated weights here as safetensors (fp16)")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="stop after this much wall time (validating, saving and exporting first); 0: no limit")
    parser.add_argument("--source-weights", type=json.loads, default={},
                        help='JSON sampling weights per source, e.g. {"ecssd": 2}')


def register(subparsers: argparse._SubParsersAction) -> None:
    from app.refiner.band_train import BandTrainConfig
    from app.refiner.train import TrainConfig

    band = subparsers.add_parser("train", help="train or resume the default band refiner (checkpoints in --run)")
    _common_arguments(band, "runs/band")
    _config_arguments(band, BandTrainConfig)
    band.set_defaults(handler=run_train_band)
    unet = subparsers.add_parser("train-unet", help="train or resume a SegRefiner U-Net (compact or official preset)")
    _common_arguments(unet, "runs/compact")
    _config_arguments(unet, TrainConfig)
    unet.set_defaults(handler=run_train_unet)


def _deadline(minutes: float) -> Callable[[], bool]:
    deadline = time.monotonic() + 60 * minutes if minutes > 0 else math.inf
    return lambda: time.monotonic() >= deadline


def _exporter(args: argparse.Namespace, train_sources: list, metric: str) -> Callable[[Any, dict[str, float]], None]:
    def export_best(trainer: Any, scores: dict[str, float]) -> None:
        if args.export is None:
            return
        metadata = {
            "training_data": [f"{s.name} ({len(s)} train examples)" for s in train_sources],
            "step": trainer.step,
            "train_config": trainer.config.__dict__,
            "validation": scores,
        }
        network = getattr(trainer, "net", None) or trainer.model
        save_weights(network, args.export, metadata, fp16=True)
        log.info("exported best weights (validation %s %.4f) to %s", metric, scores[metric], args.export)

    return export_best


def _sources(args: argparse.Namespace) -> tuple[list, list]:
    train_sources = shared_sources(args.data, "train")
    if not train_sources:
        raise FileNotFoundError(f"{args.data}: no training data found (see README, Training)")
    for s in train_sources:
        log.info("train source %s: %d examples", s.name, len(s))
    return train_sources, shared_sources(args.data, "val")


def run_train_band(args: argparse.Namespace) -> int:
    from app.refiner.band_net import BandNet
    from app.refiner.band_train import BandTrainConfig, ValidationCases, run_band_training
    from app.refiner.evaluate import build_cases
    from app.refiner.weights import WeightsError

    config = BandTrainConfig(**{f.name: getattr(args, f.name) for f in fields(BandTrainConfig)})
    train_sources, val_sources = _sources(args)
    validation = (ValidationCases(build_cases(val_sources, config.val_per_kind))
                  if val_sources and config.val_per_kind else None)
    init = None
    if args.init:
        init, info = load_weights(args.init)
        if not isinstance(init, BandNet):
            raise WeightsError(f"{info.path}: holds a {info.preset} U-Net, not a band network; use train-unet")
    run_band_training(config, args.run, train_sources, validation, on_best=_exporter(args, train_sources, "score"),
                      init=init, should_stop=_deadline(args.max_minutes))
    return 0


def run_train_unet(args: argparse.Namespace) -> int:
    from app.refiner.train import TrainConfig, ValidationSet, run_training
    from app.refiner.unet import DenoiseUNet
    from app.refiner.weights import WeightsError

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    train_sources, val_sources = _sources(args)
    validation = ValidationSet.build(val_sources, config.val_instances) if val_sources and config.val_instances else None
    init = None
    if args.init:
        init, info = load_weights(args.init)
        if not isinstance(init, DenoiseUNet):
            raise WeightsError(f"{info.path}: holds a band network, not a U-Net; use train")
    run_training(config, args.run, train_sources, validation, on_best=_exporter(args, train_sources, "iou"),
                 init_weights=init, should_stop=_deadline(args.max_minutes))
    return 0
