"""``cascade report``: read a store, aggregate, render, write.

``cascade report [--store URL] [--task T] [--since 24h|7d|30m|DATE] [--until DATE]
[--format table|json|csv|html] [--out FILE] [--sample N] [--policies DIR]``
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import StoreError
from ..report import DEFAULT_SAMPLE
from ._common import QUIET_EVERY_S, policies_default

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["add_parser", "certified_thresholds", "parse_time", "run"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_time(text: str, *, now: float | None = None) -> float:
    """A point in time as unix seconds, from a duration ago or an ISO date/datetime (UTC).

    ``30m``, ``24h``, ``7d``, ``2w`` are that long before ``now``; ``2024-05-01`` is that
    day's UTC midnight; ``2024-05-01T12:00`` (naive: UTC) or with an offset is that instant.
    Raises ``argparse.ArgumentTypeError`` naming the value when it is neither.
    """
    value = text.strip()
    m = _DURATION.fullmatch(value.lower())
    if m:
        return (time.time() if now is None else now) - float(m[1]) * _SECONDS[m[2]]
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO date (2024-05-01)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def add_parser(subparsers: Any) -> None:
    """Add ``report`` to the ``cascade`` command's sub-parsers."""
    p = subparsers.add_parser(
        "report", help="cost, savings and why calls escalated",
        description="Cost, savings and escalations per task, and the patterns behind them.",
    )  # fmt: skip
    p.add_argument(
        "--store", default=None,
        help="store URL (default: $CASCADE_STORE, else the local SQLite store)",
    )  # fmt: skip
    p.add_argument("--task", default=None, help="only this task")
    p.add_argument(
        "--policies", default=None, metavar="DIR",
        help="policy directory, read for the thresholds calibrate certified (default: "
        "$CASCADE_POLICIES, else policies, when it exists)",
    )  # fmt: skip
    p.add_argument(
        "--since", type=parse_time, default=None, metavar="WHEN",
        help="start: a duration ago (30m, 24h, 7d) or an ISO date/datetime, UTC",
    )  # fmt: skip
    p.add_argument(
        "--until", type=parse_time, default=None, metavar="WHEN",
        help="end: an ISO date/datetime (UTC) or a duration ago; default now",
    )  # fmt: skip
    p.add_argument("--format", choices=("table", "json", "csv", "html"), default="table")
    p.add_argument("--out", default=None, metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE, metavar="N",
        help="patterns from at most N stored records per task, newest first "
        "(default %(default)s; 0: all); totals always count every call",
    )  # fmt: skip
    p.set_defaults(func=run)


class _Progress:
    """A 'records read' line on stderr, rewritten in place; only shown for long reports.

    Off a terminal, a plain line at most every ``QUIET_EVERY_S`` seconds instead, and the
    last figure when done, if a line was written and it was not the last figure.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.shown = False
        self.tty = sys.stderr.isatty()
        self.clock = clock
        self.last = clock()
        self.latest = self.written = 0  # the last figure given, the last one written

    def __call__(self, n: int) -> None:
        self.latest = n
        if not self.tty:
            now = self.clock()
            if now - self.last >= QUIET_EVERY_S:
                self.last = now
                self._line(n)
            return
        self.shown = True
        sys.stderr.write(f"\rreading records: {n:,}")
        sys.stderr.flush()

    def _line(self, n: int) -> None:
        self.written = n
        sys.stderr.write(f"reading records: {n:,}\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
        elif self.written and self.written != self.latest:
            self._line(self.latest)


def certified_thresholds(directory: str | None) -> dict[str, set[str]]:
    """Task -> the validators whose ``min:`` carries calibrate's certified mark, from the
    policy files of ``directory`` (default: the policy directory, when it exists).

    A policy that does not load is skipped: the report does not depend on it.
    """
    from ..evals import certified_validators
    from ..exceptions import CascadeError
    from ..policy import PolicySet
    from ..validators import name_of

    where = Path(directory or policies_default())
    if not where.is_dir():
        return {}
    policies = PolicySet(where)
    out: dict[str, set[str]] = {}
    for task in policies.tasks():
        try:
            policy = policies.get(task)
            if policy.path is None:
                continue
            marked = certified_validators(policy.path)
        except (CascadeError, OSError, ValueError):
            continue
        names = {name_of(v) for i, v in enumerate(policy.validators) if i in marked}
        if names:
            out[task] = names
    return out


def run(args: argparse.Namespace) -> int:
    """Build the report and write it; returns 0, or 2 when the store cannot be read."""
    from ..report import build_report, render
    from ..stores import store_from_url

    url = args.store or os.environ.get("CASCADE_STORE") or None
    progress = _Progress()
    # Reading records makes about a million objects and no reference cycle per record (a
    # report over 15,000 or 60,000 records leaves the same ~1,300 unreachable objects):
    # the cyclic collector would only scan them again and again, 10-15% of the time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        store = store_from_url(url)
        try:
            store.flush(timeout=60)  # first replay what this machine's spool holds for it
            report = build_report(
                store, task=args.task, since=args.since, until=args.until, progress=progress,
                sample=args.sample or None, certified=certified_thresholds(args.policies),
            )  # fmt: skip
        finally:
            progress.done()
            store.close()
    except (StoreError, ValueError) as e:  # ValueError: an unknown URL scheme
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if collecting:
            gc.enable()
    text = render(report, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
