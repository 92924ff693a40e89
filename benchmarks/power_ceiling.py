"""A ceiling on the power of any valid test of MMLU's "cost <= 45%" thresholds from 285 queries.

    python benchmarks/power_ceiling.py       # data: $CASCADE_DATA or ../shared/data

The question: the MMLU cascade (gpt-4o-mini, kept when the answer token's probability is at
least ``t``, else gpt-4o) is calibrated on the 285-query train split for 97% of gpt-4o's
accuracy; could a statistically valid calibration have been expected to certify a threshold
whose cost is at most 45% of gpt-4o's? The argument, with the 1531-query test split taken as
the population (the distribution the 285 calibration queries are drawn from):

- At a threshold ``t``, each query falls in one cell: *lost* (kept, gpt-4o-mini wrong and
  gpt-4o right), *gained* (kept, gpt-4o-mini right and gpt-4o wrong) or the rest, with
  rates ``a``, ``b`` and ``c = 1 - a - b``. The target holds when ``a - b <= 0.03 P(S)``,
  ``P(S)`` gpt-4o's accuracy; a valid level-``delta`` test certifies ``t`` with probability
  at most ``delta`` under every distribution where it fails.
- The window: the thresholds whose cost share (gpt-4o-mini on every query plus gpt-4o when
  escalated, over gpt-4o on all, as ``recorded.py`` counts it) is at most 45% and whose
  quality share (cascade accuracy over gpt-4o's) is at least 97% on the population. Each
  gives an alternative P1: the population itself.
- Against each P1, a null Q0: P1 with mass ``x`` moved between the two cells (``a0 = a + w
  x``, ``b0 = b - (1 - w) x``) and the rest scaled by one factor, ``x`` just past the
  boundary ``a0 - b0 = 0.03 P_Q0(S)``. Q0 is a distribution of (score, gpt-4o-mini right,
  gpt-4o right) on which the target fails, so every valid test has size at most ``delta``
  under it. Given the cell, Q0 and P1 are the same distribution, so the likelihood ratio
  P1/Q0 of a sample of ``n`` depends only on its counts (lost, gained), and the
  Neyman-Pearson test on those multinomial counts (randomised at the boundary) is the most
  powerful level-``delta`` test of Q0 against P1. Its power bounds the power of every valid
  test at ``t``, whatever its statistic and whatever use it makes of the scores; each split
  ``w`` (0, 0.05, ..., 1) gives a bound, the smallest is shown.
- Assumption: Q0 and P1 are fully specified, so the bound is that of a test which in effect
  knows gpt-4o's accuracy (and every other feature of the distribution) and has to be valid
  against Q0 alone. A real test must estimate these and be valid against the whole null;
  that can only lower its power, so the bound stays valid.

Printed: the window; for each ``--delta`` the largest bound over the window at n = 285, at
that threshold the bound for larger calibration sets; and the train split's own counts at the
window's thresholds. The bound is per threshold: the probability that a valid calibration
certifies a given threshold of the window is at most the bound shown.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cascade.pricing import price_of
from cascade.testing import load_recorded

if TYPE_CHECKING:
    from collections.abc import Sequence

HERE = Path(__file__).resolve().parent
CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"
FLOOR = -1e4  # the replay server's stand-in for a logprob of -inf
SPLITS = [k / 20 for k in range(21)]  # w: the share of the move that goes onto the lost cell
TAIL_SDS = 12  # counts farther than this many standard deviations out are left off (see np_power)


def data_dir() -> Path:
    return Path(os.environ.get("CASCADE_DATA") or HERE.parent.parent / "shared" / "data")


# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One recorded split, query by query: gpt-4o-mini's confidence, both models' correctness
    and the cost of each model's answer in USD."""

    score: list[float]
    cheap_ok: list[bool]
    strong_ok: list[bool]
    cheap_cost: list[float]
    strong_cost: list[float]

    @classmethod
    def load(cls, path: Path) -> Split:
        """MMLU's confidence is the answer token's probability: no verification call to bill."""
        records = load_recorded(path)
        assert all(r["conf_signal"] == "ModelIntrinsicLogProb" for r in records), path
        cheap, strong = price_of(CHEAP), price_of(STRONG)
        assert cheap is not None and strong is not None
        mini = [r["models"][CHEAP] for r in records]
        g4o = [r["models"][STRONG] for r in records]
        return cls(
            [math.exp(max(float(m["raw_confidence"]), FLOOR)) for m in mini],
            [bool(m["correct"]) for m in mini],
            [bool(m["correct"]) for m in g4o],
            [float(cheap.cost(m["tokens_in"], m["tokens_out"])) for m in mini],
            [float(strong.cost(m["tokens_in"], m["tokens_out"])) for m in g4o],
        )

    def __len__(self) -> int:
        return len(self.score)


@dataclass(frozen=True)
class Point:
    """The cascade at threshold ``t`` on one split: counts, and quality and cost as shares of
    gpt-4o alone."""

    t: float
    lost: int
    gained: int
    quality: float
    cost: float


def sweep(split: Split) -> list[Point]:
    """Every distinct score as a threshold (keep when score >= t), strictest first."""
    order = sorted(range(len(split)), key=lambda i: -split.score[i])
    strong_right, base = sum(split.strong_ok), sum(split.strong_cost)
    lost = gained = j = 0
    spent = base + sum(split.cheap_cost)  # nothing kept: every query escalated
    out = []
    for t in sorted(set(split.score), reverse=True):
        while j < len(order) and split.score[order[j]] >= t:
            i = order[j]
            lost += split.strong_ok[i] and not split.cheap_ok[i]
            gained += split.cheap_ok[i] and not split.strong_ok[i]
            spent -= split.strong_cost[i]
            j += 1
        quality = (strong_right - lost + gained) / strong_right
        out.append(Point(t, lost, gained, quality, spent / base))
    return out


def counts(split: Split, t: float) -> tuple[int, int]:
    """(lost, gained) of the cascade at threshold t."""
    kept = [i for i in range(len(split)) if split.score[i] >= t]
    return (
        sum(split.strong_ok[i] and not split.cheap_ok[i] for i in kept),
        sum(split.cheap_ok[i] and not split.strong_ok[i] for i in kept),
    )


# -- the bound -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cells:
    """Rates of the lost and gained cells at one threshold, and P(gpt-4o right)."""

    lost: float
    gained: float
    strong: float

    @property
    def rest(self) -> float:
        return 1.0 - self.lost - self.gained


def least_favourable(p1: Cells, w: float, eps: float) -> Cells | None:
    """Q0: P1 with mass moved onto the lost cell (share ``w``) from the gained one, the rest
    scaled by one factor, just past the boundary lost - gained = eps P(strong right); None when
    the gained cell cannot give that much.

    With ``c = rest`` and ``s = strong``, the gap ``lost - gained - eps P(S)`` after a move ``x``
    is ``gap(0) + x (1 - eps w + eps (2w - 1) (s - lost) / c)``: linear, so solved exactly.
    """
    gap = p1.lost - p1.gained - eps * p1.strong
    slope = 1 - eps * w + eps * (2 * w - 1) * (p1.strong - p1.lost) / p1.rest
    x = -gap / slope * (1 + 1e-9)  # just past the boundary: Q0 must fail the target
    lost, gained = p1.lost + w * x, p1.gained - (1 - w) * x
    if gained < 0 or lost + gained >= 1:
        return None
    scale = (1 - lost - gained) / p1.rest
    return Cells(lost, gained, lost + scale * (p1.strong - p1.lost))


def _log_rate(k: int, p: float) -> float:
    """k log p, with 0 log 0 = 0."""
    if k == 0:
        return 0.0
    return k * math.log(p) if p > 0 else -math.inf


def np_power(n: int, q0: Cells, p1: Cells, deltas: Sequence[float]) -> list[float]:
    """Power at P1 of the most powerful level-delta test of Q0 against P1 from n queries, for
    each delta: the randomised Neyman-Pearson test on the multinomial counts (lost, gained).

    Counts beyond ``TAIL_SDS`` standard deviations are left off; their P1 probability is added
    to the power, which keeps the result an upper bound."""
    lgam = [math.lgamma(k + 1) for k in range(n + 1)]

    def reach(a: float, b: float) -> int:
        r = max(a, b)
        return min(n, int(n * r + TAIL_SDS * math.sqrt(n * r) + 20))

    cells = []  # (log likelihood ratio, Q0 probability, P1 probability)
    for lost in range(reach(q0.lost, p1.lost) + 1):
        for gained in range(min(reach(q0.gained, p1.gained), n - lost) + 1):
            rest = n - lost - gained
            coef = lgam[n] - lgam[lost] - lgam[gained] - lgam[rest]
            log0 = (
                _log_rate(lost, q0.lost) + _log_rate(gained, q0.gained) + _log_rate(rest, q0.rest)
            )
            log1 = (
                _log_rate(lost, p1.lost) + _log_rate(gained, p1.gained) + _log_rate(rest, p1.rest)
            )
            cells.append((log1 - log0, math.exp(coef + log0), math.exp(coef + log1)))
    cells.sort(key=lambda cell: -cell[0])
    left_off = max(0.0, 1.0 - sum(p for _, _, p in cells))
    out = []
    for delta in deltas:
        size = power = 0.0
        for _, p0, p in cells:
            if size + p0 <= delta:
                size, power = size + p0, power + p
            else:  # randomise on the cell where the size runs out
                power += p * (delta - size) / p0
                break
        out.append(min(1.0, power + left_off))
    return out


def bound(n: int, p1: Cells, deltas: Sequence[float], eps: float) -> list[float]:
    """For each delta, the least NP power at P1 over the nulls Q0 of every split w."""
    best = [1.0] * len(deltas)
    for w in SPLITS:
        q0 = least_favourable(p1, w, eps)
        if q0 is not None:
            best = [min(b, p) for b, p in zip(best, np_power(n, q0, p1, deltas), strict=True)]
    return best


# -- output ----------------------------------------------------------------------------------


def run(train: Split, test: Split, args: argparse.Namespace) -> None:
    eps, deltas, (n, *larger) = 1 - args.target, args.delta, args.n
    size, strong_right = len(test), sum(test.strong_ok)
    window = [p for p in sweep(test) if p.cost <= args.max_cost and p.quality >= args.target]
    if not window:
        print(f"no test-split threshold has cost <= {args.max_cost:.0%} and quality >= target")
        return
    print(
        f"population: MMLU test split, {size} queries, gpt-4o right on {strong_right} "
        f"({strong_right / size:.1%}); target {args.target:.0%} of gpt-4o's accuracy"
    )
    print(
        f"window: {len(window)} thresholds with cost <= {args.max_cost:.0%} and quality >= "
        f"{args.target:.0%}, t from {window[-1].t:.6f} (cost {window[-1].cost:.1%}) to "
        f"{window[0].t:.6f} (cost {window[0].cost:.1%})"
    )

    def cells(p: Point) -> Cells:
        return Cells(p.lost / size, p.gained / size, strong_right / size)

    bounds: dict[tuple[int, int], list[float]] = {}  # thresholds with equal counts: one bound
    for p in window:
        if (p.lost, p.gained) not in bounds:
            bounds[p.lost, p.gained] = bound(n, cells(p), deltas, eps)
    print(f"\nupper bound on the power of any valid level-delta test, calibration on n = {n}:")
    for k, delta in enumerate(deltas):
        top = max(window, key=lambda p: bounds[p.lost, p.gained][k])  # the first of equals
        print(
            f"delta {delta:g}: max over the window {bounds[top.lost, top.gained][k]:.3f} at "
            f"t={top.t:.6f} (lost {top.lost}, gained {top.gained} of {size}; cost "
            f"{top.cost:.1%}, quality {top.quality:.1%})"
        )
        for m in larger:
            print(f"   same threshold, n = {m}: {bound(m, cells(top), [delta], eps)[0]:.3f}")

    train_right = sum(train.strong_ok)
    print(
        f"\ntrain split ({len(train)} queries, gpt-4o right on {train_right}: the target allows "
        f"lost - gained <= {eps * train_right:.2f}) at the window's thresholds:"
    )
    runs: list[tuple[float, float, tuple[int, int]]] = []  # thresholds with equal train counts
    for p in window:
        got = counts(train, p.t)
        if runs and runs[-1][2] == got:
            runs[-1] = (runs[-1][0], p.t, got)
        else:
            runs.append((p.t, p.t, got))
    for high, low, (lost, gained) in runs:
        print(f"   t {low:.6f} to {high:.6f}: lost {lost}, gained {gained}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Prints the window of thresholds, the largest Neyman-Pearson power bound over "
        "it per delta (at the first --n, then at the others), and the train split's counts.",
    )
    parser.add_argument("--data", default=str(data_dir()), help="the shared data directory")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--max-cost", type=float, default=0.45, help="cost share of the window")
    parser.add_argument("--delta", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument(
        "--n", type=int, nargs="+", default=[285, 1000, 2000, 4000, 8000],
        help="calibration sizes: the window's maximum is taken at the first",
    )  # fmt: skip
    args = parser.parse_args(argv)
    rec = Path(args.data) / "recorded"
    if not rec.is_dir():
        print(f"no recorded data in {args.data} (set CASCADE_DATA)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    run(
        Split.load(rec / "mmlu_qwen_oai_train.jsonl"),
        Split.load(rec / "mmlu_qwen_oai_test.jsonl"),
        args,
    )
    sys.stdout.flush()
    print(f"({time.perf_counter() - start:.0f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
