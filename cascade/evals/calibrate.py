"""Choosing a confidence threshold that keeps quality on new traffic, not only on the sample.

``calibrate`` is pure: it takes one ``Sample`` per calibration example (the cheap answer's
confidence score, whether the cheap and the strong answers were good, what each cost, and
which other validators passed) and returns a ``Calibration``. Reading a store or running a
data file is done elsewhere (``cascade.evals.evaluate``, the ``calibrate`` sub-command).

What is bounded. The target is the cascade's quality as a share of the strong model's,
``E[cascade right] >= target x E[strong right]``. The cascade differs from the strong model
only where it keeps a cheap answer whose correctness differs from the strong one's, so the
target is ``P(lost) - P(gained) <= (1 - target) x P(strong right)``: ``lost`` = a kept cheap
answer is wrong where the strong one is right, ``gained`` = it is right where the strong one
is wrong. Gains offset losses, which makes this far less demanding than bounding the error
rate of the kept answers. From observation records quality is agreement with the strong
model: the strong answer is right by definition, nothing is gained, and the target is
``P(kept cheap answer disagrees) <= 1 - target``.

The test (``p_value``) is exact, with no normal approximation. For agreement, the count of
kept disagreeing answers is binomial. For accuracy, ``lost`` and ``gained`` are binomials given
the strong model's number of right answers; its accuracy and the rate of gains are bounded
with a small share of ``delta`` each, and the p-value is bounded over the unknown gain rate
(``cascade.evals.exact`` has the details).

Thresholds are tested by Learn then Test (Angelopoulos, Bates, Candes, Jordan, Lei, 2021) with
fixed-sequence testing, from the strictest (escalate everything) down; the first threshold not
certified stops the walk, which keeps the family-wise error at most ``delta`` without any
multiplicity correction. The loosest certified threshold is the cheapest one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from .exact import accuracy_p, binom_cdf

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Calibration",
    "Counts",
    "Point",
    "Sample",
    "ValidatorEffect",
    "calibrate",
    "fixed_sequence",
    "p_value",
    "quality_at",
]


@dataclass(frozen=True, slots=True)
class Sample:
    """One calibration example.

    ``score`` is the cheap answer's confidence (None when it was never measured: escalated);
    ``cheap_ok`` / ``strong_ok`` whether each answer was right (or, from observation records,
    ``cheap_ok`` = agrees with the strong answer and ``strong_ok`` = True); ``passed`` the
    verdicts of the cheap answer's other validators by name. ``cheap_cost`` is everything
    the cheap rung spent (verification calls included), ``strong_cost`` what escalating adds;
    ``cost_known`` is False when a model had no known price (the costs are then partial).
    """

    score: float | None
    cheap_ok: bool
    strong_ok: bool
    cheap_cost: float
    strong_cost: float
    passed: Mapping[str, bool] = field(default_factory=dict)
    baseline_cost: float | None = None  # the strong model alone (default: strong_cost)
    cost_known: bool = True


@dataclass(frozen=True, slots=True)
class Counts:
    """The cascade against the strong model on ``n`` examples, at one threshold.

    ``strong``: examples the strong model got right; ``lost``: the cascade wrong where the
    strong model is right; ``gained``: the cascade right where the strong model is wrong.
    """

    n: int
    strong: int
    lost: int
    gained: int


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
    ``measure`` says what quality is (``accuracy`` against references or labels, ``judged``
    by a judge model comparing the two answers, or ``agreement`` with the strong model).
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
    costs_known: bool = True  # False: a model had no known price; costs and savings unknown

    @property
    def savings(self) -> float:
        """Share of the strong model's cost saved at the chosen threshold."""
        return 1 - self.chosen.cost / self.strong_cost if self.strong_cost else 0.0

    @property
    def guarantee(self) -> str:
        """The statement the procedure proves, in words."""
        what = {
            "agreement": f"agreement with the strong model is >= {self.target:g}",
            "judged": f"quality as the judge rates it is >= {self.target:g} x the strong model's",
        }.get(self.measure, f"accuracy is >= {self.target:g} x the strong model's")
        return (
            f"with probability >= {1 - self.delta:.0%} over the calibration sample, the "
            f"expected {what} on new traffic from the same distribution"
        )

    @property
    def method(self) -> str:
        """What was tested, in words."""
        if self.measure == "agreement":
            return (
                "exact binomial test of kept cheap answers that disagree with the strong one "
                f"(<= {1 - self.target:.3g} of calls), fixed-sequence over thresholds"
            )
        return (
            "exact test of (kept wrong where strong right) - (kept right where strong wrong) "
            f"<= {1 - self.target:.3g} x strong accuracy, fixed-sequence over thresholds"
        )


@lru_cache(maxsize=4096)
def _p_value(counts: Counts, target: float, delta: float, agreement: bool) -> float:
    if agreement:
        return binom_cdf(counts.lost, counts.n, 1 - target)
    return accuracy_p(counts.n, counts.strong, counts.lost, counts.gained, target, delta)


def p_value(counts: Counts, *, target: float, delta: float, agreement: bool = False) -> float:
    """P-value of "the cascade's quality is below target x the strong model's", for level delta.

    A p-value <= delta certifies the threshold the counts come from. With ``agreement`` the
    strong answer is right by definition (``strong == n``, ``gained == 0``) and the p-value is
    the binomial ``P(Bin(n, 1 - target) <= lost)``. Otherwise ``_STRONG_SHARE +
    _NUISANCE_SHARE`` (4%) of ``delta`` is spent on the bounds on the strong model's accuracy
    and on the gain rate (``cascade.evals.exact``), so the p-value is only meaningful at that
    ``delta``.
    """
    if agreement and (counts.gained or counts.strong != counts.n):
        raise ValueError(f"agreement counts have strong == n and gained == 0, got {counts}")
    return _p_value(counts, target, delta, agreement)


def fixed_sequence(
    candidates: Iterable[Counts], *, target: float, delta: float, agreement: bool = False
) -> tuple[list[float], int]:
    """Test candidates in order (strictest first); stop at the first p-value above ``delta``.

    Returns the p-values computed and how many leading candidates are certified. All the
    certified ones meet the target, jointly, with probability >= 1 - delta.
    """
    ps: list[float] = []
    for counts in candidates:
        p = p_value(counts, target=target, delta=delta, agreement=agreement)
        ps.append(p)
        if p > delta:
            return ps, len(ps) - 1
    return ps, len(ps)


# -- calibration -----------------------------------------------------------------------------


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


def _sweep(samples: Sequence[Sample], grid: Sequence[float]) -> list[tuple[Counts, Point]]:
    """Counts and (p-value-less) points at each threshold of a descending grid, in one pass."""
    n = len(samples)
    strong = sum(s.strong_ok for s in samples)
    cost = sum(s.cheap_cost + s.strong_cost for s in samples)
    kept = sorted((s for s in samples if _accepts(s, -math.inf)), key=lambda s: -(s.score or 0))
    i = lost = gained = 0
    saved = 0.0
    out = []
    for t in grid:
        while i < len(kept) and (kept[i].score or 0) >= t:
            s = kept[i]
            lost += s.strong_ok and not s.cheap_ok
            gained += s.cheap_ok and not s.strong_ok
            saved += s.strong_cost
            i += 1
        quality = (strong - lost + gained) / n
        point = Point(t, quality, 1 - i / n, (cost - saved) / n, math.nan, False)
        out.append((Counts(n, strong, lost, gained), point))
    return out


def _grid(samples: Sequence[Sample], max_thresholds: int) -> list[float]:
    """Candidate thresholds, strictest first: the distinct scores (subsampled if many).

    Testing at the sample scores is testing every threshold: between two of them the
    sample's losses, hence the p-value, do not change."""
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
    measure: str = "accuracy",
) -> Calibration:
    """Choose the loosest threshold whose quality is certified to be >= target x strong's.

    Guarantee: with probability >= 1 - delta over the draw of the calibration sample (i.i.d.
    from the traffic), the expected quality of the cascade at the chosen threshold on new
    traffic from the same distribution is >= ``target`` times the strong model's expected
    quality. It is a statement about the expected (population) quality; a finite batch of
    new calls scatters around it.

    Args:
        samples: one per calibration example.
        target: the relative quality to keep, in (0, 1].
        delta: the allowed probability that the guarantee fails.
        max_thresholds: the most candidate thresholds tested.
        measure: ``accuracy`` (``strong_ok`` from references or labels), ``judged`` (the
            same test, correctness from a judge's verdicts) or ``agreement`` (every
            ``strong_ok`` True, ``cheap_ok`` = agrees with the strong answer).
    Returns a ``Calibration``. Raises ValueError on an empty sample, a bad target or delta,
    or agreement samples whose strong answer is not marked right.
    """
    if not samples:
        raise ValueError("no calibration samples")
    if not 0 < target <= 1 or not 0 < delta < 1:
        raise ValueError(f"need 0 < target <= 1 and 0 < delta < 1, got {target}, {delta}")
    if measure not in ("accuracy", "judged", "agreement"):
        raise ValueError(f"measure is accuracy, judged or agreement, got {measure!r}")
    agreement = measure == "agreement"
    if agreement and not all(s.strong_ok for s in samples):
        raise ValueError("agreement samples have strong_ok True (the strong answer is the key)")
    grid = _grid(samples, max_thresholds)
    sweep = _sweep(samples, grid)
    # Escalating everything loses nothing: certified as is.
    ps, certified = fixed_sequence(
        (c for c, _ in sweep[1:]), target=target, delta=delta, agreement=agreement
    )
    ps = [0.0, *ps]
    certified += 1
    curve = []
    naive_at = 0
    for i, (c, point) in enumerate(sweep):
        p = ps[i] if i < len(ps) else math.nan
        curve.append(replace(point, p_value=p, certified=i < certified))
        if naive_at == i - 1 and c.lost - c.gained <= (1 - target) * c.strong:
            naive_at = i  # the naive walk: the sample mean alone, stopping at its first miss
    n = len(samples)
    chosen = curve[certified - 1]
    names = sorted({k for s in samples for k in s.passed})
    effects = tuple(
        ValidatorEffect(
            name,
            sum(not s.passed.get(name, True) for s in samples) / n,
            *_measure(samples, chosen.threshold, skip=name)[::2],
        )
        for name in names
    )
    threshold = None if certified == 1 else chosen.threshold
    return Calibration(
        target=target,
        delta=delta,
        n=n,
        threshold=threshold,
        short_threshold=None if threshold is None else _short(threshold, samples),
        naive_threshold=None if naive_at == 0 else grid[naive_at],
        chosen=chosen,
        naive=curve[naive_at],
        strong_quality=sum(s.strong_ok for s in samples) / n,
        cheap_quality=sum(s.cheap_ok for s in samples) / n,
        strong_cost=sum(
            s.strong_cost if s.baseline_cost is None else s.baseline_cost for s in samples
        )
        / n,
        cheap_cost=sum(s.cheap_cost for s in samples) / n,
        curve=tuple(curve),
        validators=effects,
        measure=measure,
        costs_known=all(s.cost_known for s in samples),
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
