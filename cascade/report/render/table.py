"""The report as plain text no wider than 80 columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...recording import language_label
from ..observation import observation_lines
from ..prerouted import pre_routed_lines
from ..suggest import span
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
    if t.costs_known:
        lines += wrap(
            f"cost {money(t.cost_usd)} vs {money(t.baseline_cost_usd)} with the strong model "
            f"alone: saved {money(t.savings_usd)} ({saved})", 2)  # fmt: skip
    else:
        lines += wrap(
            f"cost unknown, savings unknown: {t.uncosted_calls:,} "
            f"call{'' if t.uncosted_calls == 1 else 's'} used a model without a known price "
            "(add it to the policy's prices:)", 2)  # fmt: skip
    lines += wrap(
        f"latency p50 {ms(t.latency_p50_ms)}, p95 {ms(t.latency_p95_ms)}   tokens "
        f"{t.prompt_tokens:,} in, {t.completion_tokens:,} out", 2)  # fmt: skip
    if t.validators:
        lines.append("  failures by validator:")
        for v, n in t.validators.items():
            lines += wrap(f"{clip(v, 40):<40} {n:>8,} call{'' if n == 1 else 's'}", 4)
            for r in t.top_reasons.get(v, ())[:3]:
                lines += wrap(f"{r.calls:,}x {clip(r.example, 150)}", 6, 4)
    lines += pre_routed_lines(t.pre_routed, WIDTH)
    lines += _pattern_lines(t.patterns)
    lines += observation_lines(t.observation, WIDTH)
    return lines


def _pattern_lines(p: Patterns) -> list[str]:
    lines: list[str] = []
    if p.size_buckets:
        lines.append("  escalation rate by input size (prompt tokens, estimated calls, 95%):")
        for b in p.size_buckets:
            bar = "#" * round(b.rate * 30)
            ci = span(b.rate_low, b.rate_high)
            lines.append(f"    {b.label:<8} {b.calls:>10,.0f} {b.rate:>6.1%} {ci:>8}  {bar}")
    everyone = max((b.calls for b in p.size_buckets), default=0.0) and sum(
        b.calls for b in p.size_buckets
    )
    # A value nearly every call has (has_code=false) contrasts with nothing: leave it out.
    risky = [f for f in p.features if f.escalations and 5 <= f.calls < 0.95 * everyone]
    if risky:
        lines.append("  escalation rate by input feature (estimated calls, 95%):")
        for f in sorted(risky, key=lambda f: -f.rate_low)[:6]:
            value = language_label(f.value) if f.feature == "language" else f.value
            label = clip(f"{f.feature}={value}", 30)
            lines.append(
                f"    {label:<30} {f.calls:>9,.0f} calls {f.rate:>6.1%} "
                f"{span(f.rate_low, f.rate_high):>8}"
            )
    if p.terms:
        lines += wrap(
            f"words whose inputs escalate more often ({p.tested:,} terms and features tested, "
            "false discovery rate 5%; rate intervals adjusted for the selection):",
            2,
            4,
        )
        for t in p.terms:
            words = " / ".join(clip(m, 24) for m in (t.members or (t.term,))[:5])
            more = f" (+{len(t.members) - 5})" if len(t.members) > 5 else ""
            lines += wrap(
                f"{words}{more}: {span(t.rate_low, t.rate_high)} of {t.inputs:,.0f} inputs", 4, 4
            )
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
