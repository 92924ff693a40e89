"""``cascade learn --task T [--store URL] [--write]``: fit, from the task's records, a model of
P(escalate | input) (``cascade.routing.fit``), print its held-out metrics and where it breaks
even; ``--write`` puts it beside the policy and adds the ``start_at`` rule that uses it."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from ..evals import write_learned
from ..exceptions import PolicyError
from ..policy import Policy, PolicySet
from ..routing import assess, break_even, examples_of, fit, held_out
from ._common import open_store, policies_default, probability

if TYPE_CHECKING:
    from ..routing import Assessment, BreakEven

__all__ = ["add_parser", "run_learn"]

MIN_RECORDS = 100
MIN_EACH = 10  # escalated and not escalated records, each


def add_parser(subparsers: Any) -> None:
    """Add ``learn`` to the ``cascade`` command's sub-parsers."""
    cmd = subparsers.add_parser("learn", help="learn which inputs to start at the strong model")
    cmd.add_argument("--task", required=True)
    cmd.add_argument(
        "--store", default=None,
        help="store URL (default: $CASCADE_STORE, else the embedded SQLite file)",
    )  # fmt: skip
    cmd.add_argument("--policies", default=policies_default(), help="policy directory")
    cmd.add_argument("--model", default=None, help="the rung to start at (default: the strongest)")
    cmd.add_argument(
        "--above", type=probability, default=None, help="threshold (default: the break-even)"
    )
    cmd.add_argument("--buckets", type=_buckets, default=1000, help="hashed feature weights")
    cmd.add_argument("--holdout", type=probability, default=0.2, help="share of records held out")
    cmd.add_argument("--limit", type=int, default=20_000, help="newest records read")
    cmd.add_argument("--min-records", type=int, default=MIN_RECORDS)
    cmd.add_argument("--write", action="store_true", help="write the model and the start_at rule")
    cmd.set_defaults(func=run_learn)


def _buckets(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be 1 to 1,000,000, got {text}")
    return value


def run_learn(args: argparse.Namespace) -> int:
    """``cascade learn``: 0 when a model was fitted (and written with --write), 1 when the
    records are too few or the break-even is unknown (nothing written)."""
    policy = PolicySet(args.policies).get(args.task)
    cheap, target = policy.models[0], args.model or policy.strongest
    if target not in policy.models[1:]:
        raise PolicyError(
            f"--model {target!r} is not a rung above {cheap!r}: {list(policy.models)}"
        )
    store = open_store(args.store)
    try:
        records = store.records(task=args.task, limit=args.limit, newest_first=True)
        examples, skipped = examples_of(records, cheap, target)
    finally:
        store.close()
    escalated = sum(e.escalated for e in examples)
    print(
        f"learn {args.task}: {len(examples):,} usable records ({escalated:,} escalated from "
        f"{cheap}); {skipped:,} left out (pre-routed, strong mode, or no {cheap} attempt)"
    )
    textless = sum(not e.text for e in examples)
    if textless:
        print(
            f"{textless:,} of them hold no input text (recorded under store_inputs: hash or "
            f"none; {args.task}'s policy now says store_inputs: {policy.spec.store_inputs}): the "
            "model reads the input's size only, not its words. Words need store_inputs: full "
            "or redacted; after that change, learn from the records written since (--limit N "
            "reads the newest N)"
        )
    if len(examples) < args.min_records or min(escalated, len(examples) - escalated) < MIN_EACH:
        print(
            f"too few records to learn from: need at least {args.min_records:,}, with "
            f"{MIN_EACH} escalated and {MIN_EACH} not; nothing written",
        )
        return 1
    test = [e for e in examples if held_out(e, args.holdout)]
    train = [e for e in examples if not held_out(e, args.holdout)]
    model = fit(train, task=args.task, buckets=args.buckets)
    even = break_even(examples)
    print(_break_even_line(policy, cheap, target, even))
    above = args.above if args.above is not None else (even.probability if even else None)
    if above is None:
        print("no threshold: pass --above to choose one; nothing written")
        return 1
    if not 0 < above < 1:
        raise PolicyError(f"--above must be between 0 and 1, got {above}")
    result = assess(model, test, examples, above)
    print(f"fitted on {len(train):,} records, measured on {len(test):,} held out:")
    print("\n".join(_assessment_lines(result, target)))
    if not args.write:
        return 0
    if result.saved_usd < 0:
        print("on the held-out calls pre-routing would cost more than it saves; nothing written")
        return 1
    if policy.path is None:
        raise PolicyError("the policy has no file to write to")
    name = f"_{args.task}.start.json"  # "_": never read as a policy of its own
    about = {
        "at": round(time.time()),
        "records": len(examples),
        "train": len(train),
        "held_out": len(test),
        "model": target,
        "break_even": None if even is None else round(even.probability, 6),
        "auc": None if result.auc is None else round(result.auc, 4),
        "brier": round(result.brier, 6),
        "base_rate": round(result.base_rate, 6),
    }
    written = model.model_copy(update={"trained": about})
    (policy.path.parent / name).write_text(
        json.dumps(written.model_dump(), separators=(",", ":")) + "\n", encoding="utf-8"
    )
    shown = round(above, 4)
    auc = "-" if result.auc is None else f"{result.auc:.3f}"
    write_learned(
        policy.path,
        model=target,
        learned=name,
        above=shown,
        note=f"AUC {auc}, {len(test)} held out",
    )
    Policy.load(policy.path)  # what was written loads
    print(
        f"wrote {policy.path.parent / name} and start_at: learned above {shown:g} in {policy.path}"
    )
    return 0


def _break_even_line(policy: Policy, cheap: str, target: str, even: BreakEven | None) -> str:
    if even is None:
        unknown = [m for m in (cheap, target) if policy.prices.get(m) is None]
        why = f"no known price of {', '.join(unknown)}" if unknown else "no record has both costs"
        return f"break-even unknown: {why}"
    estimated = f"; {target}'s cost estimated from {cheap}'s tokens on {even.estimated:,}"
    return (
        f"break-even: start at {target} when P(escalate) > {even.probability:.4f} = 1 - "
        f"cheap/strong = 1 - ${even.cheap_usd:.6g} / ${even.strong_usd:.6g} (mean cost per call "
        f"of each, from {even.examples:,} records' own prices{estimated if even.estimated else ''})"
    )


def _assessment_lines(a: Assessment, target: str) -> list[str]:
    auc = "unknown (one class only)" if a.auc is None else f"{a.auc:.3f}"
    others = a.records - a.escalated_records
    auc += f" over {a.escalated_records:,} escalated and {others:,} other held-out records"
    if a.auc is not None and min(a.escalated_records, others) < MIN_EACH:
        auc += " (too few of one kind to tell much)"
    lines = [
        f"  {a.calls:,.0f} calls ({a.records:,} records, each weighted by 1/inclusion "
        f"probability); escalation base rate {a.base_rate:.1%}",
        f"  AUC {auc}; Brier {a.brier:.4f} (predicting the base rate: {a.brier_base:.4f})",
    ]
    precision = "-" if a.precision is None else f"{a.precision:.1%}"
    recall = "-" if a.recall is None else f"{a.recall:.1%}"
    lines.append(
        f"  above {a.above:.4f}: {a.routed:.1%} of calls would start at {target}; "
        f"{precision} of those escalated; {recall} of escalations caught"
    )
    share = f" ({a.saved_usd / a.spend_usd:.1%})" if a.spend_usd else ""
    unknown = f"; {a.uncosted} routed records of unknown cost left out" if a.uncosted else ""
    lines.append(
        f"  money saved on the held-out calls: ${a.saved_usd:.6g} of ${a.spend_usd:.6g} spent"
        f"{share}{unknown}"
    )
    if a.saved_latency_s is None:
        lines.append(f"  latency saved: unknown (no record asked {target})")
    else:
        routed = a.routed * a.calls
        per = f", {a.saved_latency_s / routed:.3f} s per routed call" if routed else ""
        est = (
            f"; {target}'s latency taken as its mean {a.strong_latency_mean:.3f} s for "
            f"{a.latency_estimated} routed records that never asked it"
            if a.latency_estimated
            else ""
        )
        lines.append(f"  latency saved: {a.saved_latency_s:.3f} s in all{per}{est}")
    return lines
