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


# What each run setting does (the defaults come from the config dataclasses, printed by --help).
SETTING_HELP = {
    "iterations": "optimiser steps in the whole run (a resumed run counts from where it stopped)",
    "batch_size": "instances per step",
    "tiles": "band tiles (64 px) cut from each instance: at its errors, its coarse band and its true boundary",
    "lr": "peak learning rate (AdamW)",
    "min_lr_ratio": "the cosine decay ends at lr times this",
    "warmup": "steps of linear warm-up to lr",
    "weight_decay": "AdamW weight decay",
    "clip_grad": "clip the gradient's norm to this",
    "boundary_weight": "extra BCE weight within 2 px of the true boundary",
    "error_weight": "extra BCE weight on pixels the input mask has wrong",
    "dice_weight": "weight of the soft Dice term per tile",
    "coarse_t_prob": "share of samples at the first reverse step (the coarse mask itself as input)",
    "smooth_mix_prob": "share of intermediate masks mixed with low-frequency blobs instead of per-pixel noise",
    "neighbour_prob": "share of samples of the neighbour kind, a near-perfect mask beside a touching annotated "
                      "object (0: off; docs/decisions/0012)",
    "seed": "random seed of the samples (and of the initialisation when there is no --init)",
    "val_every": "validate (and export the best weights) every this many steps",
    "val_per_kind": "held-out instances per coarse kind in each validation (0: no validation)",
    "val_instances": "held-out instances in each validation (0: no validation)",
    "save_every": "write the resumable last.pt every this many steps",
    "log_every": "log the loss every this many steps",
    "workers": "data-loading processes (0: in the training process)",
    "threads": "torch threads of the training process (0: torch's default)",
    "device": "auto, cpu, cuda or cuda:N",
    "preset": "the U-Net's size: compact or official",
    "texture_weight": "weight of the L1 between gradient magnitudes of prediction and truth",
    "patch_prob": "share of crops cut at random from the image instead of around the instance",
    "size": "crop side in pixels",
    "window": "train on this side's window of each crop, at its errors (0: the whole crop)",
}


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
                                    default=getattr(defaults, f.name),
                                    help=f"{SETTING_HELP[f.name]} (default: %(default)s)")
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


# Settings that must be at least 1, more than 0, at least 0, or a share between 0 and 1: a run refuses
# anything else before loading data (a clip at 0 zeroes every gradient; a share of 2 is a typo).
AT_LEAST_ONE = ("iterations", "batch_size", "tiles", "val_every", "save_every", "log_every", "size")
POSITIVE = ("lr", "clip_grad")
NOT_NEGATIVE = ("warmup", "weight_decay", "boundary_weight", "error_weight", "dice_weight", "texture_weight",
                "workers", "threads", "window", "val_per_kind", "val_instances")
SHARES = ("coarse_t_prob", "smooth_mix_prob", "neighbour_prob", "patch_prob", "min_lr_ratio")


def check_settings(args: argparse.Namespace) -> None:
    """Refuse a run setting outside its range, naming the option."""
    for names, bad, wanted in ((AT_LEAST_ONE, lambda v: v < 1, "1 or more"), (POSITIVE, lambda v: not v > 0, "more than 0"),
                              (NOT_NEGATIVE, lambda v: not v >= 0, "0 or more"),
                              (SHARES, lambda v: not 0 <= v <= 1, "between 0 and 1")):
        for setting in names:
            value = getattr(args, setting, None)
            if value is not None and bad(value):
                raise ValueError(f"--{setting.replace('_', '-')} must be {wanted}, got {value}")


def run_train(args: argparse.Namespace) -> int:
    if args.run.exists() and not args.run.is_dir():
        raise ValueError(f"{args.run}: is a file; --run takes the run's folder")
    check_settings(args)
    config = args.config_type(**{f.name: getattr(args, f.name) for f in fields(args.config_type)})
    args.train(config, args.data, args.run, init=args.init, export=args.export, max_minutes=args.max_minutes)
    return 0
