"""``train``: train (or resume) the refiner on real data with synthesised coarse masks."""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import fields
from pathlib import Path

from app.refiner.data import shared_sources
from app.refiner.train import TrainConfig, Trainer, ValidationSet, run_training
from app.refiner.weights import load_weights, save_weights
from app.services.training import default_data_dir

log = logging.getLogger(__name__)

DEFAULT_DATA = default_data_dir()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train or resume the refiner (checkpoints in --run)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding ecssd/, oxford_pets/, pennfudan/, coco_tiny/, lvis_val_100/ (default: $SEGREFINER_DATA, else ../shared/data)")
    p.add_argument("--run", type=Path, default=Path("runs/compact"), help="run folder (last.pt is resumed when present)")
    p.add_argument("--init", help="start from these weights (name or .safetensors file) instead of random")
    p.add_argument("--export", type=Path, help="write the best validated weights here as safetensors (fp16)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name == "source_weights":
            continue
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name))
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop after this much wall time (validating, saving and exporting first); 0: no limit")
    p.add_argument("--source-weights", type=json.loads, default={}, help='JSON sampling weights per source, e.g. {"ecssd": 2}')
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    train_sources = shared_sources(args.data, "train")
    if not train_sources:
        raise FileNotFoundError(f"{args.data}: no training data found (see README, Training)")
    val_sources = shared_sources(args.data, "val")
    for s in train_sources:
        log.info("train source %s: %d examples", s.name, len(s))
    validation = ValidationSet.build(val_sources, config.val_instances) if val_sources and config.val_instances else None

    def export_best(trainer: Trainer, scores: dict[str, float]) -> None:
        if args.export is None:
            return
        metadata = {
            "training_data": [f"{s.name} ({len(s)} train examples)" for s in train_sources],
            "step": trainer.step,
            "train_config": trainer.config.__dict__,
            "validation": scores,
        }
        save_weights(trainer.model, args.export, metadata, fp16=True)
        log.info("exported best weights (val IoU %.4f) to %s", scores["iou"], args.export)

    init = load_weights(args.init)[0] if args.init else None
    deadline = time.monotonic() + 60 * args.max_minutes if args.max_minutes > 0 else math.inf
    run_training(config, args.run, train_sources, validation, on_best=export_best, init_weights=init,
                 should_stop=lambda: time.monotonic() >= deadline)
    return 0
