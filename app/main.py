"""``segrefiner-studio`` (and ``python -m app``): no command opens the window, a command runs headless.

Only the module of the command being run is imported (the table is app/cli/COMMANDS), so opening the
window never imports torch, and ``--help`` lists every command without importing any of them. The window is
started here, above both front ends, so app/cli and app/gui never import each other.

Exit status: 0 done, 1 ``validate`` found problems (or ``refine`` refined none of the instances it selected), 2 an error with its
one-line message, or a headless command stopped by SIGTERM / SIGHUP (after removing what it had half
written; docs/decisions/0016); 130 Ctrl+C; 141 the output's reader went away (``| head``), as for SIGPIPE.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from app.cli import COMMANDS
from app.core.store.schema import PROJECT_SUFFIX
from app.core.errors import DatasetError
from app.core.signals import Terminated, terminate_on_signals

log = logging.getLogger("app")

GUI_HELP = "open the desktop app (the default with no command)"


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The full parser for the command in ``argv``; every other command appears with its help line only."""
    parser = argparse.ArgumentParser(
        prog="segrefiner-studio",
        description="Clean segmentation datasets with the SegRefiner diffusion refiner.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    if wanted in COMMANDS:
        importlib.import_module(COMMANDS[wanted].module).register(subparsers)
    for name, command in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=command.help)
    gui = subparsers.add_parser("gui", help=GUI_HELP)
    gui.add_argument("project", nargs="?", help="project file (.srproj) to open; default: the demo project")
    gui.set_defaults(handler=run_gui_command)
    return parser


def run_gui_command(args: argparse.Namespace) -> int:
    from app.gui.app import run_gui

    return run_gui([args.project] if args.project else [])


def _expected(error: BaseException) -> bool:
    """Bad input and unusable weights get one line, not a traceback."""
    known: tuple[type[BaseException], ...] = (DatasetError, ValueError, FileNotFoundError)
    # imported (with torch) only by the commands that load weights
    for module, name in (("app.refiner.weights", "WeightsError"), ("app.refiner.encoder", "EncoderError"),
                         ("app.refiner.sam", "SamError"), ("app.refiner.prompt_head", "PromptHeadError")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            known += (getattr(loaded, name),)
    return isinstance(error, known)


def one_line(error: BaseException) -> str:
    """The error's message, a file named by the path the user gave (``DatasetError`` messages name the file
    alone, which is what a dialog shows; on a command line the folder matters too)."""
    text = str(error)
    if isinstance(error, DatasetError) and text.startswith(f"{error.path.name}: ") and str(error.path) != error.path.name:
        return f"{error.path}{text[len(error.path.name):]}"
    return text


def with_command(argv: Sequence[str]) -> list[str]:
    """``segrefiner-studio my.srproj`` opens that project in the window, as ``gui my.srproj`` does (what a file
    manager's "open with" and a habit from other programs both do)."""
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is not None and argv[first].endswith(PROJECT_SUFFIX) and argv[first] not in COMMANDS:
        return [*argv[:first], "gui", *argv[first:]]
    return list(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = with_command(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command is None:
        args = parser.parse_args([*argv, "gui"])
    try:
        if args.handler is run_gui_command:  # the window quits through Qt
            return int(args.handler(args) or 0)
        with terminate_on_signals(restore=False):
            return int(args.handler(args) or 0)
    except Terminated as stop:
        print(f"stopped by {stop.name}: nothing half-written is left, and what was saved before stays",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:  # ``stats | head``: the reader has what it wanted; say nothing more to the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        if not _expected(error):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
