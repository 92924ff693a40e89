"""The ``cascade`` command: a thin shell over library functions. ``main(argv) -> exit code``.

Each sub-command is a module of this package with ``add_parser(subparsers)``; it parses its
arguments and calls the library.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import openai

from .._logging import configure_logging
from ..exceptions import CascadeError
from . import (
    batch,
    calibrate,
    check,
    dashboard,
    demo,
    eval,
    learn,
    replay,
    report,
    schema,
    serve,
    tasks,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

# In the order `cascade --help` lists them.
_COMMANDS = (
    demo,
    schema,
    check,
    report,
    tasks,
    dashboard,
    eval,
    calibrate,
    learn,
    batch,
    replay,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cascade",
        description="Cheap model first, validated; the strong model only when a check fails.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every call's event to stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except CascadeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except openai.OpenAIError as e:  # the SDK's own set-up errors, say a missing API key
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
