"""Calls a ``start_at`` rule started at a stronger rung: how many, how many the history says
would have escalated anyway, and what skipping the cheap attempt saved (estimated).

A pre-routed call's record carries ``extra["start_at"]`` (the rule's index) and, for a learned
rule, ``extra["start_p"]``: the model's P(escalate) of it, fitted on the task's history. Had
it started cheap it would have cost the cheap attempt ``C`` and, with probability ``p``, the
strong call on top; it cost the strong call ``S``: so it saved ``C - (1 - p)·S`` in money and
``Lc - (1 - p)·L`` in latency (negative when the cheap model would likely have passed). ``C``
and ``Lc`` are the weighted means of the cheap rung's attempts in the same records (the calls
that did start cheap), unknown while no passing one was stored (the escalated ones alone
would stand for every call). Rules have no probability: their savings are unknown.

Every figure is estimated from the stored records the report read: a pre-routed call that
passed was stored with probability ``sample_passes`` and stands for ``1 / p`` calls. The
count carries its 95% interval (normal approximation to the Horvitz-Thompson estimate's
variance, ``sum((1 - p) / p²)``, never below the records themselves) and the number of
records behind it; with every call stored (``sample_passes: 1``) it is exact.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..events import CallRecord

__all__ = [
    "PreRouteCollector",
    "PreRouted",
    "pre_routed_lines",
    "pre_routed_of",
    "pre_routed_to_dict",
]


@dataclass(frozen=True, slots=True)
class PreRouted:
    """The pre-routed calls of a task, estimated from its stored records (each standing for
    ``1 / inclusion_probability`` calls).

    ``calls`` were started up the ladder, ``learned`` of them by a learned rule, which put
    their escalations (had they started cheap) at ``would_escalate``. ``saved_usd`` and
    ``saved_latency_s`` are the estimated savings of the learned ones (None when unknown: no
    call started cheap to measure the cheap attempt by, or a cost unknown), resting on
    ``strong_usd`` / ``strong_latency_s`` (what they cost and took) and the cheap attempt's
    mean ``cheap_usd`` / ``cheap_latency_s`` over ``cheap_calls`` calls that started cheap
    (None while no passing one was stored: the means are unknown then, and so is that count).
    ``records`` is how many stored records ``calls`` is estimated from, ``calls_low`` /
    ``calls_high`` its 95% interval (equal to ``calls`` when every such call was stored:
    ``exact``);
    ``cheap_records`` / ``cheap_passes`` the stored records of calls that started cheap and
    how many of them passed.
    """

    calls: float
    calls_low: float
    calls_high: float
    records: int
    learned: float
    would_escalate: float
    saved_usd: float | None
    saved_latency_s: float | None
    strong_usd: float | None
    strong_latency_s: float
    cheap_usd: float | None
    cheap_latency_s: float | None
    cheap_calls: float | None
    cheap_records: int
    cheap_passes: int
    exact: bool


class PreRouteCollector:
    """Reads one task's stored records once (a few sums, no growth)."""

    def __init__(self) -> None:
        self.calls = self.learned = self.would = 0.0
        self.variance = 0.0  # of the calls' estimate: sum of (1 - p) / p²
        self.records = self.cheap_records = self.cheap_passes = 0
        self.strong_usd: float | None = 0.0
        self.strong_s = 0.0
        self.kept_usd = 0.0  # sum of w·(1 - p)·S
        self.kept_s = 0.0
        self.cheap_n = self.cheap_usd_n = 0.0
        self.cheap_usd = self.cheap_s = 0.0

    def add(self, record: CallRecord) -> None:
        """Count one stored record (cascade mode only)."""
        if record.mode != "cascade" or not record.attempts:
            return
        p_in = record.inclusion_probability
        w = 1.0 / p_in if p_in else 1.0
        extra = record.extra
        if "start_at" in extra:
            self.calls += w
            self.records += 1
            self.variance += w * w - w
            p = extra.get("start_p")
            if not isinstance(p, int | float):
                return
            self.learned += w
            self.would += w * p
            self.strong_s += w * record.latency_s
            self.kept_s += w * (1 - p) * record.latency_s
            if record.cost_usd is None or self.strong_usd is None:
                self.strong_usd = None
            else:
                self.strong_usd += w * record.cost_usd
                self.kept_usd += w * (1 - p) * record.cost_usd
            return
        cheap = record.attempts[0].model
        mine = [a for a in record.attempts if a.model == cheap]
        self.cheap_records += 1
        self.cheap_passes += not record.escalated
        self.cheap_n += w
        self.cheap_s += w * sum(a.latency_s for a in mine)
        if all(a.cost_usd is not None for a in mine):
            self.cheap_usd_n += w
            self.cheap_usd += w * sum(a.cost_usd or 0.0 for a in mine)


def pre_routed_of(collectors: Iterable[PreRouteCollector]) -> PreRouted | None:
    """The summary of one or more collectors; None when no call was pre-routed."""
    cs = list(collectors)
    calls = sum(c.calls for c in cs)
    if not calls:
        return None
    learned = sum(c.learned for c in cs)
    records = sum(c.records for c in cs)
    half = 1.96 * math.sqrt(sum(c.variance for c in cs))
    cheap_records = sum(c.cheap_records for c in cs)
    cheap_passes = sum(c.cheap_passes for c in cs)
    n, n_usd = sum(c.cheap_n for c in cs), sum(c.cheap_usd_n for c in cs)
    if not cheap_passes:  # the escalated calls alone would stand for every call
        n = n_usd = 0.0
    cheap_s = sum(c.cheap_s for c in cs) / n if n else None
    cheap_usd = sum(c.cheap_usd for c in cs) / n_usd if n_usd else None
    strong: float | None = 0.0
    for c in cs:
        strong = None if strong is None or c.strong_usd is None else strong + c.strong_usd
    saved_usd = None
    if cheap_usd is not None and strong is not None:
        saved_usd = learned * cheap_usd - sum(c.kept_usd for c in cs)
    saved_s = None if cheap_s is None else learned * cheap_s - sum(c.kept_s for c in cs)
    return PreRouted(
        calls=calls,
        calls_low=max(float(records), calls - half),
        calls_high=calls + half,
        records=records,
        learned=learned,
        would_escalate=sum(c.would for c in cs),
        saved_usd=saved_usd if learned else None,
        saved_latency_s=saved_s if learned else None,
        strong_usd=strong,
        strong_latency_s=sum(c.strong_s for c in cs),
        cheap_usd=cheap_usd,
        cheap_latency_s=cheap_s,
        cheap_calls=n if cheap_passes else None,
        cheap_records=cheap_records,
        cheap_passes=cheap_passes,
        exact=not half,  # every pre-routed call stored with probability 1: no variance
    )


def _calls(n: float, noun: str = "call") -> str:
    return f"{n:,.0f} {noun}" if round(n) == 1 else f"{n:,.0f} {noun}s"


def pre_routed_lines(p: PreRouted | None, width: int) -> list[str]:
    """The report's lines about pre-routed calls (none when there were none)."""
    if p is None:
        return []
    rules = p.calls - p.learned
    if p.exact:
        count = f"{_calls(p.calls)} (all stored)"
    else:
        count = (
            f"about {_calls(p.calls)} (95% {p.calls_low:,.0f}-{p.calls_high:,.0f}, "
            f"estimated from {_calls(p.records, 'stored record')})"
        )
    head = f"pre-routed (start_at): {count} started at a stronger rung"
    if rules:
        head += f", {rules:,.0f} by rules (their escalations and savings unknown)"
    out = [head]
    if p.learned:
        out.append(
            f"{p.learned:,.0f} by a learned rule; per the history it was fitted on, "
            f"{p.would_escalate:,.1f} of them ({p.would_escalate / p.learned:.0%}) would have "
            "escalated"
        )
        if p.saved_usd is None:
            if not p.cheap_records:
                why = "no stored call started cheap"
            elif not p.cheap_passes:
                started = (
                    "the stored call that started cheap escalated"
                    if p.cheap_records == 1
                    else f"the {p.cheap_records:,} stored calls that started cheap all escalated"
                )
                why = f"{started}: none that passed was stored to measure the cheap attempt by"
            else:
                why = "a cost is unknown"
            out.append(f"money saved: unknown ({why})")
        else:
            out.append(
                f"money saved (estimated): ${p.saved_usd:.6g}: they cost ${p.strong_usd:.6g}; "
                f"the cheap attempt averages ${p.cheap_usd:.6g} over about "
                f"{_calls(p.cheap_calls or 0)} that started cheap ({p.cheap_records:,} stored)"
            )
        if p.saved_latency_s is not None and p.cheap_latency_s is not None:
            out.append(
                f"latency saved (estimated): {p.saved_latency_s:.3f} s in all, "
                f"{p.saved_latency_s / p.learned:.3f} s per call: they took "
                f"{p.strong_latency_s:.3f} s; the cheap attempt averages "
                f"{p.cheap_latency_s:.3f} s"
            )
    lines = ["  " + out[0]] if len(out[0]) <= width - 2 else []
    if not lines:
        lines = textwrap.wrap(out[0], width, initial_indent="  ", subsequent_indent="      ")
    for line in out[1:]:
        lines += textwrap.wrap(line, width, initial_indent="    ", subsequent_indent="      ")
    return lines


def pre_routed_to_dict(p: PreRouted) -> dict[str, Any]:
    """The JSON form: every field, by name."""
    return asdict(p)
