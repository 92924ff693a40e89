"""``cascade tasks``: every task seen, discovered or configured; ``cascade tasks promote``.

``cascade tasks [--store URL] [--policies DIR] [--format table|json]``
``cascade tasks promote TASK [--store URL] [--policies DIR] [--force]``
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from ..exceptions import CascadeError, StoreError
from ._common import policies_default

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def _common(p: Any) -> None:
    p.add_argument(
        "--store", default=None,
        help="store URL (default: $CASCADE_STORE, else the local SQLite store)",
    )  # fmt: skip
    p.add_argument("--policies", default=policies_default(), help="policy directory")


def add_parser(subparsers: Any) -> None:
    """Add ``tasks`` (and ``tasks promote``) to the ``cascade`` command's sub-parsers."""
    p = subparsers.add_parser(
        "tasks", help="every task seen: discovered or configured, spend, what to do",
        description="Every task seen in the store: discovered or configured, calls, spend and "
        "share of spend, mode, escalation rate, and for observed tasks the agreement, the "
        "projected savings and the recommendation.",
    )  # fmt: skip
    _common(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run, action=None)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    promote = sub.add_parser(
        "promote", help="write policies/<task>.yaml for a discovered task",
        description="Write a policy file for a discovered task: its match:, validators inferred "
        "from the strong model's recorded answers, mode: observe.",
    )  # fmt: skip
    promote.add_argument("task", metavar="TASK")
    _common(promote)
    promote.add_argument("--force", action="store_true", help="replace an existing file")
    promote.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the tasks (exit 0), or promote one (exit 0 when written, 2 when not)."""
    from ..policy import PolicySet
    from ..report import render_tasks, task_rows
    from ..stores import store_from_url

    url = args.store or os.environ.get("CASCADE_STORE") or None
    try:
        store = store_from_url(url)
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.action == "promote":
            from ..evals import promote

            try:
                done = promote(store, args.task, args.policies, force=args.force)
            except CascadeError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            print(f"wrote {done.path} from {done.answers} answers (mode: observe)")
            return 0
        rows = task_rows(store, configured=PolicySet(args.policies).tasks())
        sys.stdout.write(render_tasks(rows, args.format))
        return 0
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
