"""The headless subcommands of ``segrefiner-studio``, by name.

Each module registers its subcommands on the parser and calls app/services; ``app.main`` imports only the
module of the command being run, so ``segrefiner-studio`` without a command (the window) never imports the
modules that pull in torch.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose ``register(subparsers)`` adds it, and its one-line help."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "import": Command("app.cli.dataset", "import a dataset into a project file"),
    "validate": Command("app.cli.dataset", "check a dataset for bad input without importing it"),
    "export": Command("app.cli.dataset", "export a project to COCO / LVIS / results JSON or PNG masks"),
    "stats": Command("app.cli.stats", "counts per category and status, and an area histogram"),
    "refine": Command("app.cli.refine", "refine a project's instances and save them (resumable)"),
    "refine-image": Command("app.cli.refine", "refine one coarse mask of one image"),
    "demo": Command("app.cli.refine", "refine the bundled demo photos headless and write the results"),
    "train": Command("app.cli.train", "train or resume the default band refiner (checkpoints in --run)"),
    "train-unet": Command("app.cli.train", "train or resume a SegRefiner U-Net (compact or official preset)"),
    "eval": Command("app.cli.eval", "evaluate the refiner and classical baselines on held-out images"),
    "prompt": Command("app.cli.prompt", "make new instances from boxes (one, or a detector's COCO results file)"),
    "find-similar": Command("app.cli.prompt", "propose instances like example ones on a project's images (one-shot)"),
}


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    """The project a command works on, as its first argument or as ``--project`` (both spellings everywhere)."""
    from app.services.stats import PROJECT_SUFFIX  # the store's suffix; services load with the command only

    metavar = f"PROJECT{PROJECT_SUFFIX}"
    parser.add_argument("project", type=Path, nargs="?", metavar=metavar,
                        help="the project file made by `import` (or give it with --project)")
    parser.add_argument("--project", type=Path, dest="project_option", metavar=metavar,
                        help="the project file, as an option")
    parser.set_defaults(project_metavar=metavar)


def project_of(args: argparse.Namespace, command: str) -> Path:
    """The project given either way; neither, or two different ones, is an error naming the command."""
    given = [p for p in (args.project, args.project_option) if p is not None]
    if not given:
        raise ValueError(f"{command}: give the project file ({command} {args.project_metavar})")
    if len(given) == 2 and given[0] != given[1]:
        raise ValueError(f"{command}: two projects given, {given[0]} and {given[1]}")
    return given[0]
