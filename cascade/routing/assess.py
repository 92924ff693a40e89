"""What a learned start would do, measured on held-out records, and where it breaks even.

Starting at the strong rung costs ``S``; trying the cheap one first costs ``C`` and, when it
escalates (probability ``p``), ``S`` on top: ``C + p·S``. Starting strong is cheaper when
``p > 1 - C/S`` (equivalently when the chance that the cheap answer passes, ``1 - p``, is
below ``C/S``). ``C/S`` is the ratio of what the records' own attempts cost, weighted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .fit import auc, brier

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .fit import Example
    from .learned import StartModel

__all__ = ["Assessment", "BreakEven", "assess", "break_even"]


@dataclass(frozen=True, slots=True)
class BreakEven:
    """``probability = 1 - cheap_usd / strong_usd`` (mean cost per call of each rung, over
    ``examples`` weighted records whose both costs are known; ``estimated`` of them had the
    strong cost estimated from the cheap attempt's tokens at the strong model's prices)."""

    cheap_usd: float
    strong_usd: float
    examples: int
    estimated: int

    @property
    def ratio(self) -> float:
        return self.cheap_usd / self.strong_usd

    @property
    def probability(self) -> float:
        return 1.0 - self.ratio


def break_even(examples: Sequence[Example]) -> BreakEven | None:
    """The break-even P(escalate) from the examples' costs; None when no example has both
    costs known (a model without a known price) or the strong model costs nothing."""
    known = [e for e in examples if e.cheap_cost is not None and e.strong_cost is not None]
    total = sum(e.weight for e in known)
    if not known or not total:
        return None
    cheap = sum(e.weight * (e.cheap_cost or 0.0) for e in known) / total
    strong = sum(e.weight * (e.strong_cost or 0.0) for e in known) / total
    if strong <= 0 or cheap >= strong:
        return None
    return BreakEven(cheap, strong, len(known), sum(e.strong_estimated for e in known))


@dataclass(frozen=True, slots=True)
class Assessment:
    """A model's held-out figures (weighted: each record stands for 1/inclusion calls).

    ``records`` held-out records, ``escalated_records`` of them escalated (unweighted counts:
    what the AUC and the rates rest on).

    ``routed`` is the share of calls it would start at the strong rung; ``precision`` the
    share of those that escalated, ``recall`` the share of escalations it catches. Savings
    are over the routed calls: what they cost and took cheap first minus what the strong
    rung alone costs and takes (``saved_usd`` over the calls with known costs, ``spend_usd``
    the held-out calls' whole cheap-first spend; latency over the routed calls, the strong
    latency of ``latency_estimated`` of them, which never asked it, taken as the mean of
    those that did, ``strong_latency_mean``; None when no record asked the strong model).
    """

    calls: float
    records: int
    base_rate: float
    auc: float | None
    brier: float
    brier_base: float
    above: float
    routed: float
    precision: float | None
    recall: float | None
    saved_usd: float
    spend_usd: float
    uncosted: int
    saved_latency_s: float | None
    latency_estimated: int
    strong_latency_mean: float | None
    escalated_records: int


def assess(
    model: StartModel, test: Sequence[Example], every: Sequence[Example], above: float
) -> Assessment:
    """``model`` on the held-out ``test`` examples at threshold ``above``; ``every``
    example (train and test) gives the mean strong latency where a record has none."""
    scores = [model.probability(e.hashes) for e in test]
    labels = [e.escalated for e in test]
    weights = [e.weight for e in test]
    total = sum(weights)
    base = sum(w for y, w in zip(labels, weights, strict=True) if y) / total if total else 0.0
    routed = [e for e, s in zip(test, scores, strict=True) if s > above]
    w_routed = sum(e.weight for e in routed)
    w_pos = sum(e.weight for e in test if e.escalated)
    hit = sum(e.weight for e in routed if e.escalated)
    saved = 0.0
    uncosted = 0
    for e in routed:
        if e.first_cost is None or e.strong_cost is None:
            uncosted += 1
        else:
            saved += e.weight * (e.first_cost - e.strong_cost)
    spend = sum(e.weight * e.first_cost for e in test if e.first_cost is not None)
    seen = [e for e in every if e.strong_latency is not None]
    seen_w = sum(e.weight for e in seen)
    mean_strong = (
        sum(e.weight * (e.strong_latency or 0.0) for e in seen) / seen_w if seen_w else None
    )
    latency: float | None = None
    estimated = 0
    if mean_strong is not None:
        latency = 0.0
        for e in routed:
            strong = e.strong_latency
            if strong is None:
                strong, estimated = mean_strong, estimated + 1
            latency += e.weight * (e.first_latency - strong)
    return Assessment(
        calls=total,
        records=len(test),
        escalated_records=sum(labels),
        base_rate=base,
        auc=auc(scores, labels, weights),
        brier=brier(scores, labels, weights),
        brier_base=brier([base] * len(test), labels, weights),
        above=above,
        routed=w_routed / total if total else 0.0,
        precision=hit / w_routed if w_routed else None,
        recall=hit / w_pos if w_pos else None,
        saved_usd=saved,
        spend_usd=spend,
        uncosted=uncosted,
        saved_latency_s=latency,
        latency_estimated=estimated,
        strong_latency_mean=mean_strong,
    )
