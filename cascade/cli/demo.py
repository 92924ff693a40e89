"""``cascade demo``: the example policies on an example workload (offline unless ``--live``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._common import policies_default

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add ``demo`` to the ``cascade`` command's sub-parsers."""
    demo = subparsers.add_parser("demo", help="run the example policies on an example workload")
    demo.add_argument("--policies", default=policies_default(), help="policy directory")
    demo.add_argument("--store", default=None, help="store URL (default: the embedded store)")
    demo.add_argument("--live", action="store_true", help="call the real API (OPENAI_API_KEY)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns its exit code."""
    from ..demo import run_demo

    return run_demo(policies=args.policies, store=args.store, live=args.live)
