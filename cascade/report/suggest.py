"""Concrete changes the patterns support, each with the saving it projects per 1,000 calls.

Savings are projected from what the sampled records cost: starting a group of calls at the
strong model saves the cheap spend wasted on its escalated calls and adds, for its passing
calls, the difference between the strong model alone (the baseline) and what they cost.
A suggestion needs at least ``min_count`` escalated calls behind it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..recording import SCRIPTS, language_label
from .associations import Claim
from .collect import SIZE_BUCKETS, Bin, merged_reasons
from .values import Suggestion

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from .associations import Found
    from .collect import PatternCollector
    from .values import Patterns, Totals

__all__ = ["span", "suggestions"]

HIGH_RATE = 0.6  # escalating this often, the cheap first attempt is mostly waste
GROUP_RATE = 0.5  # a group escalating this often may be better started at the strong model
ALWAYS_ROUTE = 0.8  # ... and escalating this often, it is, for latency if not for cost
DOMINANT = 0.6  # share of a validator's failures one reason must have to be "the" reason
NEAR = 0.05  # how close below the threshold a failing score counts as "near"


class _Sum:
    """Weighted sums of aligned bins of several tasks (each with its legacy pass weight)."""

    def __init__(self, bins: Iterable[tuple[Bin | None, float]]) -> None:
        self.calls = self.wasted = self.extra = 0.0
        self.escalated = 0
        for b, w in bins:
            if b is not None:
                self.calls += b.calls(w)
                self.escalated += b.escalated
                self.wasted += b.wasted
                self.extra += b.extra_total(w)

    @property
    def rate(self) -> float:
        return self.escalated / self.calls if self.calls else 0.0

    def routing_savings(self) -> float:
        """What starting these calls at the strong model saves in total (negative: costs)."""
        return self.wasted - self.extra


def span(low: float, high: float) -> str:
    """An interval of rates as whole percentages, rounded outwards: ``84\u201397%``."""
    lo, hi = math.floor(low * 100), math.ceil(high * 100)
    return f"{lo}\u2013{hi}%" if lo != hi else f"{lo}%"


def _claim_text(c: Claim) -> str:
    return (
        f"escalate {span(c.low, c.high)} of the time ({c.inputs:,.0f} inputs; the others "
        f"{c.others:.0%})"
    )


def suggestions(
    p: Patterns,
    parts: Sequence[tuple[PatternCollector, Totals]],
    weighted: Sequence[tuple[PatternCollector, float]],
    found: Found,
    *,
    min_count: int,
    observed_action: str | None = None,
    certified: Collection[str] = (),
) -> list[Suggestion]:
    """Suggestions for the tasks of ``parts``, largest projected saving first.

    ``observed_action`` is observe mode's verdict on these calls: when it is ``switch``, no
    suggestion to call the strong model directly is made. ``certified`` names validators
    whose threshold ``cascade calibrate`` certified: no suggestion to lower those.
    """
    calls = sum(t.calls for _, t in parts)
    if not calls:
        return []
    escalations = sum(t.escalations for _, t in parts)
    rate = escalations / calls
    per_1k = 1000 / calls
    finals: dict[str, int] = {}
    for c, _ in parts:
        for model, n in c.final_models.items():
            finals[model] = finals.get(model, 0) + n
    strong = max(finals, key=lambda m: finals[m]) if finals else "the strong model"
    found_list: list[Suggestion] = []
    switching = observed_action == "switch"

    if escalations >= min_count and rate >= HIGH_RATE and not switching:
        cost = sum(t.cost_usd for _, t in parts)
        baseline = sum(t.baseline_cost_usd for _, t in parts)
        saving = (cost - baseline) * per_1k
        found_list.append(Suggestion(
            "use_strong_model",
            f"escalation rate {rate:.0%} ({escalations:,} of {calls:,} calls): the cheap model "
            f"rarely succeeds; call {strong} directly; {_net(saving)}",
            round(saving, 6), {"escalation_rate": rate, "calls": calls},
        ))  # fmt: skip

    # Inputs from some size on: of the claimed cuts, the one that saves most. Net of the
    # passing calls the strong model would then answer, routing pays only at high rates;
    # above ALWAYS_ROUTE it is worth it for the latency of the wasted attempt alone.
    best: tuple[tuple[bool, float], int, Claim, _Sum] | None = None
    cuts = [c for c in found.features if c.token.startswith("size>=")]
    for claim in sorted(cuts, key=lambda c: float(c.token[len("size>=") :])):
        bound = int(float(claim.token[len("size>=") :]))
        labels = [label for label, b in SIZE_BUCKETS if b > bound]
        tail = _Sum((c.sizes[label], w) for c, w in weighted for label in labels)
        saving = tail.routing_savings()
        supported = (claim.low >= GROUP_RATE and saving > 0) or claim.low >= ALWAYS_ROUTE
        key = (supported and not switching, saving if supported else claim.low)
        if best is None or key >= best[0]:  # on a tie the higher cut: it claims no more
            best = (key, bound, claim, tail)
    if best is not None:
        (route, saving), bound, claim, tail = best
        if route:
            action = f"start them at {strong}; {_net(saving * per_1k)}"
        else:
            action = "give the cheap model guidance for long inputs, or shorten them"
        found_list.append(Suggestion(
            "route_by_size",
            f"inputs of {bound:,} prompt tokens or more {_claim_text(claim)}: {action}",
            round(saving * per_1k, 6) if route else None,
            {"min_prompt_tokens": bound, **_evidence(claim)},
        ))  # fmt: skip

    found_list.extend(_reason_suggestions(parts, weighted, min_count, per_1k))
    found_list.extend(
        s
        for s in _threshold_suggestions(parts, weighted, min_count, per_1k)
        if s.evidence["validator"] not in certified
    )
    s_all = _Sum((c.all, w) for c, w in weighted)
    avg_wasted = s_all.wasted / s_all.escalated if s_all.escalated else 0.0
    rest_all = max(s_all.calls - s_all.escalated, 1.0)
    avg_extra = s_all.extra / rest_all

    def routed(claim: Claim) -> tuple[float, str]:
        saving = (claim.escalated * avg_wasted - claim.rest * avg_extra) * per_1k
        if claim.low >= GROUP_RATE and saving > 0 and not switching:
            return saving, f"start them at {strong} ({_net(saving)})"
        return saving, "give the cheap model guidance for them"

    shown = [c for c in found.features if not c.token.startswith("size>=")][:2]
    for claim in shown:
        name, _, value = claim.token.partition("=")
        if name == "language":
            label = language_label(value)
            if value == "none":
                who = "with no letters"
            elif value in SCRIPTS:
                who = f"in {label}"
            else:
                who = f"in language '{label}'"
        else:
            who = f"with {name}"
        saving, action = routed(claim)
        found_list.append(Suggestion(
            "feature",
            f"inputs {who} {_claim_text(claim)}: {action}",
            round(saving, 6) if saving > 0 else None,
            {"feature": name, "value": value, **_evidence(claim)},
        ))  # fmt: skip
    for term in found.terms[:3]:
        claim = Claim(
            term.term, term.escalated, 0, term.passing, term.z, term.p_value, term.q_value,
            term.rate_low, term.rate_high, 1 - term.confidence, term.others_rate,
        )  # fmt: skip
        saving, action = routed(claim)
        words = " / ".join(f"'{_clip(m, 30)}'" for m in term.members[:4])
        found_list.append(Suggestion(
            "topic",
            f"inputs mentioning {words} {_claim_text(claim)}: {action}",
            round(saving, 6) if saving > 0 else None,
            {"term": term.term, "members": list(term.members), **_evidence(claim)},
        ))  # fmt: skip
    found_list.sort(key=lambda s: -(s.projected_savings_usd_per_1k_calls or 0.0))
    return found_list


def _evidence(c: Claim) -> dict[str, Any]:
    return {
        "escalation_rate": c.rate,
        "rate_low": c.low,
        "rate_high": c.high,
        "confidence": 1 - c.alpha,
        "escalations": c.escalated,
        "inputs": round(c.inputs, 1),
        "q_value": c.q_value,
    }


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _net(saving_per_1k: float) -> str:
    if saving_per_1k > 0:
        return f"saves ${saving_per_1k:.4f} per 1,000 calls"
    return (
        f"costs ${-saving_per_1k:.4f} more per 1,000 calls but saves the latency of the "
        "wasted attempts"
    )


def _reason_suggestions(
    parts: Sequence[tuple[PatternCollector, Totals]],
    known: Sequence[tuple[PatternCollector, float]],
    min_count: int,
    per_1k: float,
) -> Iterable[Suggestion]:
    for validator, table in sorted(merged_reasons([c for c, _ in parts]).items()):
        # A score validator words every failure alike ("confidence 0.62 < 0.8"): one shape
        # of reason says nothing there; its scores get their own suggestion.
        if sum(len(c.failing_scores.get(validator, ())) for c, _ in parts) >= min_count:
            continue
        total = sum(n for n, _ in table.values())
        norm, (n, example) = max(table.items(), key=lambda kv: (kv[1][0], kv[0]))
        if n < min_count or n / total < DOMINANT:
            continue
        caused = _Sum((c.by_validator.get(validator), w) for c, w in known)
        saving = caused.wasted * (n / total) * per_1k
        jsonish = "json" in (validator + norm).lower() or "schema" in validator.lower()
        fix = "fix the prompt or use response_format" if jsonish else "fix the prompt"
        yield Suggestion(
            "dominant_reason",
            f"validator '{validator}' fails mostly for one reason ('{_clip(example)}', "
            f"{n / total:.0%} of its failures): {fix}",
            round(saving, 6) if saving > 0 else None,
            {"validator": validator, "reason": norm, "count": n, "share": n / total},
        )


def _threshold_suggestions(
    parts: Sequence[tuple[PatternCollector, Totals]],
    known: Sequence[tuple[PatternCollector, float]],
    min_count: int,
    per_1k: float,
) -> Iterable[Suggestion]:
    """Score validators whose failures sit just under the lowest passing score."""
    validators = sorted({v for c, _ in parts for v in c.failing_scores})
    for v in validators:
        passing = [c.min_passing_score[v] for c, _ in parts if v in c.min_passing_score]
        scores = [s for c, _ in parts for s in c.failing_scores.get(v, [])]
        if not passing or len(scores) < min_count:
            continue
        threshold = min(passing)
        near = sum(threshold - NEAR <= s < threshold for s in scores)
        share = near / len(scores)
        if near < min_count or share < GROUP_RATE:
            continue
        caused = _Sum((c.by_validator.get(v), w) for c, w in known)
        saving = caused.wasted * share * per_1k
        yield Suggestion(
            "lower_threshold",
            f"{share:.0%} of '{v}' failures score within {NEAR} of its threshold "
            # Ten digits: a calibrated threshold such as 0.9999996 is not shown as 1.
            f"(about {threshold:.10g}): lowering it to {threshold - NEAR:.10g} would avoid "
            "them; "
            f"check the quality first (cascade calibrate)",
            round(saving, 6) if saving > 0 else None,
            {"validator": v, "threshold": threshold, "near_share": share, "failures": len(scores)},
        )
