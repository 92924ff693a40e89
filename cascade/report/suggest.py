"""Concrete changes the patterns support, each with the saving it projects per 1,000 calls.

Savings are projected from what the sampled records cost: starting a group of calls at the
strong model saves the cheap spend wasted on its escalated calls and adds, for its passing
calls, the difference between the strong model alone (the baseline) and what they cost.
A suggestion needs at least ``min_count`` escalated calls behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .collect import SIZE_BUCKETS, Bin, merged_reasons
from .values import Suggestion

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .collect import PatternCollector
    from .values import Patterns, Totals

__all__ = ["suggestions"]

HIGH_RATE = 0.6  # escalating this often, the cheap first attempt is mostly waste
GROUP_RATE = 0.5  # a group escalating this often may be better started at the strong model
ALWAYS_ROUTE = 0.8  # ... and escalating this often, it is, for latency if not for cost
DOMINANT = 0.6  # share of a validator's failures one reason must have to be "the" reason
NEAR = 0.05  # how close below the threshold a failing score counts as "near"


class _Sum:
    """Weighted sums of aligned bins of several tasks."""

    def __init__(self, bins: Iterable[tuple[Bin | None, float]]) -> None:
        self.calls = self.wasted = self.extra = 0.0
        self.escalated = 0
        for b, w in bins:
            if b is not None:
                self.calls += b.calls(w)
                self.escalated += b.escalated
                self.wasted += b.wasted
                self.extra += b.extra * w

    @property
    def rate(self) -> float:
        return self.escalated / self.calls if self.calls else 0.0

    def routing_savings(self) -> float:
        """What starting these calls at the strong model saves in total (negative: costs)."""
        return self.wasted - self.extra


def suggestions(
    p: Patterns,
    parts: Sequence[tuple[PatternCollector, Totals]],
    known: Sequence[tuple[PatternCollector, float]],
    *,
    min_count: int,
) -> list[Suggestion]:
    """Suggestions for the tasks of ``parts``, largest projected saving first."""
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
    found: list[Suggestion] = []

    if escalations >= min_count and rate >= HIGH_RATE:
        cost = sum(t.cost_usd for _, t in parts)
        baseline = sum(t.baseline_cost_usd for _, t in parts)
        saving = (cost - baseline) * per_1k
        tail = _net(saving)
        found.append(Suggestion(
            "use_strong_model",
            f"escalation rate {rate:.0%}: the cheap model rarely succeeds; call {strong} "
            f"directly; {tail}",
            round(saving, 6), {"escalation_rate": rate, "calls": calls},
        ))  # fmt: skip

    # Inputs from some size on: of the cuts escalating often, the one that saves most. Net of
    # the passing calls the strong model would then answer, routing pays only at high rates;
    # above ALWAYS_ROUTE it is worth it for the latency of the wasted attempt alone.
    best: tuple[float, str, _Sum] | None = None
    for k in range(1, len(SIZE_BUCKETS)):
        labels = [label for label, _ in SIZE_BUCKETS[k:]]
        tail_sum = _Sum((c.sizes[label], w) for c, w in known for label in labels)
        saving = tail_sum.routing_savings()
        supported = tail_sum.escalated >= min_count and (
            (tail_sum.rate >= GROUP_RATE and saving > 0) or tail_sum.rate >= ALWAYS_ROUTE
        )
        # On a tie the higher cut wins: it claims no more than the data shows.
        if supported and (best is None or saving >= best[0]):
            best = (saving, f"{SIZE_BUCKETS[k - 1][1]:,.0f}", tail_sum)
    if best is not None:
        saving, bound, s = best
        found.append(Suggestion(
            "route_by_size",
            f"inputs over {bound} prompt tokens escalate {s.rate:.0%} of the time: start them "
            f"at {strong}; {_net(saving * per_1k)}",
            round(saving * per_1k, 6),
            {"min_prompt_tokens": bound, "escalation_rate": s.rate, "escalations": s.escalated},
        ))  # fmt: skip

    found.extend(_reason_suggestions(parts, known, min_count, per_1k))
    found.extend(_threshold_suggestions(parts, known, min_count, per_1k))
    found.extend(_feature_suggestions(p, known, rate, min_count, per_1k, strong))

    s_all = _Sum((c.all, w) for c, w in known)
    for term in p.terms[:1]:
        term_rate = term.escalated / (term.escalated + term.passing)
        if term_rate < GROUP_RATE or not s_all.escalated:
            continue
        avg_wasted = s_all.wasted / s_all.escalated
        avg_extra = s_all.extra / max(s_all.calls - s_all.escalated, 1.0)
        saving = (term.escalated * avg_wasted - term.passing * avg_extra) * per_1k
        found.append(Suggestion(
            "topic",
            f"inputs mentioning '{term.term}' escalate {term_rate:.0%} of the time "
            f"(z={term.z:.1f}): give the cheap model guidance for them, or start them at {strong}",
            round(saving, 6) if saving > 0 else None,
            {"term": term.term, "z": term.z, "escalations": term.escalated},
        ))  # fmt: skip
    found.sort(key=lambda s: -(s.projected_savings_usd_per_1k_calls or 0.0))
    return found


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
            f"(about {threshold:.2f}): lowering it to {threshold - NEAR:.2f} would avoid them; "
            f"check the quality first (cascade calibrate)",
            round(saving, 6) if saving > 0 else None,
            {"validator": v, "threshold": threshold, "near_share": share, "failures": len(scores)},
        )


def _feature_suggestions(
    p: Patterns,
    known: Sequence[tuple[PatternCollector, float]],
    rate: float,
    min_count: int,
    per_1k: float,
    strong: str,
) -> Iterable[Suggestion]:
    total = sum(f.calls for f in p.features if f.feature == "language") or 1.0
    risky = [
        f
        for f in p.features
        if f.escalations >= min_count
        and f.rate >= max(2 * rate, rate + 0.2)
        and f.calls < 0.9 * total
        and f.value not in ("false", "none")
    ]
    risky.sort(key=lambda f: -f.rate)
    for f in risky[:2]:
        s = _Sum((c.features.get((f.feature, f.value)), w) for c, w in known)
        saving = s.routing_savings() * per_1k
        who = f"in language '{f.value}'" if f.feature == "language" else f"with {f.feature}"
        action = f"start them at {strong}" if saving > 0 else "give the cheap model guidance"
        yield Suggestion(
            "feature",
            f"inputs {who} escalate {f.rate:.0%} of the time (vs {rate:.0%} overall): {action}",
            round(saving, 6) if saving > 0 else None,
            {"feature": f.feature, "value": f.value, "escalation_rate": f.rate},
        )
