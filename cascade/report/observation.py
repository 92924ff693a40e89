"""What observe mode saw: would the cascade have saved money without changing the answers?

In observe mode the strong model answers and the cheap model runs beside it; each observed
call's record carries the would-be decision as its ``observation``. ``ObservationCollector``
reads those records once (counters and a bounded reason table, so memory does not grow with
the number of records) and ``observation_of`` turns one or more collectors into a frozen
``ObservationSummary`` with a recommendation. The renderers' helpers for it are at the end.
"""

from __future__ import annotations

import heapq
import math
import textwrap
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from .collect import normalise_reason
from .values import ReasonCount

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..events import CallRecord

__all__ = [
    "Action",
    "ObservationSummary",
    "ObservationCollector",
    "observation_lines",
    "observation_of",
    "observation_to_dict",
    "wilson_interval",
]

Action = Literal["switch", "keep_observing", "do_not_switch"]
Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal
_REASON_CHARS = 200


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``successes / n`` (None when ``n`` is 0).

    Wilson rather than the normal approximation: it stays inside [0, 1] and is honest at
    the proportions near 1 that agreement lives at, where ``p ± z·se`` collapses to a point.
    """
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0 or n successes one bound is exact; rounding would leave it a hair inside.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True, slots=True)
class ObservationSummary:
    """The observed calls of a task (or of all tasks): what the cascade would have done.

    ``escalations`` are the calls the cascade would have escalated. Costs are over the
    ``costed_calls`` whose strong and projected costs are both known: ``strong_cost_usd``
    is what the strong model really cost, ``projected_cost_usd`` what the cascade would
    have (the cheap model, plus the strong one where it would escalate); ``savings_*`` is
    the difference (``savings_pct`` and ``savings_usd_per_1k_calls`` None without costs).
    ``agreement`` is the share of the ``compared`` would-be-accepted answers that agreed
    with the strong model's (``agreed`` of them), with its Wilson 95% interval
    ``agreement_low``..``agreement_high``; ``accepted`` counts every would-be-accepted
    answer, compared or not (not when either model errored). ``top_reasons`` are the most
    frequent would-be escalation reasons; ``action``/``recommendation`` the verdict.
    With a judge (``agreement: {comparator: judge}``), ``judged`` calls had a verdict,
    ``judge_unknown`` of them ``unknown`` (the judge errored or answered off-format),
    ``verdicts`` counts each verdict (``equivalent``, ``cheap_better``, ...), and
    ``judge_cost_usd`` is what judging cost over all observed calls.
    """

    calls: int = 0
    escalations: int = 0
    escalation_rate: float = 0.0
    costed_calls: int = 0
    strong_cost_usd: float = 0.0
    projected_cost_usd: float = 0.0
    savings_usd: float = 0.0
    savings_pct: float | None = None
    savings_usd_per_1k_calls: float | None = None
    accepted: int = 0
    compared: int = 0
    agreed: int = 0
    agreement: float | None = None
    agreement_low: float | None = None
    agreement_high: float | None = None
    top_reasons: tuple[ReasonCount, ...] = ()
    action: Action = "keep_observing"
    recommendation: str = ""
    judged: int = 0
    judge_unknown: int = 0
    judge_cost_usd: float = 0.0
    verdicts: tuple[tuple[str, int], ...] = ()  # (verdict, calls), most frequent first


class ObservationCollector:
    """Counters of one task's observed records, filled by ``add`` in the report's one pass.

    The reason table is pruned to its most frequent half when it passes ``max_reasons``,
    so counts of rare reasons are approximate.
    """

    __slots__ = (
        "accepted",
        "agreed",
        "calls",
        "compared",
        "costed",
        "escalations",
        "judge_cost",
        "judge_unknown",
        "judged",
        "max_reasons",
        "projected",
        "reasons",
        "strong",
        "verdicts",
    )  # fmt: skip

    def __init__(self, *, max_reasons: int = 500) -> None:
        self.max_reasons = max_reasons
        self.calls = self.escalations = self.costed = 0
        self.accepted = self.compared = self.agreed = 0
        self.strong = self.projected = self.judge_cost = 0.0
        self.judged = self.judge_unknown = 0
        self.verdicts: dict[str, int] = {}
        self.reasons: dict[str, list[Any]] = {}  # normalised reason -> [calls, example]

    def add(self, record: CallRecord) -> None:
        """Count one record; records that are not observed calls are ignored."""
        info = record.observation if record.mode == "observe" else None
        if info is None:
            return
        self.calls += 1
        if info.verdict is not None:
            self.judged += 1
            self.judge_unknown += info.verdict == "unknown"
            self.verdicts[info.verdict] = self.verdicts.get(info.verdict, 0) + 1
            self.judge_cost += info.judge_cost_usd or 0.0
        strong, projected = info.strong_cost_usd, info.projected_cost_usd
        if strong is not None and projected is not None:
            self.costed += 1
            self.strong += strong
            self.projected += projected
        if info.decision != "accept":
            self.escalations += 1
            self._reasons(info.reasons)
            return
        self.accepted += 1
        agree = info.agree
        if agree is not None:  # None: one model errored, nothing to compare
            self.compared += 1
            self.agreed += agree

    def _reasons(self, reasons: Iterable[str]) -> None:
        seen: set[str] = set()
        for reason in reasons:
            norm = normalise_reason(str(reason))
            if norm in seen:  # a re-ask failing the same way counts the call once
                continue
            seen.add(norm)
            entry = self.reasons.get(norm)
            if entry is None:
                entry = self.reasons[norm] = [0, str(reason)[:_REASON_CHARS]]
            entry[0] += 1
            if len(self.reasons) > self.max_reasons:  # halving keeps pruning amortised O(1)
                keep = heapq.nlargest(
                    self.max_reasons // 2, self.reasons.items(), key=lambda kv: kv[1][0]
                )
                self.reasons = dict(keep)


def observation_of(
    collectors: Iterable[ObservationCollector],
    *,
    threshold: float = 0.95,
    min_calls: int = 100,
    top: int = 5,
) -> ObservationSummary | None:
    """The ``ObservationSummary`` of the collectors' records together (None if none).

    Args:
        threshold: the least lower bound of the agreement's 95% interval to recommend
            switching to the cascade.
        min_calls: the fewest observed calls to recommend anything but observing longer.
        top: how many would-be escalation reasons to keep.
    """
    cs = list(collectors)
    calls = sum(c.calls for c in cs)
    if not calls:
        return None
    costed = sum(c.costed for c in cs)
    strong = sum(c.strong for c in cs)
    projected = sum(c.projected for c in cs)
    compared, agreed = sum(c.compared for c in cs), sum(c.agreed for c in cs)
    escalations = sum(c.escalations for c in cs)
    reasons: dict[str, list[Any]] = {}
    for c in cs:
        for norm, (n, example) in c.reasons.items():
            reasons.setdefault(norm, [0, example])[0] += n
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top]
    interval = wilson_interval(agreed, compared)
    savings = strong - projected
    obs = ObservationSummary(
        calls=calls,
        escalations=escalations,
        escalation_rate=escalations / calls,
        costed_calls=costed,
        strong_cost_usd=strong,
        projected_cost_usd=projected,
        savings_usd=savings,
        savings_pct=savings / strong if strong else None,
        savings_usd_per_1k_calls=savings / costed * 1000 if costed else None,
        accepted=sum(c.accepted for c in cs),
        compared=compared,
        agreed=agreed,
        agreement=agreed / compared if compared else None,
        agreement_low=interval[0] if interval else None,
        agreement_high=interval[1] if interval else None,
        top_reasons=tuple(ReasonCount(norm, n, ex) for norm, (n, ex) in ranked),
        judged=sum(c.judged for c in cs),
        judge_unknown=sum(c.judge_unknown for c in cs),
        judge_cost_usd=sum(c.judge_cost for c in cs),
        verdicts=_verdicts(cs),
    )
    action, message = _recommend(obs, threshold, min_calls)
    return replace(obs, action=action, recommendation=message)


def _verdicts(cs: Sequence[ObservationCollector]) -> tuple[tuple[str, int], ...]:
    total: dict[str, int] = {}
    for c in cs:
        for v, n in c.verdicts.items():
            total[v] = total.get(v, 0) + n
    return tuple(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _ci(low: float, high: float) -> str:
    return f"95% CI {low * 100:.1f}\u2013{high:.1%}"  # an en dash, as ranges are written


def _usd(x: float) -> str:
    # Savings per 1,000 calls run from fractions of a cent to dollars: keep two figures.
    sign, x = ("-" if x < 0 else ""), abs(x)
    return f"{sign}${x:,.2f}" if x >= 0.095 else f"{sign}${x:.2g}"


def _recommend(o: ObservationSummary, threshold: float, min_calls: int) -> tuple[Action, str]:
    """Switch when agreement is surely high enough and the cascade is cheaper."""
    savings = (
        "unknown (no observed call has known costs)"
        if o.savings_pct is None or o.savings_usd_per_1k_calls is None
        else f"{o.savings_pct:.0%} ({_usd(o.savings_usd_per_1k_calls)} per 1,000 calls)"
    )
    if o.agreement is None or o.agreement_low is None or o.agreement_high is None:
        agreement = "unknown (no would-be-accepted answer was compared)"
    else:
        agreement = f"{_pct(o.agreement)} ({_ci(o.agreement_low, o.agreement_high)})"
    figures = f"projected savings {savings}, agreement {agreement}"
    if o.calls < min_calls:
        return "keep_observing", (
            f"keep observing: {o.calls:,} observed calls, at least {min_calls:,} needed; "
            f"so far {figures}"
        )
    if o.savings_pct is None:
        return "keep_observing", f"keep observing: {figures}"
    if o.savings_usd <= 0:
        return "do_not_switch", f"do not switch: the cascade would not save; {figures}"
    if o.agreement is None or o.agreement_low is None:
        return "keep_observing", f"keep observing: {figures}"
    if o.agreement_low >= threshold:
        return "switch", f"switch to cascade: {figures}"
    if o.agreement >= threshold:  # more observations may narrow the interval above it
        return "keep_observing", (
            f"keep observing: {figures}; the lower bound is below {_pct(threshold)}"
        )
    return "do_not_switch", f"do not switch: agreement {agreement} below {_pct(threshold)}"


# --- rendering helpers (used by the renderers in render/) ----------------------------------


def observation_to_dict(o: ObservationSummary | None) -> dict[str, Any] | None:
    """The observation as JSON-able values (the schema is in ``render``'s docstring)."""
    if o is None:
        return None
    return {
        "calls": o.calls,
        "escalations": o.escalations,
        "escalation_rate": o.escalation_rate,
        "costed_calls": o.costed_calls,
        "strong_cost_usd": o.strong_cost_usd,
        "projected_cost_usd": o.projected_cost_usd,
        "savings_usd": o.savings_usd,
        "savings_pct": o.savings_pct,
        "savings_usd_per_1k_calls": o.savings_usd_per_1k_calls,
        "accepted": o.accepted,
        "compared": o.compared,
        "agreed": o.agreed,
        "agreement": o.agreement,
        "agreement_ci95": (
            None
            if o.agreement_low is None or o.agreement_high is None
            else [o.agreement_low, o.agreement_high]
        ),
        "top_reasons": [r._asdict() for r in o.top_reasons],
        "action": o.action,
        "recommendation": o.recommendation,
        "judged": o.judged,
        "judge_unknown": o.judge_unknown,
        "judge_cost_usd": o.judge_cost_usd,
        "judge_cost_per_call_usd": o.judge_cost_usd / o.calls if o.calls else None,
        "verdicts": dict(o.verdicts),
    }


def observation_lines(o: ObservationSummary | None, width: int = 80) -> list[str]:
    """The observation as table lines no wider than ``width`` (none without one)."""
    if o is None:
        return []

    def wrap(text: str, indent: int, hang: int = 2) -> list[str]:
        pad = " " * indent
        return textwrap.wrap(
            text, width, initial_indent=pad, subsequent_indent=pad + " " * hang,
            break_on_hyphens=False,
        )  # fmt: skip

    lines = ["  observation (the cheap model watched beside the strong one):"]
    lines += wrap(
        f"observed {o.calls:,} calls; the cascade would escalate {o.escalations:,} "
        f"({_pct(o.escalation_rate)})", 4)  # fmt: skip
    saved = "-" if o.savings_pct is None else _pct(o.savings_pct)
    lines += wrap(
        f"cost ${o.strong_cost_usd:,.4f} with the strong model vs ${o.projected_cost_usd:,.4f} "
        f"projected: saves ${o.savings_usd:,.4f} ({saved})", 4)  # fmt: skip
    if o.agreement is not None and o.agreement_low is not None and o.agreement_high is not None:
        lines += wrap(
            f"agreement of would-be-accepted answers {o.agreed:,}/{o.compared:,} = "
            f"{_pct(o.agreement)} ({_ci(o.agreement_low, o.agreement_high)})",
            4)  # fmt: skip
    if o.judged:
        lines += wrap(
            f"judge: {o.judged:,} verdicts ("
            + ", ".join(f"{v.replace('_', ' ')} {n:,}" for v, n in o.verdicts if v != "unknown")
            + f"; {o.judge_unknown:,} unknown), "
            f"${o.judge_cost_usd:,.4f} in all, ${o.judge_cost_usd / o.calls * 1000:,.4f} per "
            "1,000 observed calls", 4)  # fmt: skip
    if o.top_reasons:
        lines.append("    would escalate because:")
        for r in o.top_reasons[:3]:
            example = " ".join(r.example.split())
            lines += wrap(f"{r.calls:,}x {example[:150]}", 6, 4)
    lines += wrap(f"=> {o.recommendation}", 4, 3)
    return lines
