"""Why calls escalate: patterns in the sampled records, and what to change about them.

``PatternCollector`` streams over one task's sampled records once and keeps only counters
and bounded samples; ``patterns_of`` turns one or several collectors, with the exact daily
counters of their tasks, into ``Patterns``. Passing calls are sampled (``sample_passes``)
while escalated and failed ones are always kept, so every rate here re-weights the sampled
passes by the task's estimated pass-sampling rate: ``sampled passes / passing calls``.
The streaming part is ``collect``, the word statistics and near-duplicate groups
``text``, the suggestions ``suggest``, the values ``values``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .collect import SIZE_BUCKETS, Bin, PatternCollector, merged_reasons, normalise_reason
from .suggest import suggestions
from .text import duplicate_groups, over_represented
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
    from collections.abc import Mapping, Sequence

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
    parts: Sequence[tuple[PatternCollector, Totals]], *, top: int = 10, min_count: int = 5
) -> Patterns:
    """The patterns of one task (one part) or of several merged (the overall report).

    ``min_count`` is the least number of escalated calls a group, term or reason needs
    before it is reported or suggested on.
    """

    if not parts:
        return Patterns()
    weighted = [(c, t, c.pass_weight(t)) for c, t in parts]
    known = [(c, w) for c, _, w in weighted if w is not None]
    sampled = sum(c.sampled for c, _ in parts)
    passed = sum(c.passed for c, _ in parts)
    rate = None
    if known:
        rate = passed / sum(c.passed * w for c, w in known)
    sizes = _merged([dict(c.sizes.items()) for c, _ in known])
    size_buckets = tuple(
        SizeBucket(label, calls, esc, esc / calls if calls else 0.0)
        for label, _ in SIZE_BUCKETS
        for calls, esc in [_weighed(sizes.get(label, []), known)]
        if calls
    )
    feats = _merged([dict(c.features) for c, _ in known])
    features = sorted(
        (
            FeatureRate(name, value, calls, esc, esc / calls)
            for (name, value), bins in feats.items()
            for calls, esc in [_weighed(bins, known)]
            if calls
        ),
        key=lambda f: (f.feature, -f.calls),
    )
    reasons = _top_reasons([c for c, _ in parts], top)
    terms, by_validator = over_represented(known, top=top, min_count=min_count)
    dups = duplicate_groups([c.dup_sample for c, _ in parts], limit=parts[0][0].dup_limit)
    base = Patterns(
        sampled_records=sampled,
        pass_sampling_rate=rate,
        size_buckets=size_buckets,
        features=tuple(features),
        terms=terms,
        terms_by_validator=by_validator,
        reasons=reasons,
        duplicates=dups[:top],
    )
    return _with_suggestions(base, suggestions(base, parts, known, min_count=min_count))


def _with_suggestions(p: Patterns, found: Sequence[Suggestion]) -> Patterns:
    return replace(p, suggestions=tuple(found))


def _merged(tables: Sequence[Mapping[Any, Bin]]) -> dict[Any, list[Bin | None]]:
    """Key -> the bin of each table (None where a table lacks it), aligned with ``tables``."""
    keys: dict[Any, None] = {}
    for t in tables:
        keys.update(dict.fromkeys(t))
    return {k: [t.get(k) for t in tables] for k in keys}


def _weighed(bins: Sequence[Bin | None], known: Sequence[tuple[Any, float]]) -> tuple[float, int]:
    """(estimated calls, escalations) of aligned bins, each weighted by its task's weight."""
    calls = 0.0
    esc = 0
    for b, (_, w) in zip(bins, known, strict=True):
        if b is not None:
            calls += b.calls(w)
            esc += b.escalated
    return calls, esc


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
