"""``cascade eval --task T DATA.jsonl``: the cheap model, the strong model and the cascade on
labelled examples; quality, cost, escalation rate and whether to route."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..evals import CodeLimits, aevaluate, load_examples
from ._common import cascade_of, margin, policies_default, progress, scorer_importable

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "render_eval", "run_eval"]


def add_parser(subparsers: Any) -> None:
    """Add ``eval`` to the ``cascade`` command's sub-parsers."""
    policies = policies_default()
    ev = subparsers.add_parser("eval", help="cheap vs strong vs cascade on labelled examples")
    ev.add_argument("data", help="JSONL of {messages, reference | tests | labels[, id, params]}")
    ev.add_argument("--task", required=True)
    ev.add_argument("--policies", default=policies, help="policy directory")
    ev.add_argument(
        "--margin", type=margin, default=0.05,
        help="relative quality loss allowed, in [0, 1) (default: 0.05)",
    )  # fmt: skip
    ev.add_argument("--format", choices=("table", "json"), default="table")
    ev.add_argument(
        "--scorer", default=None,
        help="a comparator name, module:function, or code (run each example's tests)",
    )  # fmt: skip
    ev.add_argument("--judge", metavar="MODEL", default=None, help="grade answers with MODEL")
    ev.add_argument("--rubric", metavar="FILE", default=None, help="the judge's rubric (text)")
    ev.add_argument("--code-cpu", type=int, default=10, metavar="S", help="code: CPU seconds")
    ev.add_argument("--code-wall", type=float, default=30.0, metavar="S", help="code: seconds")
    ev.add_argument("--code-memory", type=int, default=512, metavar="MB", help="code: memory")
    ev.add_argument("--concurrency", type=int, default=8)
    ev.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """``cascade eval``: prints the report; exit 0 for "route", 1 for "do not route" or
    "unknown", 2 for bad input (the data file, the rubric, the scorer, the store)."""
    try:
        if args.rubric is not None and args.judge is None:
            raise ValueError("--rubric needs --judge MODEL")
        if args.judge is not None and args.scorer is not None:
            raise ValueError("give --judge or --scorer, not both")
        rubric = None
        if args.rubric is not None:
            rubric = Path(args.rubric).read_text(encoding="utf-8")
        limits = CodeLimits(args.code_cpu, args.code_wall, args.code_memory)
        examples = load_examples(args.data, labelled=args.judge is None)
        if args.scorer == "code" and (missing := [e.id for e in examples if not e.tests]):
            raise ValueError(f"{args.data}: --scorer code: no 'tests' in example {missing[0]}")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scorer_importable(args.scorer)
    cascade = cascade_of(args)  # aevaluate loads the scorer before any call (ScorerError)
    report = asyncio.run(
        aevaluate(
            cascade,
            args.task,
            examples,
            scorer=args.scorer,
            judge=args.judge,
            rubric=rubric,
            limits=limits,
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
        f"verdict: {report.verdict} (margin {report.margin:.0%})"
        + (": the strong model scored no answer right" if rq is None else ""),
    ]
    scoring = report.scoring
    if scoring is not None:
        line = f"scored by {report.scored_by}"
        if scoring.judge is not None:
            cost = scoring.judge_cost
            line += (
                f": {scoring.graded:,} grades, {scoring.unknown:,} unknown (counted as wrong), "
                f"judge cost {_money(None if cost is None else float(cost))}"
            )
        lines.append(line)
    return "\n".join(lines)
