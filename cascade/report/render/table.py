"""The report as plain text no wider than 80 columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..observation import observation_lines
from ._format import WIDTH, clip, iso, money, ms, wrap

if TYPE_CHECKING:
    from ..build import Report, TaskReport
    from ..values import Patterns

__all__ = ["render_table"]


def render_table(report: Report) -> str:
    """The report as plain text no wider than 80 columns."""
    span = f"{iso(report.since) or 'the beginning'} to {iso(report.until) or 'now'}"
    lines = wrap(f"cascade report: {span} (generated {iso(report.generated_at)})", 0)
    if report.corrupt_records:
        lines += wrap(f"{report.corrupt_records} unreadable stored records were skipped", 0)
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
    lines = wrap(name, 0, 4)
    lines.append("-" * min(WIDTH, max(len(x) for x in lines)))
    saved = "-" if t.savings_pct is None else f"{t.savings_pct:.1%}"
    lines += wrap(
        f"calls {t.calls:,}   escalations {t.escalations:,} ({t.escalation_rate:.1%})   "
        f"not ok {t.not_ok:,}", 2)  # fmt: skip
    lines += wrap(
        f"cost {money(t.cost_usd)} vs {money(t.baseline_cost_usd)} with the strong model "
        f"alone: saved {money(t.savings_usd)} ({saved})", 2)  # fmt: skip
    lines += wrap(
        f"latency p50 {ms(t.latency_p50_ms)}, p95 {ms(t.latency_p95_ms)}   tokens "
        f"{t.prompt_tokens:,} in, {t.completion_tokens:,} out", 2)  # fmt: skip
    if t.validators:
        lines.append("  failures by validator:")
        for v, n in t.validators.items():
            lines += wrap(f"{clip(v, 40):<40} {n:>8,} call{'' if n == 1 else 's'}", 4)
            for r in t.top_reasons.get(v, ())[:3]:
                lines += wrap(f"{r.calls:,}x {clip(r.example, 150)}", 6, 4)
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
            label = clip(f"{f.feature}={f.value}", 30)
            lines.append(f"    {label:<30} {f.calls:>10,.0f} calls {f.rate:>7.1%}")
    if p.terms:
        words = ", ".join(f"{clip(t.term, 30)} (z {t.z:.1f})" for t in p.terms)
        lines += wrap(f"words in escalated inputs: {words}", 2, 4)
    for v, terms in p.terms_by_validator.items():
        words = ", ".join(clip(t.term, 30) for t in terms[:5])
        lines += wrap(f"when '{clip(v, 30)}' escalates: {words}", 4, 4)
    for d in p.duplicates[:3]:
        lines += wrap(
            f"{d.size} near-duplicate escalated inputs, e.g. {clip(d.example, 120)}", 2, 4
        )
    if p.suggestions:
        lines.append("  suggestions:")
        for s in p.suggestions:
            lines += wrap(f"* {s.message}", 4, 2)
    return lines
