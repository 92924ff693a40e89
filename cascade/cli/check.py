"""``cascade check``: compile every policy file of a directory and say which fail."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .._answer import one_line
from ..exceptions import CascadeError
from ._common import policies_default

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add ``check`` to the ``cascade`` command's sub-parsers."""
    check = subparsers.add_parser("check", help="validate every policy file in a directory")
    check.add_argument(
        "directory", nargs="?", default=None, metavar="DIR",
        help="policy directory (the same as --policies DIR)",
    )  # fmt: skip
    check.add_argument("--policies", default=None, help="policy directory")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every policy compiles, 1 when one does not or there are none, 2 when two
    different directories are given."""
    from ..policy import PolicySet
    from ..validators import name_of

    if args.directory and args.policies and args.directory != args.policies:
        print(f"error: two directories: {args.directory} and --policies {args.policies}",
              file=sys.stderr)  # fmt: skip
        return 2
    policies = PolicySet(args.directory or args.policies or policies_default())
    tasks = policies.tasks()
    if not tasks:
        print(f"no policy files in {policies.directory}", file=sys.stderr)
        return 1
    failed = 0
    for task in tasks:
        try:
            p = policies.get(task)
        except CascadeError as e:
            failed += 1
            print(f"FAIL {e}", file=sys.stderr)
        else:
            # Names may come from a client (a promoted task's requested model): one line each.
            names = ", ".join(one_line(name_of(v)) for v in p.validators)
            models = " -> ".join(one_line(m) for m in p.models)
            print(f"ok   {one_line(task)}: {models} [{names}]")
    return 1 if failed else 0
