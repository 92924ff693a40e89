"""Renderers of a ``Report``: ``table`` (80 columns), ``json``, ``csv`` and ``html``.

JSON schema, version 1 (``cascade report --format json``). Fields are only ever added
within a version; a removal or a change of meaning bumps ``schema_version``::

    {
      "schema_version": 1,
      "generated_at": "2024-05-08T10:00:00Z",    # ISO 8601, UTC
      "since": "2024-05-01T00:00:00Z" | null,     # the span reported (null: open)
      "until": "2024-05-08T00:00:00Z" | null,
      "corrupt_records": 0,                        # stored records skipped as unreadable
      "tasks": [TASK, ...],                        # one per task, sorted by name
      "overall": TASK                              # every task together, "task": "*"
    }

    TASK = {
      "task": "extract",
      "calls": 100, "escalations": 23, "escalation_rate": 0.23, "not_ok": 1,
      "cost_usd": 0.033, "baseline_cost_usd": 0.1,  # baseline: the strong model alone
      "savings_usd": 0.067, "savings_pct": 0.67,     # savings_pct: null without a baseline
      "latency_p50_ms": 250, "latency_p95_ms": 1000, # bucket upper bounds; null: no calls,
                                                     # or beyond the last finite bound
      "prompt_tokens": 12000, "completion_tokens": 3000,
      "validators": {"schema": 23},                  # failures per validator or provider:<kind>
      "top_reasons": {"schema": [{"reason": "confidence # < #", "calls": 12,
                                  "example": "confidence 0.62 < 0.8"}]},
      "daily": [{"day": "2024-05-01", "calls": 100, "escalations": 23,
                 "cost_usd": 0.033, "baseline_cost_usd": 0.1}],
      "patterns": {
        "sampled_records": 30,
        "pass_sampling_rate": 0.1 | null,            # null: no passing call was sampled
        "size_buckets": [{"label": "2k-4k", "calls": 200.0, "escalations": 170, "rate": 0.85}],
        "features": [{"feature": "language", "value": "de", "calls": 40.0,
                      "escalations": 30, "rate": 0.75}],
        "terms": [{"term": "refund", "z": 5.2, "escalated": 40, "passing": 12.0}],
        "terms_by_validator": {"json_schema": [TERM, ...]},
        "reasons": [{"validator": "schema", "reason": "...", "calls": 12, "example": "..."}],
        "duplicates": [{"size": 5, "example": "user: ..."}],
        "suggestions": [{"kind": "route_by_size", "message": "...",
                         "projected_savings_usd_per_1k_calls": 0.12 | null,
                         "evidence": {...}}]
      },
      "observation": {                               # only where calls were observed
        "calls": 120, "escalations": 30,             # observed; the cascade would escalate
        "escalation_rate": 0.25, "costed_calls": 120, # costed: both costs known
        "strong_cost_usd": 0.12, "projected_cost_usd": 0.05,  # real strong vs cascade cost
        "savings_usd": 0.07, "savings_pct": 0.58 | null,
        "savings_usd_per_1k_calls": 0.58 | null,
        "accepted": 90, "compared": 88, "agreed": 86,  # would-be-accepted answers compared
        "agreement": 0.977 | null, "agreement_ci95": [0.92, 0.994] | null,  # Wilson
        "top_reasons": [{"reason": "json_schema: ...", "calls": 12, "example": "..."}],
        "action": "switch" | "keep_observing" | "do_not_switch",
        "recommendation": "switch to cascade: projected savings 58% (...), agreement ..."
      }
    }

Size-bucket and feature ``calls`` are estimates (sampled passing calls re-weighted by the
sampling rate). CSV: one row per task per day, columns ``CSV_COLUMNS``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from ._observe_report import observation_lines, observation_to_dict

if TYPE_CHECKING:
    from ._patterns import Patterns
    from .report import Report, TaskReport

__all__ = ["CSV_COLUMNS", "SCHEMA_VERSION", "Format", "render", "report_to_dict"]

SCHEMA_VERSION = 1
CSV_COLUMNS = (
    "task", "day", "calls", "escalations", "escalation_rate", "cost_usd", "baseline_cost_usd",
    "savings_pct",
)  # fmt: skip
WIDTH = 80
Format = Literal["table", "json", "csv", "html"]


def render(report: Report, fmt: Format) -> str:
    """The report as text in format ``fmt``; raises ValueError for an unknown format."""
    if fmt == "table":
        return render_table(report)
    if fmt == "json":
        return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        from ._render_html import render_html

        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r}; use table, json, csv or html")


def iso(ts: float | None) -> str | None:
    """A unix time as ISO 8601 UTC text (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-able values, in the schema of the module docstring."""
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(report.generated_at),
        "since": iso(report.since),
        "until": iso(report.until),
        "corrupt_records": report.corrupt_records,
        "tasks": [_task_dict(t) for t in report.tasks],
        "overall": _task_dict(report.overall),
    }


def _task_dict(t: TaskReport) -> dict[str, Any]:
    task = {
        "task": t.task,
        "calls": t.calls,
        "escalations": t.escalations,
        "escalation_rate": t.escalation_rate,
        "not_ok": t.not_ok,
        "cost_usd": t.cost_usd,
        "baseline_cost_usd": t.baseline_cost_usd,
        "savings_usd": t.savings_usd,
        "savings_pct": t.savings_pct,
        "latency_p50_ms": _finite(t.latency_p50_ms),
        "latency_p95_ms": _finite(t.latency_p95_ms),
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "validators": dict(t.validators),
        "top_reasons": {v: [r._asdict() for r in rs] for v, rs in t.top_reasons.items()},
        "daily": [d._asdict() for d in t.daily],
        "patterns": _patterns_dict(t.patterns),
    }
    if t.observation is not None:  # added in version 1: absent, not null, where none was seen
        task["observation"] = observation_to_dict(t.observation)
    return task


def _patterns_dict(p: Patterns) -> dict[str, Any]:
    return {
        "sampled_records": p.sampled_records,
        "pass_sampling_rate": p.pass_sampling_rate,
        "size_buckets": [b._asdict() for b in p.size_buckets],
        "features": [f._asdict() for f in p.features],
        "terms": [t._asdict() for t in p.terms],
        "terms_by_validator": {
            v: [t._asdict() for t in ts] for v, ts in p.terms_by_validator.items()
        },
        "reasons": [{"validator": v, **r._asdict()} for v, r in p.reasons],
        "duplicates": [d._asdict() for d in p.duplicates],
        "suggestions": [{**s._asdict(), "evidence": dict(s.evidence)} for s in p.suggestions],
    }


def render_csv(report: Report) -> str:
    """One row per task per day, with a header row (``CSV_COLUMNS``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in report.tasks:
        for d in t.daily:
            rate = d.escalations / d.calls if d.calls else 0.0
            saved = (
                (d.baseline_cost_usd - d.cost_usd) / d.baseline_cost_usd
                if d.baseline_cost_usd
                else ""
            )
            writer.writerow(
                (t.task, d.day, d.calls, d.escalations, f"{rate:.4f}", f"{d.cost_usd:.6f}",
                 f"{d.baseline_cost_usd:.6f}", saved if saved == "" else f"{saved:.4f}")
            )  # fmt: skip
    return out.getvalue()


# --- table ---------------------------------------------------------------------------------


def _wrap(text: str, indent: int, hang: int = 2) -> list[str]:
    """``text`` wrapped to WIDTH, indented; continuation lines ``hang`` further in."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + hang),
        break_on_hyphens=False,
    ) or [""]


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def money(x: float) -> str:
    """Dollars with enough decimals for sub-cent costs."""
    return f"${x:,.2f}" if abs(x) >= 100 else f"${x:,.4f}"


def ms(x: float | None) -> str:
    """A latency bound in milliseconds as text ('-' for none, '>60000' past the last)."""
    if x is None:
        return "-"
    return f"{x:,.0f} ms" if math.isfinite(x) else ">60,000 ms"


def render_table(report: Report) -> str:
    """The report as plain text no wider than 80 columns."""
    span = f"{iso(report.since) or 'the beginning'} to {iso(report.until) or 'now'}"
    lines = _wrap(f"cascade report: {span} (generated {iso(report.generated_at)})", 0)
    if report.corrupt_records:
        lines += _wrap(f"{report.corrupt_records} unreadable stored records were skipped", 0)
    if not report.tasks:
        lines += ["", "no calls recorded in this span"]
    sections = list(report.tasks)
    if len(report.tasks) > 1:
        sections.append(report.overall)
    for t in sections:
        lines += ["", *_task_lines(t)]
    return "\n".join(lines) + "\n"


def _task_lines(t: TaskReport) -> list[str]:
    name = "all tasks" if t.task == "*" else f"task {t.task}"
    lines = _wrap(name, 0, 4)
    lines.append("-" * min(WIDTH, max(len(x) for x in lines)))
    saved = "-" if t.savings_pct is None else f"{t.savings_pct:.1%}"
    lines += _wrap(
        f"calls {t.calls:,}   escalations {t.escalations:,} ({t.escalation_rate:.1%})   "
        f"not ok {t.not_ok:,}", 2)  # fmt: skip
    lines += _wrap(
        f"cost {money(t.cost_usd)} vs {money(t.baseline_cost_usd)} with the strong model "
        f"alone: saved {money(t.savings_usd)} ({saved})", 2)  # fmt: skip
    lines += _wrap(
        f"latency p50 {ms(t.latency_p50_ms)}, p95 {ms(t.latency_p95_ms)}   tokens "
        f"{t.prompt_tokens:,} in, {t.completion_tokens:,} out", 2)  # fmt: skip
    if t.validators:
        lines.append("  failures by validator:")
        for v, n in t.validators.items():
            lines += _wrap(f"{_clip(v, 40):<40} {n:>8,} call{'' if n == 1 else 's'}", 4)
            for r in t.top_reasons.get(v, ())[:3]:
                lines += _wrap(f"{r.calls:,}x {_clip(r.example, 150)}", 6, 4)
    lines += _pattern_lines(t.patterns)
    lines += observation_lines(t.observation, WIDTH)
    return lines


def _pattern_lines(p: Patterns) -> list[str]:
    lines: list[str] = []
    if p.size_buckets:
        lines.append("  escalation rate by input size (prompt tokens, estimated calls):")
        for b in p.size_buckets:
            bar = "#" * round(b.rate * 30)
            lines.append(f"    {b.label:<8} {b.calls:>10,.0f} {b.rate:>7.1%}  {bar}")
    everyone = max((b.calls for b in p.size_buckets), default=0.0) and sum(
        b.calls for b in p.size_buckets
    )
    # A value nearly every call has (has_code=false) contrasts with nothing: leave it out.
    risky = [f for f in p.features if f.escalations and 5 <= f.calls < 0.95 * everyone]
    if risky:
        lines.append("  escalation rate by input feature:")
        for f in sorted(risky, key=lambda f: -f.rate)[:6]:
            label = _clip(f"{f.feature}={f.value}", 30)
            lines.append(f"    {label:<30} {f.calls:>10,.0f} calls {f.rate:>7.1%}")
    if p.terms:
        words = ", ".join(f"{_clip(t.term, 30)} (z {t.z:.1f})" for t in p.terms)
        lines += _wrap(f"words in escalated inputs: {words}", 2, 4)
    for v, terms in p.terms_by_validator.items():
        words = ", ".join(_clip(t.term, 30) for t in terms[:5])
        lines += _wrap(f"when '{_clip(v, 30)}' escalates: {words}", 4, 4)
    for d in p.duplicates[:3]:
        lines += _wrap(
            f"{d.size} near-duplicate escalated inputs, e.g. {_clip(d.example, 120)}", 2, 4
        )
    if p.suggestions:
        lines.append("  suggestions:")
        for s in p.suggestions:
            lines += _wrap(f"* {s.message}", 4, 2)
    return lines
