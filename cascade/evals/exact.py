"""Exact tests for ``cascade.evals.calibrate``: binomial tails, Clopper-Pearson bounds, and the
p-value of the accuracy target with the strong model's accuracy and the gain rate unknown.

For accuracy, given the number ``s`` of examples the strong model got right, ``lost`` and
``gained`` are independent binomials, ``Bin(s, a)`` and ``Bin(n - s, b)``, and the target is
``a - rho b <= 1 - target`` with ``rho = (1 - P(strong right)) / P(strong right)``. ``rho`` is
replaced by its lower confidence bound (``_STRONG_SHARE`` of ``delta``), which only widens
the null. The nuisance ``b`` is limited to its upper confidence bound (``_NUISANCE_SHARE`` of
``delta``: Berger & Boos, 1994) and the p-value, the largest probability of a studentized
statistic at least as extreme as the observed one on the null's boundary, is bounded over
``b`` by branch and bound with a Lipschitz bound from the Fisher information. No normal
approximation anywhere.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["accuracy_p", "binom_cdf", "upper_bound"]

_STRONG_SHARE = 0.02  # of delta, for the bound on the strong model's accuracy
_NUISANCE_SHARE = 0.02  # of delta, for the bound on P(gained | strong wrong)
_MAX_EVALS = 400  # branch and bound: evaluations of the tail probability per p-value


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summing the shorter tail outward from k until terms vanish."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    lower = k < n * p  # below the mean the terms fall going down; above it, going up
    j, step = (k, -1) if lower else (k + 1, 1)
    total = 0.0
    while 0 <= j <= n:
        term = math.exp(_log_pmf(j, n, p))
        total += term
        if term <= 1e-18 * total:
            break
        j += step
    return min(1.0, total) if lower else max(0.0, 1.0 - total)


def upper_bound(k: int, n: int, alpha: float) -> float:
    """Clopper-Pearson upper confidence bound, level 1 - alpha, for k successes in n."""
    if k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if binom_cdf(k, n, mid) > alpha else (lo, mid)
    return hi


def _pmfs(n: int, p: float, upto: int) -> list[float]:
    """P(Binomial(n, p) = k) for k = 0..upto, by a log-space recurrence (no underflow)."""
    if p <= 0.0:
        return [1.0] + [0.0] * upto
    if p >= 1.0:
        return [1.0 if k == n else 0.0 for k in range(upto + 1)]
    out, log = [], n * math.log1p(-p)
    odds = math.log(p) - math.log1p(-p)
    for k in range(min(upto, n) + 1):
        out.append(math.exp(log))
        log += math.log(n - k) - math.log(k + 1) + odds if k < n else 0.0
    return out + [0.0] * (upto + 1 - len(out))


def _sup(
    f: Callable[[float], float], info: Callable[[float, float], float], hi: float, tol: float
) -> float:
    """An upper bound of ``max f`` on ``[0, hi]``, within ``tol`` when the budget allows.

    ``f`` is a probability whose derivative obeys ``|f'| <= sqrt(f * info(x1, x2))`` on
    ``[x1, x2]`` (Cauchy-Schwarz with the score: ``|f'| <= sqrt(f (1 - f) I)``). On an interval
    of width h with end values f1, f2 and max M, ``M <= (f1 + f2)/2 + sqrt(M I) h/2``, which
    bounds M; intervals whose bound exceeds the best value found are split.
    """
    xs = [hi * i / 16 for i in range(17)]
    ys = [f(x) for x in xs]
    spans = list(zip(xs, xs[1:], ys, ys[1:], strict=False))
    evals = len(xs)

    def bound(a: float, b: float, fa: float, fb: float) -> float:
        c = math.sqrt(info(a, b)) * (b - a) / 2
        return ((c + math.sqrt(c * c + 2 * (fa + fb))) / 2) ** 2

    while True:
        best = max(ys)
        bounds = [bound(*s) for s in spans]
        top = max(bounds)
        if top - best <= tol or evals >= _MAX_EVALS:
            return min(1.0, top)
        kept = []
        for s, b in zip(spans, bounds, strict=True):
            if b <= best + tol or evals >= _MAX_EVALS:
                kept.append(s)
                continue
            a, z, fa, fz = s
            mid = (a + z) / 2
            fm = f(mid)
            ys.append(fm)
            evals += 1
            kept += [(a, mid, fa, fm), (mid, z, fm, fz)]
        spans = kept


def accuracy_p(n: int, s: int, lost: int, gained: int, target: float, delta: float) -> float:
    """P-value of ``lost/n - gained/n > (1 - target) x P(strong right)`` (see the module
    docstring): ``s`` of ``n`` examples the strong model got right, ``lost`` of those the
    cascade got wrong, ``gained`` of the others it got right."""
    m, eps = n - s, 1 - target
    if s == 0:
        return 1.0
    strong_hi = upper_bound(s, n, _STRONG_SHARE * delta)
    rho = (1 - strong_hi) / strong_hi  # lower bound of (1 - P(strong right)) / P(strong right)
    r = rho * s / m if m else 0.0

    def stat(lo: float, ga: float) -> float:
        return (eps * s - lo + r * ga) / math.sqrt(lo + r * r * ga + 1)

    t = stat(lost, gained)
    if t <= 0:
        return 1.0
    b_hi = upper_bound(gained, m, _NUISANCE_SHARE * delta) if m else 0.0
    if rho > 0:
        b_hi = min(b_hi, (1 - eps) / rho)  # keeps P(lost | strong right) <= 1
    # gained' beyond g_max is counted as extreme (its probability is in 1 - mass below)
    g_max = min(m, math.ceil(m * b_hi + 12 * math.sqrt(m * b_hi) + 12))
    # largest lost' with stat(lost', g) >= t, per g (the statistic falls as lost' grows)
    most: list[int] = []
    for g in range(g_max + 1):
        a, b = eps * s + r * g, r * r * g + 1
        root = (-t + math.sqrt(t * t + 4 * (a + b))) / 2
        k = max(-1, min(s, math.floor(root * root - b)))
        while k + 1 <= s and stat(k + 1, g) >= t - 1e-12:
            k += 1
        while k >= 0 and stat(k, g) < t - 1e-12:
            k -= 1
        most.append(k)
    top = max(most)

    def tail(phi: float) -> float:  # P(stat >= t) on the null's boundary, b = sin(phi)^2
        b = math.sin(phi) ** 2
        cdf, acc = [], 0.0
        for x in _pmfs(s, min(1.0, eps + rho * b), max(top, 0)):
            acc += x
            cdf.append(acc)
        total = mass = 0.0
        for g, w in enumerate(_pmfs(m, b, g_max)):
            mass += w
            if most[g] >= 0:
                total += w * cdf[most[g]]
        return min(1.0, total + max(0.0, 1.0 - mass))  # mass lost to rounding counted in

    def info(x: float, z: float) -> float:  # Fisher information in phi, bounded on [x, z]
        bx, bz = math.sin(x) ** 2, math.sin(z) ** 2
        bq = 0.25 if bx <= 0.5 <= bz else max(bx * (1 - bx), bz * (1 - bz))
        ax, az = eps + rho * bx, eps + rho * bz
        aq = min(ax * (1 - ax), az * (1 - az))
        return 4 * m + (4 * rho * rho * s * bq / aq if rho > 0 else 0.0) if aq > 0 else math.inf

    sup = _sup(tail, info, math.asin(math.sqrt(b_hi)), delta / 200)
    return min(1.0, sup + (_NUISANCE_SHARE + _STRONG_SHARE) * delta)
