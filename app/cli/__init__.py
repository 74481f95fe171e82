"""The headless subcommands of ``segrefiner-studio``, by name.

Each module registers its subcommands on the parser and calls app/services; ``app.main`` imports only the
module of the command being run, so ``segrefiner-studio`` without a command (the window) never imports the
modules that pull in torch.
"""
from __future__ import annotations

from dataclasses import dataclass


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
