"""``train`` (the default band network) and ``train-unet`` (a SegRefiner U-Net): train or resume on real data.

Arguments only; the work is app/services/training.py.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from app.cli import COMMANDS
from app.services.training import default_data_dir, train_band, train_config_types, train_unet

DEFAULT_RUNS = {"train": "runs/band", "train-unet": "runs/compact"}


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, config_type in train_config_types().items():
        parser = subparsers.add_parser(name, help=COMMANDS[name].help)
        parser.add_argument("--data", type=Path, default=default_data_dir(),
                            help="folder holding ecssd/, oxford_pets/, pennfudan/, coco_tiny/, lvis_val_100/ "
                                 "(default: $SEGREFINER_DATA, else ../shared/data)")
        parser.add_argument("--run", type=Path, default=Path(DEFAULT_RUNS[name]),
                            help="run folder (last.pt is resumed when present)")
        parser.add_argument("--init", help="start from these weights (name or .safetensors file) instead of random")
        parser.add_argument("--export", type=Path, help="write the best validated weights here as safetensors (fp16)")
        parser.add_argument("--max-minutes", type=float, default=0.0,
                            help="stop after this much wall time (validating, saving and exporting first); 0: no limit")
        parser.add_argument("--source-weights", type=_weights, default={},
                            help='JSON sampling weights per source, e.g. {"ecssd": 2}')
        defaults = config_type()
        for f in fields(config_type):
            if f.name != "source_weights":
                parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                                    default=getattr(defaults, f.name))
        parser.set_defaults(handler=run_train, config_type=config_type, train=train_band if name == "train" else train_unet)


def _weights(text: str) -> dict[str, float]:
    """``--source-weights``: a JSON object of numbers by source name."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
        raise argparse.ArgumentTypeError(f'expected a JSON object of numbers by source name, e.g. {{"ecssd": 2}}, '
                                         f"got {text!r}")
    return {str(k): float(v) for k, v in value.items()}


def run_train(args: argparse.Namespace) -> int:
    if args.run.exists() and not args.run.is_dir():
        raise ValueError(f"{args.run}: is a file; --run takes the run's folder")
    if getattr(args, "iterations", 1) < 1:
        raise ValueError(f"--iterations must be 1 or more, got {args.iterations}")
    config = args.config_type(**{f.name: getattr(args, f.name) for f in fields(args.config_type)})
    args.train(config, args.data, args.run, init=args.init, export=args.export, max_minutes=args.max_minutes)
    return 0
