"""``cascade eval --task T DATA.jsonl``: the cheap model, the strong model and the cascade on
labelled examples; quality, cost, escalation rate and whether to route."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from ..evals import aevaluate, load_examples
from ._common import cascade_of, policies_default, progress

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "render_eval", "run_eval"]


def add_parser(subparsers: Any) -> None:
    """Add ``eval`` to the ``cascade`` command's sub-parsers."""
    policies = policies_default()
    ev = subparsers.add_parser("eval", help="cheap vs strong vs cascade on labelled examples")
    ev.add_argument("data", help="JSONL of {messages, reference[, id]}")
    ev.add_argument("--task", required=True)
    ev.add_argument("--policies", default=policies, help="policy directory")
    ev.add_argument("--margin", type=float, default=0.05, help="relative quality loss allowed")
    ev.add_argument("--format", choices=("table", "json"), default="table")
    ev.add_argument("--scorer", default=None, help="a comparator name, or module:function")
    ev.add_argument("--concurrency", type=int, default=8)
    ev.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """``cascade eval``: prints the report; exit 0 for "route", 1 for "do not route"."""
    cascade = cascade_of(args)
    examples = load_examples(args.data)
    report = asyncio.run(
        aevaluate(
            cascade,
            args.task,
            examples,
            scorer=args.scorer,
            margin=args.margin,
            concurrency=args.concurrency,
            progress=progress(sys.stderr),
        )
    )
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_eval(report))
    return 0 if report.verdict == "route" else 1


def _money(x: float | None) -> str:
    return "unknown" if x is None else f"${x:,.4f}"


def render_eval(report: Any) -> str:
    """The ``cascade eval`` table."""
    lines = [
        f"task {report.task}: {len(report.examples)} examples",
        "",
        f"{'mode':<8} {'quality':>8} {'agree w/ strong':>16} {'cost':>12} "
        f"{'per 1k calls':>13} {'escalated':>10} {'errors':>7}",
    ]
    for m in ("cheap", "strong", "cascade"):
        s = report.summaries[m]
        d = s.to_dict()
        agree = "-" if s.agreement_with_strong is None else f"{s.agreement_with_strong:.1%}"
        lines.append(
            f"{m:<8} {s.quality:>8.1%} {agree:>16} {_money(s.cost_usd):>12} "
            f"{_money(d['cost_per_1k_usd']):>13} {s.escalation_rate:>10.1%} "
            f"{s.errors:>7}"
        )
    rq, rc = report.relative_quality, report.relative_cost
    lines += [
        "",
        f"cascade quality: {'-' if rq is None else f'{rq:.1%}'} of the strong "
        f"model's, at {'an unknown share' if rc is None else f'{rc:.1%}'} of its cost",
        f"verdict: {report.verdict} (margin {report.margin:.0%})",
    ]
    return "\n".join(lines)
