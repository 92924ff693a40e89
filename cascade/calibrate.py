"""Choosing a confidence threshold that keeps quality on new traffic, not only on the sample.

``calibrate`` is pure: it takes one ``Sample`` per calibration example (the cheap answer's
confidence score, whether the cheap and the strong answers were good, what each cost, and
which other validators passed) and returns a ``Calibration``. Reading a store or running a
data file is done elsewhere (``cascade.evaluate``, the ``calibrate`` sub-command).

The procedure is Learn then Test (Angelopoulos, Bates, Candès, Jordan, Lei, 2021) with
fixed-sequence testing. Candidate thresholds are ordered from the strictest (escalate
everything) to the loosest. For each, the null hypothesis "the cascade's expected quality is
below ``target`` times the strong model's" is tested with a valid p-value; thresholds are
certified in order while their p-value is at most ``delta`` and the first one that is not
stops the walk. The loosest certified threshold is the cheapest one. Because the walk never
tests a hypothesis after failing one, the family-wise error is at most ``delta`` without any
multiplicity correction, which gives the guarantee stated in ``Calibration.guarantee``.

The p-value is the betting (test-martingale) p-value of Waudby-Smith & Ramdas (2023) for a
mean of bounded losses: it adapts to the loss's variance, which matters here because most
examples contribute the same small loss and a worst-case (Hoeffding) bound wastes the sample.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Calibration", "Point", "Sample", "ValidatorEffect", "calibrate", "fixed_sequence"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One calibration example.

    ``score`` is the cheap answer's confidence (None when it was never measured: escalated);
    ``cheap_ok`` / ``strong_ok`` whether each answer was right (or, from observation records,
    ``cheap_ok`` = agrees with the strong answer and ``strong_ok`` = True); ``passed`` the
    verdicts of the cheap answer's other validators by name. ``cheap_cost`` is everything
    the cheap rung spent (verification calls included), ``strong_cost`` what escalating adds.
    """

    score: float | None
    cheap_ok: bool
    strong_ok: bool
    cheap_cost: float
    strong_cost: float
    passed: Mapping[str, bool] = field(default_factory=dict)
    baseline_cost: float | None = None  # the strong model alone (default: strong_cost)


@dataclass(frozen=True, slots=True)
class Point:
    """The cascade at one threshold, measured on the calibration sample."""

    threshold: float
    quality: float  # mean cascade correctness (or agreement)
    escalation_rate: float
    cost: float  # mean cost per call, USD
    p_value: float
    certified: bool


@dataclass(frozen=True, slots=True)
class ValidatorEffect:
    """How often one validator fails the cheap answer, and the cascade without it."""

    name: str
    fail_rate: float
    quality_without: float
    cost_without: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """The chosen threshold, the naive one for comparison, and what each costs.

    ``threshold`` is None when not even the strictest real threshold could be certified: keep
    the strong model (``mode: strong``). ``short_threshold`` is a short decimal that accepts
    exactly the same sample scores (for the policy file). ``quality`` figures are on the
    calibration sample; ``strong_quality`` is the strong model's on the same sample;
    ``measure`` says what quality is (``accuracy`` against references, or ``agreement``
    with the strong model).
    """

    target: float
    delta: float
    n: int
    threshold: float | None
    short_threshold: float | None
    naive_threshold: float | None
    chosen: Point
    naive: Point
    strong_quality: float
    cheap_quality: float
    strong_cost: float
    cheap_cost: float
    curve: tuple[Point, ...]
    validators: tuple[ValidatorEffect, ...]
    measure: str = "accuracy"

    @property
    def savings(self) -> float:
        """Share of the strong model's cost saved at the chosen threshold."""
        return 1 - self.chosen.cost / self.strong_cost if self.strong_cost else 0.0

    @property
    def guarantee(self) -> str:
        """The statement the procedure proves, in words."""
        what = (
            f"agreement with the strong model is >= {self.target:g}"
            if self.measure == "agreement"
            else f"accuracy is >= {self.target:g} x the strong model's"
        )
        return (
            f"with probability >= {1 - self.delta:.0%} over the calibration sample, the "
            f"expected {what} on new traffic from the same distribution"
        )


def _accepts(s: Sample, t: float, skip: str | None = None) -> bool:
    if s.score is None or s.score < t:
        return False
    return all(ok for name, ok in s.passed.items() if name != skip)


def _measure(
    samples: Sequence[Sample], t: float, skip: str | None = None
) -> tuple[float, float, float]:
    """(quality, escalation rate, mean cost) of the cascade at ``t`` on ``samples``."""
    good = esc = 0
    cost = 0.0
    for s in samples:
        if _accepts(s, t, skip):
            good += s.cheap_ok
            cost += s.cheap_cost
        else:
            good += s.strong_ok
            esc += 1
            cost += s.cheap_cost + s.strong_cost
    n = len(samples)
    return good / n, esc / n, cost / n


def _losses(samples: Sequence[Sample], t: float, target: float) -> list[float]:
    # L = target * strong_ok - cascade_ok; E[L] <= 0 is "quality >= target x strong".
    return [target * s.strong_ok - (s.cheap_ok if _accepts(s, t) else s.strong_ok) for s in samples]


def betting_p_value(losses: Sequence[float], low: float, high: float, delta: float) -> float:
    """P-value of "E[loss] > 0" for i.i.d. losses in [low, high], by a test martingale.

    The losses are rescaled to [0, 1], where the null is ``E[x] >= a``; the capital
    ``prod(1 + lam_i (a - x_i))`` with ``lam_i`` chosen from the earlier losses only is a
    non-negative supermartingale under the null, so by Ville's inequality ``1 / max capital``
    is a valid p-value. ``lam_i`` follows Waudby-Smith & Ramdas' predictable plug-in.
    """
    width = high - low
    a = -low / width
    n = len(losses)
    if n == 0:
        return 1.0
    cap = 0.75 / (1 - a)  # keeps every factor positive with room to spare
    log_k = best = 0.0
    mean, var_sum = 0.5, 0.25
    total = 0.0
    for i, loss in enumerate(losses, 1):
        x = (loss - low) / width
        var = var_sum / i
        lam = min(math.sqrt(2 * math.log(1 / delta) / (n * var)), cap)
        log_k += math.log1p(lam * (a - x))
        best = max(best, log_k)
        var_sum += (x - mean) ** 2
        total += x
        mean = (0.5 + total) / (i + 1)
    return min(1.0, math.exp(-best))


def fixed_sequence(
    candidates: Sequence[Sequence[float]], low: float, high: float, delta: float
) -> tuple[list[float], int]:
    """Test candidates in order (strictest first); stop at the first p-value above ``delta``.

    Args: per candidate, the per-example losses (bounded by ``low``/``high``; the null is a
    positive mean loss). Returns the p-values computed and how many leading candidates are
    certified. The certified ones all have non-positive mean loss, jointly, with
    probability >= 1 - delta.
    """
    ps: list[float] = []
    for losses in candidates:
        p = betting_p_value(losses, low, high, delta)
        ps.append(p)
        if p > delta:
            return ps, len(ps) - 1
    return ps, len(ps)


def _grid(samples: Sequence[Sample], max_thresholds: int) -> list[float]:
    """Candidate thresholds, strictest first: the distinct scores (subsampled if many)."""
    scores = sorted({s.score for s in samples if s.score is not None}, reverse=True)
    if len(scores) > max_thresholds:
        step = len(scores) / max_thresholds
        scores = [scores[int(i * step)] for i in range(max_thresholds)] + [scores[-1]]
    return [math.inf, *scores]


def calibrate(
    samples: Sequence[Sample],
    *,
    target: float,
    delta: float = 0.05,
    max_thresholds: int = 400,
    seed: int = 0,
    measure: str = "accuracy",
) -> Calibration:
    """Choose the loosest threshold whose quality is certified to be >= target x strong's.

    Guarantee: with probability >= 1 - delta over the draw of the calibration sample (i.i.d.
    from the traffic), the expected quality of the cascade at the chosen threshold on new
    traffic from the same distribution is >= ``target`` times the strong model's expected
    quality. It is a statement about the expected (population) quality; a finite batch of
    new calls scatters around it.

    Args:
        samples: one per calibration example (order is irrelevant: it is shuffled with
            ``seed``, as the betting p-value needs a data-independent order).
        target: the relative quality to keep, in (0, 1].
        delta: the allowed probability that the guarantee fails.
        max_thresholds: the most candidate thresholds tested.
        measure: what ``cheap_ok`` means, for the wording (``accuracy`` or ``agreement``).
    Returns a ``Calibration``. Raises ValueError on an empty sample or a bad target.
    """
    if not samples:
        raise ValueError("no calibration samples")
    if not 0 < target <= 1 or not 0 < delta < 1:
        raise ValueError(f"need 0 < target <= 1 and 0 < delta < 1, got {target}, {delta}")
    order = list(samples)
    random.Random(seed).shuffle(order)
    grid = _grid(order, max_thresholds)
    candidates = [_losses(order, t, target) for t in grid]
    # Escalating everything has loss -(1 - target) * strong_ok <= 0 surely: certified as is.
    ps, certified = fixed_sequence(candidates[1:], -1.0, target, delta)
    ps = [0.0, *ps]
    certified += 1
    curve = []
    naive_at = 0
    for i, t in enumerate(grid):
        quality, esc, cost = _measure(order, t)
        p = ps[i] if i < len(ps) else math.nan
        curve.append(Point(t, quality, esc, cost, p, i < certified))
        if naive_at == i - 1 and sum(candidates[i]) <= 0:
            naive_at = i  # the naive walk: the sample mean alone, stopping at its first miss
    n = len(order)
    strong_quality = sum(s.strong_ok for s in order) / n
    chosen = curve[certified - 1]
    names = sorted({k for s in order for k in s.passed})
    effects = tuple(
        ValidatorEffect(
            name,
            sum(not s.passed.get(name, True) for s in order) / n,
            *_measure(order, chosen.threshold, skip=name)[::2],
        )
        for name in names
    )
    threshold = None if certified == 1 else chosen.threshold
    return Calibration(
        target=target,
        delta=delta,
        n=n,
        threshold=threshold,
        short_threshold=None if threshold is None else _short(threshold, order),
        naive_threshold=None if naive_at == 0 else grid[naive_at],
        chosen=chosen,
        naive=curve[naive_at],
        strong_quality=strong_quality,
        cheap_quality=sum(s.cheap_ok for s in order) / n,
        strong_cost=sum(
            s.strong_cost if s.baseline_cost is None else s.baseline_cost for s in order
        )
        / n,
        cheap_cost=sum(s.cheap_cost for s in order) / n,
        curve=tuple(curve),
        validators=effects,
        measure=measure,
    )


def _short(threshold: float, samples: Sequence[Sample]) -> float:
    """The shortest decimal <= threshold above every sample score below it."""
    below = max(
        (s.score for s in samples if s.score is not None and s.score < threshold), default=-math.inf
    )
    for digits in range(1, 17):
        scale = 10.0**digits
        v = math.floor(threshold * scale) / scale
        if below < v <= threshold:
            return v
    return threshold


def quality_at(samples: Sequence[Sample], threshold: float) -> tuple[float, float, float]:
    """(quality, escalation rate, mean cost) of the cascade at ``threshold`` on ``samples``:
    to check a calibration on fresh data."""
    return _measure(samples, threshold)
