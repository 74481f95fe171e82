"""``stats``: a project's counts and areas. Its own module so that the command imports only the store and
the stats service (not the codecs), which keeps ``segrefiner-studio stats`` quick to start."""
from __future__ import annotations

import argparse
import json

from app.cli import COMMANDS, add_project_argument, project_of
from app.services.stats import format_stats, project_stats


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stats`` to the ``segrefiner-studio`` parser."""
    stats = subparsers.add_parser(
        "stats", help=COMMANDS["stats"].help,
        description="Print a project's counts per category and review status and a histogram of mask areas.",
    )
    add_project_argument(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(handler=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    stats = project_stats(project_of(args, "stats"))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0
