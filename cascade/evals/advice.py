"""Why a calibration certified nothing, and what would help, in terms a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .calibrate import Counts, p_value
from .edit import number_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .calibrate import Calibration, Sample

__all__ = ["counts_at", "examples_needed", "uncertified_advice"]

_MAX_EXAMPLES = 1_000_000


def counts_at(samples: Sequence[Sample], threshold: float) -> Counts:
    """The cascade against the strong model at ``threshold`` on ``samples``."""
    lost = gained = 0
    for s in samples:
        if s.score is not None and s.score >= threshold and all(s.passed.values()):
            lost += s.strong_ok and not s.cheap_ok
            gained += s.cheap_ok and not s.strong_ok
    return Counts(len(samples), sum(s.strong_ok for s in samples), lost, gained)


def examples_needed(counts: Counts, *, target: float, delta: float, agreement: bool) -> int | None:
    """The fewest examples at which the same rates of strong-right, lost and gained answers
    would be certified (None when the rates miss the target, or past a million examples)."""
    if counts.lost - counts.gained > (1 - target) * counts.strong:
        return None

    def ok(n: int) -> bool:
        k = n / counts.n
        c = Counts(
            n,
            n if agreement else round(counts.strong * k),
            round(counts.lost * k),
            0 if agreement else round(counts.gained * k),
        )
        return p_value(c, target=target, delta=delta, agreement=agreement) <= delta

    lo, hi = counts.n, counts.n * 2
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > _MAX_EXAMPLES:
            return None
    while hi - lo > max(1, lo // 50):  # within 2%: an estimate, not a promise
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def uncertified_advice(
    cal: Calibration, samples: Sequence[Sample], *, validator: str, comparator: str | None = None
) -> list[str]:
    """Why ``cal`` certified no threshold, then what would help (for ``cascade calibrate``).

    ``comparator`` is the agreement comparator of observation records (None for labelled
    data)."""
    agreement = cal.measure == "agreement"
    first = cal.curve[1] if len(cal.curve) > 1 else None
    lines = []
    if first is None:
        lines.append(f"why: no calibration example has a {validator} score")
    else:
        c = counts_at(samples, first.threshold)
        allowance = (1 - cal.target) * c.strong
        lines.append(
            f"why: even at the strictest threshold ({validator} >= {number_text(first.threshold)}, "
            f"escalating {first.escalation_rate:.1%}) the sample shows {c.lost} lost"
            + ("" if agreement else f" / {c.gained} gained")
            + f" against an allowance of {allowance:.1f} (p = {first.p_value:.3g} > delta "
            f"{cal.delta:g})"
        )
    lines.append("what would help:")
    if agreement:
        lines.append(
            f"- agreement: {{comparator: judge, model: ...}}: with {comparator or 'text'} "
            f"agreement every difference counts as a loss (the cheap model agreed on "
            f"{cal.cheap_quality:.1%}); a judge credits cheap answers as good as or better "
            "than the strong one's"
        )
    naive = None if cal.naive_threshold is None else counts_at(samples, cal.naive_threshold)
    need = (
        None
        if naive is None
        else examples_needed(naive, target=cal.target, delta=cal.delta, agreement=agreement)
    )
    if need is not None and cal.naive_threshold is not None:
        lines.append(
            f"- more examples: at the rates seen at {validator} >= "
            f"{number_text(cal.naive_threshold)} "
            f"(sample quality {cal.naive.quality / max(cal.strong_quality, 1e-12):.1%} of the "
            f"strong model's), about {need:,} examples would certify it (now {cal.n:,})"
        )
    else:
        lines.append(
            "- more examples alone will not do: no threshold meets the target even on this sample"
        )
    if cal.measure != "accuracy":
        lines.append(
            '- labelled examples: cascade calibrate --data FILE ("reference" or "labels" per '
            "example)"
        )
    lines.append("- or a lower --target; until then keep mode: strong (the strong model alone)")
    return lines
