"""The ``eval`` and ``calibrate`` sub-commands, and the calibration samples they collect.

``cascade eval --task T DATA.jsonl``: the cheap model, the strong model and the cascade on
labelled examples; quality, cost, escalation rate and whether to route.

``cascade calibrate --task T --target 0.97 (--from-store | --data DATA.jsonl)``: the
confidence threshold certified to keep the target quality at the least cost (see
``cascade.calibrate``), and which validators matter. ``--write`` sets it in the policy file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO

from .calibrate import Calibration, Sample, calibrate
from .evaluate import Example, Progress, aevaluate, load_examples, run_mode, scorer_of
from .events import CallRecord, Result
from .exceptions import CascadeError, PolicyError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from .policy import Policy

__all__ = [
    "add_parsers",
    "confidence_validator",
    "run_calibrate",
    "run_eval",
    "samples_from_records",
    "samples_from_runs",
    "write_threshold",
]


def add_parsers(subparsers: Any) -> None:
    """Add ``eval`` and ``calibrate`` to the ``cascade`` command's sub-parsers."""
    policies = os.environ.get("CASCADE_POLICIES", "policies")
    ev = subparsers.add_parser("eval", help="cheap vs strong vs cascade on labelled examples")
    ev.add_argument("data", help="JSONL of {messages, reference[, id]}")
    ev.add_argument("--task", required=True)
    ev.add_argument("--policies", default=policies, help="policy directory")
    ev.add_argument("--margin", type=float, default=0.05, help="relative quality loss allowed")
    ev.add_argument("--format", choices=("table", "json"), default="table")
    ev.add_argument("--scorer", default=None, help="a registered comparator name")
    ev.add_argument("--concurrency", type=int, default=8)
    ev.set_defaults(func=run_eval)

    cal = subparsers.add_parser("calibrate", help="choose the confidence threshold")
    cal.add_argument("--task", required=True)
    cal.add_argument("--target", type=float, required=True, help="e.g. 0.97")
    cal.add_argument("--policies", default=policies, help="policy directory")
    src = cal.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-store", action="store_true", help="use observation records")
    src.add_argument("--data", help="JSONL of {messages, reference[, id]}")
    cal.add_argument("--store", default=None, help="store URL (default: $CASCADE_STORE)")
    cal.add_argument("--validator", default=None, help="which confidence validator")
    cal.add_argument("--delta", type=float, default=0.05, help="allowed failure probability")
    cal.add_argument("--scorer", default=None, help="a registered comparator name (--data)")
    cal.add_argument("--concurrency", type=int, default=8)
    cal.add_argument("--write", action="store_true", help="set min: in the policy file")
    cal.set_defaults(func=run_calibrate)


def _progress(stream: TextIO) -> Progress:
    def show(mode: str, done: int, total: int) -> None:
        width = 30
        bar = "#" * (width * done // max(total, 1))
        stream.write(f"\r{mode:>8} [{bar:<{width}}] {done}/{total}")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def _cascade(args: argparse.Namespace) -> Any:
    from ._client import Cascade

    return Cascade(args.policies, store=getattr(args, "store", None) or "memory://")


def run_eval(args: argparse.Namespace) -> int:
    """``cascade eval``: prints the report; exit 0 for "route", 1 for "do not route"."""
    cascade = _cascade(args)
    examples = load_examples(args.data)
    report = asyncio.run(
        aevaluate(
            cascade,
            args.task,
            examples,
            scorer=args.scorer,
            margin=args.margin,
            concurrency=args.concurrency,
            progress=_progress(sys.stderr),
        )
    )
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_eval(report))
    return 0 if report.verdict == "route" else 1


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.4f}"


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
        f"model's, at {'-' if rc is None else f'{rc:.1%}'} of its cost",
        f"verdict: {report.verdict} (margin {report.margin:.0%})",
    ]
    return "\n".join(lines)


def confidence_validator(policy: Policy, name: str | None = None) -> tuple[int, str]:
    """(index, name) of the policy's confidence validator (``name`` picks among several).

    Raises PolicyError when there is none, or several and no ``name``.
    """
    found = [
        (i, str(getattr(v, "name", "")))
        for i, (entry, v) in enumerate(zip(policy.spec.validators, policy.validators, strict=True))
        if entry.get("type") == "confidence" or getattr(v, "name", None) == name
    ]
    if name is not None:
        found = [f for f in found if f[1] == name]
    if len(found) != 1:
        names = [n for _, n in found] or "none"
        why = "names no confidence validator" if name is None else f"has no validator {name!r}"
        if len(found) > 1:
            why = f"has several confidence validators ({names}); pick one with --validator"
        raise PolicyError(f"{policy.task} {why}", path=policy.path, field="validators")
    return found[0]


def samples_from_records(records: Iterable[CallRecord], validator: str) -> list[Sample]:
    """Calibration samples from observation records (``mode == "observe"``).

    Quality is agreement with the strong model: ``cheap_ok`` = the cheap answer agreed,
    ``strong_ok`` = True. Records whose agreement is unknown (an answer errored) are left out.
    """
    out = []
    for r in records:
        obs = r.extra.get("observe") if r.mode == "observe" else None
        if not obs or obs.get("agree") is None:
            continue
        failed = {str(x).split(":", 1)[0] for x in obs.get("reasons") or ()}
        names = {v.validator for a in r.attempts for v in a.verdicts} | failed
        score = (obs.get("scores") or {}).get(validator)
        out.append(
            Sample(
                score=None if score is None else float(score),
                cheap_ok=bool(obs["agree"]),
                strong_ok=True,
                cheap_cost=float(obs.get("cheap_cost_usd") or 0.0),
                strong_cost=float(obs.get("strong_cost_usd") or 0.0),
                passed={n: n not in failed for n in sorted(names - {validator})},
            )
        )
    return out


def _answer_cost(result: Result, *, verify: bool) -> float:
    return sum(a.cost_usd or 0.0 for a in result.attempts if verify or a.purpose != "verify")


def samples_from_runs(
    examples: Sequence[Example],
    cheap: Sequence[Result | CascadeError],
    strong: Sequence[Result | CascadeError],
    validator: str,
    correct: Any,
) -> list[Sample]:
    """Calibration samples from a cheap-mode and a strong-mode run of the same examples.

    ``correct(answer, example) -> bool`` scores an answer. The cheap answer's first attempt
    gives the score and the other verdicts; a failed call counts as wrong and unscored.
    """
    out = []
    for ex, c, s in zip(examples, cheap, strong, strict=True):
        first = (
            next((a for a in c.attempts if a.purpose == "answer"), None)
            if isinstance(c, Result)
            else None
        )
        verdicts = first.verdicts if first is not None else ()
        score = next((v.score for v in verdicts if v.validator == validator), None)
        out.append(
            Sample(
                score=score,
                cheap_ok=isinstance(c, Result) and correct(c.output, ex),
                strong_ok=isinstance(s, Result) and correct(s.output, ex),
                cheap_cost=_answer_cost(c, verify=True) if isinstance(c, Result) else 0.0,
                strong_cost=_answer_cost(s, verify=True) if isinstance(s, Result) else 0.0,
                passed={v.validator: v.passed for v in verdicts if v.validator != validator},
                baseline_cost=_answer_cost(s, verify=False) if isinstance(s, Result) else 0.0,
            )
        )
    return out


def run_calibrate(args: argparse.Namespace) -> int:
    """``cascade calibrate``: prints the calibration; exit 1 when nothing could be certified."""
    cascade = _cascade(args) if args.data else None
    from .policy import PolicySet

    policy = (cascade.policies if cascade else PolicySet(args.policies)).get(args.task)
    index, name = confidence_validator(policy, args.validator)
    if cascade is not None:
        examples = load_examples(args.data)
        score, spec = scorer_of(policy, args.scorer)

        async def both() -> list[list[Result | CascadeError]]:
            show = _progress(sys.stderr)
            return [
                await run_mode(
                    cascade, policy, examples, m, concurrency=args.concurrency, progress=show
                )
                for m in ("cheap", "strong")
            ]

        cheap, strong = asyncio.run(both())
        samples = samples_from_runs(
            examples, cheap, strong, name, lambda text, ex: score(text, ex.reference, spec)
        )
        measure = "accuracy"
    else:
        from .stores import store_from_url

        store = store_from_url(args.store or os.environ.get("CASCADE_STORE"))
        try:
            samples = samples_from_records(store.records(task=args.task), name)
        finally:
            store.close()
        measure = "agreement"
        if not samples:
            print(
                f"error: no observation records of {args.task} in the store; run it with "
                "mode: observe first",
                file=sys.stderr,
            )
            return 2
    cal = calibrate(samples, target=args.target, delta=args.delta, measure=measure)
    print(render_calibration(cal, name))
    if args.write and cal.short_threshold is not None:
        if policy.path is None:
            raise PolicyError("the policy has no file to write to")
        write_threshold(policy.path, index, cal.short_threshold)
        print(f"wrote min: {cal.short_threshold:g} to {policy.path}")
    return 0 if cal.threshold is not None else 1


def render_calibration(cal: Calibration, validator: str) -> str:
    """The ``cascade calibrate`` report."""

    def per_1k(cost: float) -> str:
        return f"${cost * 1000:,.4f}"

    c, nv = cal.chosen, cal.naive
    if cal.measure == "agreement":
        head = f"cheap model agrees with the strong one on {cal.cheap_quality:.1%}"
    else:
        head = (
            f"strong model accuracy {cal.strong_quality:.1%}, cheap model {cal.cheap_quality:.1%}"
        )
    lines = [f"{cal.n} calibration examples; {head}"]
    if cal.threshold is None:
        lines.append(
            f"no threshold of {validator} could be certified at delta {cal.delta:g}: keep the "
            "strong model (more calibration examples, or a lower --target, may certify one)"
        )
    else:
        lines += [
            f"chosen   {validator} min: {cal.short_threshold:g}  (sample quality "
            f"{c.quality:.1%}, escalation {c.escalation_rate:.1%}, "
            f"{per_1k(c.cost)} per 1,000 calls, saves {cal.savings:.1%} vs the strong model)",
            f"guarantee: {cal.guarantee}",
        ]
    lines.append(f"method: {cal.method}; delta {cal.delta:g}")
    naive_t = "-" if cal.naive_threshold is None else f"{cal.naive_threshold:.6g}"
    lines.append(
        f"naive    {validator} min: {naive_t}  (sample quality {nv.quality:.1%}, escalation "
        f"{nv.escalation_rate:.1%}, {per_1k(nv.cost)} per 1,000 calls; no guarantee: tuned to "
        "the sample, it tends to under-deliver on new traffic)"
    )
    lines.append(f"strong model alone: {per_1k(cal.strong_cost)} per 1,000 calls")
    if cal.validators:
        lines += [
            "",
            f"{'validator':<24} {'fails':>7} {'quality without':>16} {'cost/1k without':>16}",
        ]
        lines += [
            f"{v.name:<24} {v.fail_rate:>7.1%} {v.quality_without:>16.1%} "
            f"{per_1k(v.cost_without):>16}"
            for v in cal.validators
        ]
    return "\n".join(lines)


def write_threshold(path: Path, index: int, value: float) -> None:
    """Set ``validators[index].min`` in a YAML policy file, keeping comments and layout.

    ruamel.yaml locates the value; only that token is rewritten (or one ``min:`` line is
    added after the entry's first key), so every other byte of the file stays as it was.
    """
    from ruamel.yaml import YAML

    text = path.read_text(encoding="utf-8")
    entry = YAML().load(text)["validators"][index]
    lines = text.splitlines(keepends=True)
    shown = f"{value:g}" if float(f"{value:g}") == value else repr(value)
    if "min" in entry:
        row, col = entry.lc.value("min")
        old = re.match(r"[^\s#,}\]]+", lines[row][col:])
        end = col + (old.end() if old else 0)
        lines[row] = lines[row][:col] + shown + lines[row][end:]
    else:
        first = next(iter(entry))
        row, col = entry.lc.key(first)
        if entry.fa.flow_style():
            raise PolicyError(f"add min: to validators[{index}] by hand (flow style)", path=path)
        lines.insert(row + 1, " " * col + f"min: {shown}\n")
    path.write_text("".join(lines), encoding="utf-8")
