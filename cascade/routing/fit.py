"""Fitting a learned start (``cascade learn``): records -> examples -> a logistic model.

Each usable record is one example: its input's ``hashed`` features, whether the cheapest
rung escalated (in cascade mode: the call escalated; observe mode: the would-be decision;
cheap mode: an answer that failed its checks) and its weight, ``1 / inclusion_probability``
(a stored pass of a 5% sample stands for 20 calls). Records a ``start_at`` rule sent up the
ladder say nothing about the cheap model and are left out, as are strong-mode calls.
The examples are hashed from the feature families every one of them truly holds: where some
record's input was stored as a hash or not at all (``store_inputs: hash``/``none``), that is
its size alone, for all of them, so the model learns nothing its live scoring could not see.

The fit: L2-regularised logistic regression by AdaGrad over the weighted examples, a few
passes in a fixed (seeded) order, so the same records give the same model. Metrics are
computed on a held-out share of the records (chosen by a hash of each record's id).
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .learned import FAMILIES, VERSION, Family, StartModel, hashed, stored_turns

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..events import Attempt, CallRecord

__all__ = ["Example", "auc", "brier", "examples_of", "fit", "held_out"]


@dataclass(frozen=True, slots=True)
class Example:
    """One record as the fit and its metrics see it.

    ``cheap_cost``/``cheap_latency`` are what the cheapest rung's attempts cost and took;
    ``first_cost``/``first_latency`` what the call cost and took as it ran, cheap first;
    ``strong_cost``/``strong_latency`` what starting at the target rung costs and takes: its
    own attempts where it answered, else (``strong_estimated``) the cost estimated at its
    prices from the cheap attempt's tokens and the latency unknown (None). ``features``: the
    families ``hashes`` holds; ``text``: whether the record's input was stored as text.
    """

    id: str
    hashes: tuple[int, ...]
    escalated: bool
    weight: float
    cheap_cost: float | None
    cheap_latency: float
    first_cost: float | None
    first_latency: float
    strong_cost: float | None
    strong_latency: float | None
    strong_estimated: bool
    features: tuple[Family, ...] = FAMILIES
    text: bool = True


def _sum_cost(attempts: Iterable[Attempt]) -> float | None:
    total = 0.0
    for a in attempts:
        if a.cost_usd is None:
            return None
        total += a.cost_usd
    return total


def _stored_as_text(record: CallRecord) -> bool:
    # A sampled record's input is None under store_inputs: none, "sha256:..." under hash;
    # a stored text starts with its first message's role.
    return record.input is not None and not record.input.startswith("sha256:")


def _hashes(record: CallRecord, text: bool, families: tuple[Family, ...]) -> tuple[int, ...]:
    turns = stored_turns(record.input) if text and record.input else []
    return tuple(hashed(turns, int(record.features.get("chars") or 0), families))


def _example(record: CallRecord, cheap: str, strong: str) -> Example | None:
    """The record as an example, its features not hashed yet (``examples_of`` does that)."""
    if record.mode == "strong" or "start_at" in record.extra:
        return None
    mine = [a for a in record.attempts if a.model == cheap and a.purpose != "judge"]
    theirs = [a for a in record.attempts if a.model == strong and a.purpose != "judge"]
    if not mine:
        return None
    obs = record.observation
    if record.mode == "observe":
        if obs is None:
            return None
        escalated = obs.decision == "escalate"
    elif record.mode == "cheap":
        escalated = not record.ok
    else:
        escalated = record.escalated
    cheap_cost = _sum_cost(mine)
    cheap_latency = sum(a.latency_s for a in mine)
    strong_latency = sum(a.latency_s for a in theirs) if theirs else None
    if theirs:
        strong_cost, estimated = _sum_cost(theirs), False
    else:
        strong_cost, estimated = record.baseline_cost_usd, True
    if record.mode == "observe":
        first_cost = None if obs is None else obs.projected_cost_usd
        first_latency = cheap_latency + (strong_latency or 0.0) * escalated
    else:
        first_cost, first_latency = record.cost_usd, record.latency_s
    p = record.inclusion_probability
    weight = 1.0 if escalated or not p else 1.0 / p
    return Example(
        id=record.id,
        hashes=(),
        escalated=escalated,
        weight=weight,
        cheap_cost=cheap_cost,
        cheap_latency=cheap_latency,
        first_cost=first_cost,
        first_latency=first_latency,
        strong_cost=strong_cost,
        strong_latency=strong_latency,
        strong_estimated=estimated,
        features=(),
        text=_stored_as_text(record),
    )


def examples_of(
    records: Iterable[CallRecord], cheap: str, strong: str
) -> tuple[list[Example], int]:
    """The usable examples of ``records`` (sampled ones) for the ladder ``cheap`` ->
    ``strong``, and how many sampled records were left out. They hold every feature family
    when every one of them was stored as text, else (``store_inputs: hash`` or ``none`` for
    any) the size alone."""
    usable: list[tuple[CallRecord, Example]] = []
    skipped = 0
    for r in records:
        if not r.sampled:
            continue
        ex = _example(r, cheap, strong)
        if ex is None:
            skipped += 1
        else:
            usable.append((r, ex))
    families: tuple[Family, ...] = FAMILIES if all(ex.text for _, ex in usable) else ("size",)
    out = [replace(ex, hashes=_hashes(r, ex.text, families), features=families) for r, ex in usable]
    return out, skipped


def held_out(example: Example, share: float) -> bool:
    """Whether an example is in the held-out split (a hash of its record id, so stable)."""
    return zlib.crc32(example.id.encode()) % 10_000 < share * 10_000


def fit(
    examples: Sequence[Example],
    *,
    task: str,
    buckets: int = 1000,
    l2: float = 0.1,
    epochs: int = 10,
    rate: float = 0.5,
    seed: int = 0,
) -> StartModel:
    """The weighted logistic model of ``escalated`` minimising ``sum(weight x log loss) +
    l2/2 x |weights|^2`` (weights scaled to a mean of 1), by AdaGrad in a seeded order.

    The penalty's gradient is spread over each weight's occurrences (``l2 x w / n`` each time
    a feature held by ``n`` examples is seen), so a feature is shrunk as much per pass whether
    it is common or rare: a word seen in one input cannot claim a large weight from it.
    The model is scored on the feature families the examples hold (all the same: raises
    ``ValueError`` otherwise).
    """
    kinds = {ex.features for ex in examples}
    if len(kinds) > 1:
        raise ValueError(f"examples of different feature families: {sorted(kinds)}")
    families = kinds.pop() if kinds else FAMILIES
    rows = [
        ([h % buckets for h in ex.hashes], 1.0 if ex.escalated else 0.0, ex.weight)
        for ex in examples
    ]
    mean_w = sum(w for _, _, w in rows) / len(rows) if rows else 1.0
    positive = sum(w * y for _, y, w in rows) / (mean_w * len(rows)) if rows else 0.5
    rate_prior = min(max(positive, 1e-4), 1 - 1e-4)
    bias = math.log(rate_prior / (1 - rate_prior))  # start at the base rate
    seen = [0.0] * buckets
    for idx, _, _ in rows:
        for j in idx:
            seen[j] += 1.0
    shrink = [l2 / n if n else 0.0 for n in seen]
    weights = [0.0] * buckets
    g2 = [1e-8] * buckets
    gb2 = 1e-8
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            idx, y, w = rows[i]
            scale = 1.0 / math.sqrt(len(idx)) if idx else 0.0
            z = bias + scale * sum(weights[j] for j in idx)
            p = 1.0 / (1.0 + math.exp(-z)) if z > -35 else 0.0
            g = (p - y) * w / mean_w
            gb2 += g * g
            bias -= rate * g / math.sqrt(gb2)
            g *= scale
            for j in idx:
                gj = g + shrink[j] * weights[j]
                g2[j] += gj * gj
                weights[j] -= rate * gj / math.sqrt(g2[j])
    return StartModel(
        version=VERSION,
        task=task,
        features=families,
        buckets=buckets,
        bias=round(bias, 6),
        weights=[round(x, 6) for x in weights],
    )


def auc(scores: Sequence[float], labels: Sequence[bool], weights: Sequence[float]) -> float | None:
    """The weighted area under the ROC curve (ties count half); None without both classes."""
    pos = sum(w for y, w in zip(labels, weights, strict=True) if y)
    neg = sum(w for y, w in zip(labels, weights, strict=True) if not y)
    if not pos or not neg:
        return None
    ranked = sorted(zip(scores, labels, weights, strict=True), key=lambda t: t[0])
    area = 0.0
    below = 0.0  # negative weight under the current score
    i = 0
    while i < len(ranked):
        j = i
        tie_pos = tie_neg = 0.0
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            if ranked[j][1]:
                tie_pos += ranked[j][2]
            else:
                tie_neg += ranked[j][2]
            j += 1
        area += tie_pos * (below + tie_neg / 2)
        below += tie_neg
        i = j
    return area / (pos * neg)


def brier(scores: Sequence[float], labels: Sequence[bool], weights: Sequence[float]) -> float:
    """The weighted mean squared error of the probabilities."""
    total = sum(weights)
    err = sum(w * (s - y) ** 2 for s, y, w in zip(scores, labels, weights, strict=True))
    return err / total if total else 0.0
