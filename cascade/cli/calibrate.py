"""``cascade calibrate --task T --target 0.97 (--from-store | --data DATA.jsonl)``: the
confidence threshold certified to keep the target quality at the least cost (see
``cascade.evals.calibrate``), and which validators matter. ``--write`` sets it in the policy."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from ..evals import (
    calibrate,
    confidence_validator,
    load_examples,
    number_text,
    observed_samples,
    run_mode,
    samples_from_runs,
    scoring_of,
    write_threshold,
)
from ..evals.advice import uncertified_advice
from ..exceptions import CascadeError, PolicyError
from ._common import (
    cascade_of,
    open_store,
    policies_default,
    probability,
    progress,
    scorer_importable,
    share,
)

if TYPE_CHECKING:
    import argparse

    from ..evals import Calibration, ObservedSamples
    from ..events import Result

__all__ = ["add_parser", "render_calibration", "run_calibrate"]


def add_parser(subparsers: Any) -> None:
    """Add ``calibrate`` to the ``cascade`` command's sub-parsers."""
    policies = policies_default()
    cal = subparsers.add_parser(
        "calibrate",
        help="choose the confidence threshold",
        description="Find the loosest confidence threshold whose quality is certified to be at "
        "least --target x the strong model's, with probability >= 1 - --delta, from "
        "observation records (--from-store) or examples (--data); exit 1 when none is.",
    )
    cal.add_argument("--task", required=True, help="the policy's task name")
    cal.add_argument(
        "--target", type=share, required=True,
        help="quality as a share of the strong model's (from observation records with a text "
        "comparator: agreement with it), e.g. 0.97",
    )  # fmt: skip
    cal.add_argument("--policies", default=policies, help=f"policy directory (default: {policies})")
    src = cal.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-store", action="store_true", help="use observation records")
    src.add_argument(
        "--data", help="JSONL of {messages, reference | labels: {model: true|false}[, id]}"
    )
    cal.add_argument(
        "--store", default=None,
        help="with --from-store, the store to read (default: $CASCADE_STORE, else the "
        "embedded SQLite file); with --data, where its calls are recorded (default: in memory)",
    )  # fmt: skip
    cal.add_argument(
        "--validator",
        default=None,
        help="the confidence validator's name, when the policy has several",
    )
    cal.add_argument(
        "--delta",
        type=probability,
        default=0.05,
        help="allowed failure probability (default: 0.05)",
    )
    cal.add_argument(
        "--scorer", default=None,
        help="a comparator name, module:function, or code (run each example's tests)",
    )  # fmt: skip
    cal.add_argument(
        "--concurrency", type=int, default=8, help="calls at once with --data (default: 8)"
    )
    cal.add_argument(
        "--write",
        action="store_true",
        help="set min: in the policy file (unchanged when nothing is certified)",
    )
    cal.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    """``cascade calibrate``: prints the calibration; exit 1 when nothing could be certified."""
    cascade = cascade_of(args) if args.data else None
    from ..policy import PolicySet

    policy = (cascade.policies if cascade else PolicySet(args.policies)).get(args.task)
    index, name = confidence_validator(policy, args.validator)
    if cascade is not None:
        try:
            examples = load_examples(args.data)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        scorer_importable(args.scorer)
        scoring = scoring_of(policy, args.scorer)  # references, or an example's tests

        async def both() -> list[list[Result | CascadeError]]:
            show = progress(sys.stderr)
            return [
                await run_mode(
                    cascade, policy, examples, m, concurrency=args.concurrency, progress=show
                )
                for m in ("cheap", "strong")
            ]

        cheap, strong = asyncio.run(both())
        samples = samples_from_runs(examples, cheap, strong, name, scoring.correct)
        measure = "accuracy"
        basis = ""
    else:
        store = open_store(args.store)
        try:
            observed = observed_samples(store.records(task=args.task), name)
        finally:
            store.close()
        samples, measure = observed.samples, observed.measure
        basis = _basis(observed)
        if not samples:
            print(
                f"error: no observation records of {args.task} in the store; run it with "
                "mode: observe first",
                file=sys.stderr,
            )
            return 2
    cal = calibrate(samples, target=args.target, delta=args.delta, measure=measure)
    print(render_calibration(cal, name))
    if basis:
        print(basis)
    if cal.threshold is None:
        comparator = None if cascade is not None else policy.spec.agreement.comparator
        print("\n".join(uncertified_advice(cal, samples, validator=name, comparator=comparator)))
    if args.write:
        if policy.path is None:
            raise PolicyError("the policy has no file to write to")
        if cal.short_threshold is None:
            print(f"--write: nothing certified, left {policy.path} unchanged")
        else:
            note = f"target {args.target:g}, delta {args.delta:g}, {cal.n} examples"
            write_threshold(policy.path, index, cal.short_threshold, note=note)
            print(f"wrote min: {number_text(cal.short_threshold)} to {policy.path}")
    return 0 if cal.threshold is not None else 1


def _basis(observed: ObservedSamples) -> str:
    """What observation samples rest on: verdict counts, records left out, judge cost."""
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(observed.verdicts.items()))
    line = f"from {len(observed.samples):,} observations: {counts}"
    if observed.skipped:
        line += f"; {observed.skipped:,} left out (an answer errored)"
    if observed.measure == "judged" or observed.judge_cost_usd:
        who = "judge" if observed.measure == "judged" else "embedding"
        line += f"; {who} cost ${observed.judge_cost_usd:,.4f}"
    if observed.verdicts.get("unknown"):
        line += " (unknown verdicts count as losses)"
    return line


def render_calibration(cal: Calibration, validator: str) -> str:
    """The ``cascade calibrate`` report."""

    def per_1k(cost: float) -> str:
        return f"${cost * 1000:,.4f}" if cal.costs_known else "unknown cost"

    c, nv = cal.chosen, cal.naive
    saves = f"saves {cal.savings:.1%} vs the strong model" if cal.costs_known else "savings unknown"

    def rel(quality: float) -> str:  # quality as a share of the strong model's, and the target
        share = quality / cal.strong_quality if cal.strong_quality else 0.0
        return f"{share:.1%} of the strong model's, target {cal.target:.1%}"

    if cal.measure == "agreement":
        head = f"cheap model agrees with the strong one on {cal.cheap_quality:.1%}"
    else:
        what = "judged quality" if cal.measure == "judged" else "accuracy"
        head = (
            f"strong model {what} {cal.strong_quality:.1%}, cheap model "
            f"{cal.cheap_quality:.1%} ({rel(cal.cheap_quality)})"
        )
    lines = [f"{cal.n} calibration examples; {head}"]
    if cal.short_threshold is None:
        lines.append(
            f"no threshold of {validator} could be certified at delta {cal.delta:g}: keep the "
            "strong model"
        )
    else:
        lines += [
            f"chosen   {validator} min: {number_text(cal.short_threshold)}  (sample quality "
            f"{rel(c.quality)}, escalation {c.escalation_rate:.1%}, "
            f"{per_1k(c.cost)} per 1,000 calls, {saves})",
            f"guarantee: {cal.guarantee}",
        ]
    lines.append(f"method: {cal.method}; delta {cal.delta:g}")
    naive_t = "-" if cal.naive_threshold is None else number_text(cal.naive_threshold)
    lines.append(
        f"naive    {validator} min: {naive_t}  (sample quality {rel(nv.quality)}, escalation "
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
