"""Learned start (``cascade learn``): the scoring cost per call, and pre-routing's effect on
cost and p95 latency on recorded model outputs.

    python benchmarks/learned.py                   # data: $CASCADE_DATA or ../shared/data
    python benchmarks/learned.py --scoring-only

Scoring: ``StartModel.of_messages`` (what the engine calls once per request when a policy has
a learned ``start_at`` rule) with a fitted 1,000-bucket model, on requests of several sizes and
numbers of turns, best of 5 repeats of 500 calls; beside it the same interpreter's time for
``sum(range(1000))``, so a reader can tell how fast the machine was at the time.

Pre-routing, per recorded dataset with a train and a test split (MMLU, TriviaQA; the
recordings carry each model's cost and latency): the cascade gpt-4o-mini -> gpt-4o escalates
when the cheap model's recorded confidence is under the threshold whose train-split cascade
accuracy just reaches 97% of gpt-4o's (the naive threshold: what matters here is which inputs
escalate, not the guarantee). A model of P(escalate | input) is fitted on the train split's
inputs (``cascade.routing.fit``, the one ``cascade learn`` uses, on the same hashed features)
and applied to the test split at the break-even (1 - cheap/strong, from the train split's
recorded costs) and at lower thresholds. Cost and latency per query: cheap first, the cheap
call, plus the strong one where it escalates (latencies add up); pre-routed, the strong call
alone. "oracle" pre-routes exactly the test queries that escalate: the ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

from cascade.routing import Example, fit
from cascade.routing.fit import auc
from cascade.routing.learned import hashed, message_turns

CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"
TARGET = 0.97


def _data_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("CASCADE_DATA", here.parent / "shared" / "data"))


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": row["system_prompt"]},
        {"role": "user", "content": row["user_prompt"]},
    ]


def _threshold(rows: list[dict[str, Any]]) -> float:
    """The least strict confidence threshold whose cascade accuracy on ``rows`` reaches
    TARGET x gpt-4o's (escalate when the cheap model's confidence is below it)."""
    strong = sum(r["models"][STRONG]["correct"] for r in rows) / len(rows)
    for t in sorted({r["models"][CHEAP]["raw_confidence"] for r in rows}):
        right = sum(
            r["models"][CHEAP]["correct"]
            if r["models"][CHEAP]["raw_confidence"] >= t
            else r["models"][STRONG]["correct"]
            for r in rows
        )
        if right / len(rows) >= TARGET * strong:
            return float(t)
    return float("inf")


def _example(i: int, row: dict[str, Any], threshold: float) -> Example:
    cheap, strong = row["models"][CHEAP], row["models"][STRONG]
    messages = _messages(row)
    up = cheap["raw_confidence"] < threshold
    return Example(
        id=str(i),
        hashes=tuple(hashed(message_turns(messages), sum(len(m["content"]) for m in messages))),
        escalated=up,
        weight=1.0,
        cheap_cost=cheap["cost_usd"],
        cheap_latency=cheap["latency_ms"] / 1000,
        first_cost=cheap["cost_usd"] + strong["cost_usd"] * up,
        first_latency=(cheap["latency_ms"] + strong["latency_ms"] * up) / 1000,
        strong_cost=strong["cost_usd"],
        strong_latency=strong["latency_ms"] / 1000,
        strong_estimated=False,
    )


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def _outcome(test: list[Example], routed: list[bool]) -> tuple[float, float, float]:
    cost = sum(e.strong_cost if r else e.first_cost for e, r in zip(test, routed, strict=True))
    lat = [e.strong_latency if r else e.first_latency for e, r in zip(test, routed, strict=True)]
    return cost, _p95(lat), sum(routed) / len(routed)  # type: ignore[misc, arg-type]


def prerouting(data: Path) -> None:
    print("## pre-routing on recorded outputs (cost and p95 latency of the test split)\n")
    for name in ("mmlu", "triviaqa"):
        train_rows = _rows(data / "recorded" / f"{name}_qwen_oai_train.jsonl")
        test_rows = _rows(data / "recorded" / f"{name}_qwen_oai_test.jsonl")
        t = _threshold(train_rows)
        train = [_example(i, r, t) for i, r in enumerate(train_rows)]
        test = [_example(i, r, t) for i, r in enumerate(test_rows)]
        model = fit(train, task=name)
        cheap = sum(e.cheap_cost or 0.0 for e in train)
        strong = sum(e.strong_cost or 0.0 for e in train)
        even = 1 - cheap / strong
        scores = [model.probability(e.hashes) for e in test]
        area = auc(scores, [e.escalated for e in test], [1.0] * len(test))
        base = sum(e.escalated for e in test) / len(test)
        up = sum(e.escalated for e in train) / len(train)
        print(
            f"{name}: threshold {t:.4g} (train escalation {up:.1%}, "
            f"test {base:.1%}); {len(train)} train, {len(test)} test queries; held-out AUC "
            f"{'-' if area is None else f'{area:.3f}'}; break-even 1 - cheap/strong = {even:.4f}\n"
        )
        print(
            "| start at gpt-4o | pre-routed | cost | vs cheap first | p95 latency | vs cheap first |"  # noqa: E501
        )
        print("|---|---|---|---|---|---|")
        never = _outcome(test, [False] * len(test))
        rows = [("never (cheap first)", [False] * len(test))]
        for above in (even, 0.7, 0.5, 0.3):
            label = f"P > {above:.4f}" + (" (break-even)" if above == even else "")
            rows.append((label, [s > above for s in scores]))
        rows.append(("oracle (exactly the escalating ones)", [e.escalated for e in test]))
        rows.append(("always (all-strong)", [True] * len(test)))
        for label, routed in rows:
            cost, p95, share = _outcome(test, routed)
            print(
                f"| {label} | {share:.1%} | ${cost:.4f} | {cost / never[0] - 1:+.1%} | "
                f"{p95:.3f} s | {p95 / never[1] - 1:+.1%} |"
            )
        print()


def scoring(data: Path) -> None:
    rows = _rows(data / "recorded" / "triviaqa_qwen_oai_train.jsonl")
    examples = [_example(i, r, 0.5) for i, r in enumerate(rows)]
    model = fit(examples, task="bench", buckets=1000)
    corpus = " ".join(r["user_prompt"] for r in rows)  # distinct words, as real text has
    print("## scoring one call, 1,000-bucket model (best of 5 x 500 calls)\n")
    ref = min(timeit.repeat(lambda: sum(range(1000)), number=500, repeat=5)) / 500
    print(f"reference: sum(range(1000)) takes {ref * 1e6:.1f} µs on this machine now\n")
    print("| input | µs per call |")
    print("|---|---|")
    for label, messages in _inputs(corpus):
        best = min(timeit.repeat(lambda m=messages: model.of_messages(m), number=500, repeat=5))
        print(f"| {label} | {best / 500 * 1e6:.1f} |")
    print()


def _inputs(corpus: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Requests of several sizes and shapes: one user message of 200 to 100,000 characters,
    one of 4,000 outside ASCII (curly quotes, no-break spaces), and turns of 5,000,000."""

    def cut(chars: int) -> str:
        return (corpus * (chars // len(corpus) + 1))[:chars]

    def asked(*turns: str) -> list[dict[str, str]]:
        roles = ("user", "assistant")
        return [{"role": "system", "content": "Answer."}] + [
            {"role": roles[i % 2], "content": t} for i, t in enumerate(turns)
        ]

    typographic = cut(4000).replace("'", "\u2019").replace(", ", ",\u00a0")
    huge = cut(5_000_000)
    return [
        *((f"1 turn of {chars:,} chars", asked(cut(chars))) for chars in (200, 4000, 100_000)),
        ("1 turn of 4,000 chars, curly quotes and no-break spaces", asked(typographic)),
        ("2 turns of 5,000,000 chars", asked(huge, huge)),
        ("3 turns of 5,000,000 chars", asked(huge, huge, huge)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scoring-only", action="store_true")
    args = ap.parse_args()
    data = _data_dir()
    if not (data / "recorded").is_dir():
        print(f"no recorded data at {data} (set CASCADE_DATA)", file=sys.stderr)
        return 2
    scoring(data)
    if not args.scoring_only:
        prerouting(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
