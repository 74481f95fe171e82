"""``segrefiner-studio``: no arguments opens the desktop app on the demo project; subcommands run headless."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from app.cli import dataset as cli_dataset, eval as cli_eval, refine as cli_refine, train as cli_train
from app.core.errors import DatasetError
from app.refiner.weights import WeightsError

log = logging.getLogger("app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segrefiner-studio",
        description="Clean segmentation datasets with the SegRefiner diffusion refiner.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    cli_refine.register(subparsers)
    cli_dataset.register(subparsers)
    cli_train.register(subparsers)
    cli_eval.register(subparsers)
    gui = subparsers.add_parser("gui", help="open the desktop app (the default with no command)")
    gui.add_argument("project", nargs="?", help="project file (.srproj) to open; default: the demo project")
    gui.set_defaults(handler=run_gui_command)
    return parser


def run_gui_command(args: argparse.Namespace) -> int:
    from app.gui.app import run_gui

    return run_gui([args.project] if args.project else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command is None:
        args = parser.parse_args(["gui"])
    try:
        return int(args.handler(args) or 0)
    except (DatasetError, WeightsError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
