"""The statistics behind the report's claims: exact intervals, a stratified test, FDR control.

Pure functions on counts, no I/O, standard library only.

- ``clopper_pearson``: the exact binomial interval, from the beta quantiles.
- ``rate_interval``: the escalation rate of a group whose passing calls were sampled with
  probability ``p`` and whose escalated ones were all kept. Among the group's stored records,
  each is escalated with probability ``theta = r / (r + (1 - r) p)``, independently, whatever
  the number stored; so the exact interval of ``theta`` (Clopper-Pearson on the stored
  records) maps, through the increasing ``r = theta p / (1 - theta + theta p)``, to an exact
  interval of ``r``. With ``p = 1`` it is Clopper-Pearson on the calls themselves.
- ``cmh``: the one-sided Cochran-Mantel-Haenszel test of a 2x2 table per stratum. Sampling
  the passing calls at a rate shared by both columns of a stratum leaves its odds ratio
  unchanged (a case-control design), so the test runs on the stored counts as they are.
- ``benjamini_hochberg``: the step-up procedure; ``fcr_alpha``: the level of the intervals of
  the selected claims that keeps their false coverage rate at ``q`` (Benjamini and Yekutieli,
  2005), so that selecting the most striking groups does not make their intervals lie.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "benjamini_hochberg",
    "beta_quantile",
    "clopper_pearson",
    "cmh",
    "fcr_alpha",
    "rate_interval",
    "rate_of",
    "rate_of_share",
]

_EPS = 1e-15


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # fmt: skip
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1.0 + aa / c
            c = c if abs(c) > 1e-300 else 1e-300
            h *= d * c
        if abs(d * c - 1.0) < 3e-16:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )  # fmt: skip
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection (about 1e-12 absolute)."""
    lo, hi = 0.0, 1.0
    for _ in range(42):  # 2**-42: far below any shown digit
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact two-sided ``1 - alpha`` interval of a proportion ``k / n`` ((0, 1) if n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    lo = 0.0 if k <= 0 else beta_quantile(alpha / 2, k, n - k + 1)
    hi = 1.0 if k >= n else beta_quantile(1 - alpha / 2, k + 1, n - k)
    return lo, hi


def rate_of_share(theta: float, p: float) -> float:
    """The escalation rate of a group whose stored records are escalated in share ``theta``,
    its passing calls stored with probability ``p`` (``theta`` mapped back, see above)."""
    p = min(max(p, _EPS), 1.0)
    return theta * p / (1.0 - theta + theta * p) if theta < 1.0 else 1.0


def rate_of(escalated: float, rest: float) -> float:
    """``escalated / (escalated + rest)``, 0 when both are 0 (``rest``: estimated calls)."""
    total = escalated + rest
    return escalated / total if total > 0 else 0.0


def rate_interval(
    escalated: int, kept_rest: int, p: float, alpha: float = 0.05
) -> tuple[float, float]:
    """The exact ``1 - alpha`` interval of an escalation rate from stored records.

    ``escalated``: the group's escalated calls (all kept); ``kept_rest``: its stored calls
    that did not escalate, each kept with probability ``p`` (0 < p <= 1).
    """
    lo, hi = clopper_pearson(escalated, escalated + kept_rest, alpha)
    p = min(max(p, _EPS), 1.0)
    return rate_of_share(lo, p), rate_of_share(hi, p)


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def cmh(tables: Iterable[tuple[int, int, int, int]]) -> tuple[float, float]:
    """(z, one-sided p) of the Cochran-Mantel-Haenszel test that the first column escalates
    more often than the second, within each stratum.

    Each table is ``(escalated with, kept with, escalated in the stratum, kept in the
    stratum)``: stored counts. Continuity-corrected; (0, 1) when no stratum informs.
    """
    observed = expected = variance = 0.0
    for a, n1, m1, n in tables:
        if n < 2 or n1 <= 0 or n1 >= n or m1 <= 0 or m1 >= n:
            continue  # one column, or one outcome: the stratum says nothing
        observed += a
        expected += n1 * m1 / n
        variance += n1 * (n - n1) * m1 * (n - m1) / (n * n * (n - 1))
    if variance <= 0:
        return 0.0, 1.0
    z = (observed - expected - 0.5) / math.sqrt(variance)
    return z, _normal_sf(z)


def benjamini_hochberg(p_values: Sequence[float], q: float = 0.05) -> list[float]:
    """The BH-adjusted p-values (q-values); those <= ``q`` are the discoveries at FDR ``q``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(running, 1.0)
    return adjusted


def fcr_alpha(selected: int, tested: int, q: float = 0.05) -> float:
    """The per-interval ``alpha`` that keeps the false coverage rate of ``selected`` intervals,
    chosen among ``tested``, at ``q`` (Benjamini and Yekutieli, 2005)."""
    if tested <= 0:
        return q
    return q * max(selected, 1) / tested
