"""Why calls escalate: patterns in the sampled records, and what to change about them.

``PatternCollector`` streams over one task's sampled records once and keeps only counters
and bounded samples; ``patterns_of`` turns one or several collectors, with the exact daily
counters of their tasks, into ``Patterns``. Passing calls are sampled (``sample_passes``)
while escalated and failed ones are always kept, so every stored record counts
``1 / its inclusion probability`` calls, over exactly the records read (records stored
without one: the pass-sampling rate estimated from the counters). The streaming part is
``collect``, the tests ``associations`` (on ``stats``), the near-duplicate groups ``text``,
the suggestions ``suggest``, the values ``values``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .associations import associations, pass_inclusion
from .collect import SIZE_BUCKETS, Bin, PatternCollector, merged_reasons, normalise_reason
from .stats import rate_interval
from .suggest import suggestions
from .text import duplicate_groups
from .values import (
    DuplicateGroup,
    FeatureRate,
    Patterns,
    ReasonCount,
    SizeBucket,
    Suggestion,
    Term,
    Totals,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "SIZE_BUCKETS",
    "Bin",
    "DuplicateGroup",
    "FeatureRate",
    "PatternCollector",
    "Patterns",
    "ReasonCount",
    "SizeBucket",
    "Suggestion",
    "Term",
    "Totals",
    "normalise_reason",
    "patterns_of",
]


def patterns_of(
    parts: Sequence[tuple[PatternCollector, Totals]],
    *,
    top: int = 10,
    min_count: int = 5,
    observed_action: str | None = None,
    certified: Collection[str] = (),
) -> Patterns:
    """The patterns of one task (one part) or of several merged (the overall report).

    ``min_count`` is the least number of escalated inputs (and of stored inputs without it)
    a term or feature value needs to be tested, and of escalated calls behind a suggestion.
    ``observed_action`` is what observe mode recommends for these calls (``switch``...),
    which no suggestion may contradict; ``certified`` the validators whose threshold
    ``cascade calibrate`` certified (never suggested lower).
    """

    if not parts:
        return Patterns()
    weighted = [(c, c.legacy_weight(t)) for c, t in parts]
    sampled = sum(c.sampled for c, _ in parts)
    passed = sum(c.passed for c, _ in parts)
    rate = None
    if passed:
        known = sum(c.all.rest(w) for c, w in weighted) - sum(
            c.all.kept - c.passed for c, _ in weighted
        )
        rate = passed / known if known > 0 else None
    reasons = _top_reasons([c for c, _ in parts], top)
    dups = duplicate_groups([c.dup_sample for c, _ in parts], limit=parts[0][0].dup_limit)
    kept = sum(c.all.kept for c, _ in parts)
    if not kept and any(t.calls > t.escalations + t.not_ok for _, t in parts):
        # Calls passed but none was stored: how many passes a group had is unknown, so
        # every rate is, too (an estimate would read 100% everywhere).
        return Patterns(sampled_records=sampled, reasons=reasons, duplicates=dups[:top])
    p_all = pass_inclusion(weighted)
    sizes = _merged([dict(c.sizes.items()) for c, _ in weighted])
    size_buckets = tuple(
        SizeBucket(label, calls, esc, esc / calls if calls else 0.0, *interval)
        for label, _ in SIZE_BUCKETS
        for calls, esc, interval in [_weighed(sizes.get(label, []), weighted, p_all)]
        if calls
    )
    feats = _merged([dict(c.features) for c, _ in weighted])
    features = sorted(
        (
            FeatureRate(name, value, calls, esc, esc / calls, *interval)
            for (name, value), bins in feats.items()
            for calls, esc, interval in [_weighed(bins, weighted, p_all)]
            if calls
        ),
        key=lambda f: (f.feature, -f.calls),
    )
    found = associations(weighted, min_count=min_count)
    by_validator = _by_validator(weighted, found.terms, top)
    base = Patterns(
        sampled_records=sampled,
        pass_sampling_rate=rate,
        size_buckets=size_buckets,
        features=tuple(features),
        terms=found.terms[:top],
        terms_by_validator=by_validator,
        reasons=reasons,
        duplicates=dups[:top],
        tested=found.tested,
        window_rate=found.overall_rate,
    )
    made = suggestions(
        base, parts, weighted, found, min_count=min_count, observed_action=observed_action,
        certified=certified,
    )  # fmt: skip
    return replace(base, suggestions=tuple(made))


def _by_validator(
    parts: Sequence[tuple[PatternCollector, float]], terms: Sequence[Term], top: int
) -> dict[str, tuple[Term, ...]]:
    """Validator -> the claimed terms most of whose escalated inputs it caused."""
    out: dict[str, tuple[Term, ...]] = {}
    for v in sorted({v for c, _ in parts for v in c.terms_by_validator}):
        tables = [c.terms_by_validator[v] for c, _ in parts if v in c.terms_by_validator]
        mine = [t for t in terms if 2 * sum(tb[t.term] for tb in tables) > t.escalated]
        if mine:
            out[v] = tuple(mine[:top])
    return out


def _merged(tables: Sequence[Mapping[Any, Bin]]) -> dict[Any, list[Bin | None]]:
    """Key -> the bin of each table (None where a table lacks it), aligned with ``tables``."""
    keys: dict[Any, None] = {}
    for t in tables:
        keys.update(dict.fromkeys(t))
    return {k: [t.get(k) for t in tables] for k in keys}


def _weighed(
    bins: Sequence[Bin | None], parts: Sequence[tuple[Any, float]], p_all: float
) -> tuple[float, int, tuple[float, float]]:
    """(estimated calls, escalations, exact 95% interval of the rate) of aligned bins."""
    calls = rest = 0.0
    esc = kept = 0
    for b, (_, w) in zip(bins, parts, strict=True):
        if b is not None:
            calls += b.calls(w)
            rest += b.rest(w)
            esc += b.escalated
            kept += b.kept
    share = kept / rest if rest > 0 else p_all
    return calls, esc, rate_interval(esc, kept, share)


def top_reasons_by_validator(
    collectors: Sequence[PatternCollector], top: int
) -> dict[str, tuple[ReasonCount, ...]]:
    """Validator -> its ``top`` most frequent normalised reasons."""
    return {
        validator: tuple(
            ReasonCount(norm, n, ex)
            for norm, (n, ex) in sorted(table.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top]
        )
        for validator, table in sorted(merged_reasons(collectors).items())
    }


def _top_reasons(
    collectors: Sequence[PatternCollector], top: int
) -> tuple[tuple[str, ReasonCount], ...]:
    flat = [
        (validator, r)
        for validator, reasons in top_reasons_by_validator(collectors, top).items()
        for r in reasons
    ]
    flat.sort(key=lambda vr: (-vr[1].calls, vr[0], vr[1].reason))
    return tuple(flat[:top])
