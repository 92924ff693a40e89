"""Streaming over stored records: the counters and bounded samples patterns are made of.

``PatternCollector`` reads one task's stored records once. Each record stands for
``1 / inclusion_probability`` calls, so every estimate is over exactly the records read.
Memory does not grow with the number of records: tables are pruned to their most frequent
entries, samples are capped.
"""

from __future__ import annotations

import heapq
import re
from array import array
from collections import Counter
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .text import TEXT_CHARS, signature, terms_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..events import CallRecord
    from .text import Signature
    from .values import Totals

__all__ = [
    "ALL",
    "CATEGORICAL",
    "SIZE_BUCKETS",
    "Bin",
    "Column",
    "PatternCollector",
    "merged_reasons",
    "normalise_reason",
]

# (label, exclusive upper bound of prompt tokens)
SIZE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<250", 250), ("250-500", 500), ("500-1k", 1000), ("1k-2k", 2000), ("2k-4k", 4000),
    ("4k+", float("inf")),
)  # fmt: skip
CATEGORICAL = ("language", "has_code", "has_json", "question")
ALL = "*"  # the feature flag every record has: a column's feature count is its total
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_REASON_CHARS = 200


def normalise_reason(reason: str) -> str:
    """``reason`` with every number replaced by ``#``, so reasons differing in values group."""
    return _NUMBER.sub("#", reason.strip())[:_REASON_CHARS]


class Bin:
    """Counts of one group of stored records, with their weights (1 / inclusion probability).

    ``escalated`` counts escalated calls (always kept); ``kept`` the stored calls that did not
    escalate, ``weighted`` the calls those stand for (the sum of their weights) and ``legacy``
    the stored passes whose record carries no inclusion probability (older records: their
    weight is estimated from the counters, ``legacy_weight``). ``wasted`` is the cheap spend
    on the escalated ones, ``extra`` what starting the passing ones at the strong model would
    add (weighted; ``extra_legacy`` that of the legacy passes, unweighted).
    """

    __slots__ = ("escalated", "extra", "extra_legacy", "kept", "legacy", "wasted", "weighted")

    def __init__(self) -> None:
        self.escalated = 0
        self.kept = 0
        self.weighted = 0.0
        self.legacy = 0
        self.wasted = 0.0
        self.extra = 0.0
        self.extra_legacy = 0.0

    def rest(self, legacy_weight: float) -> float:
        """The estimated number of calls of the group that did not escalate."""
        return self.weighted + self.legacy * legacy_weight

    def calls(self, legacy_weight: float) -> float:
        """The estimated number of calls of the group."""
        return self.escalated + self.rest(legacy_weight)

    def rate(self, legacy_weight: float) -> float:
        """The estimated escalation rate (0 for an empty bin)."""
        calls = self.calls(legacy_weight)
        return self.escalated / calls if calls else 0.0

    def extra_total(self, legacy_weight: float) -> float:
        """What answering the group's passing calls with the strong model alone would add."""
        return self.extra + self.extra_legacy * legacy_weight


# A weight key: 1 / inclusion probability, or None for a pass of unknown probability.
WeightKey = float | None
# A column of the token tables: (stratum, escalated, weight key).
Column = tuple[int, bool, WeightKey]


class PatternCollector:
    """Counters and bounded samples of one task's stored records, filled by ``add``.

    The unit is the input: for every token (a word or two-word phrase of the input, or a
    feature value such as ``language=de``) the tables count the stored records holding it,
    per stratum (prompt-size bucket x language), outcome and weight, so that any group's
    2x2 table of inputs, its weighted rate and a stratified test come from lookups.

    Memory does not grow with the number of records: a term column is pruned to its most
    frequent entries when it passes ``max_terms`` (counts of rare terms are then
    approximate), reason tables at ``max_reasons``; the term hashes of at most
    ``doc_limit`` inputs are kept (for merging terms that occur in the same inputs), and the
    first ``dup_limit`` escalated inputs for near-duplicate grouping.
    """

    def __init__(
        self,
        *,
        dup_limit: int = 5000,
        max_terms: int = 50_000,
        max_reasons: int = 500,
        doc_limit: int = 2_000,
    ) -> None:
        self.dup_limit = dup_limit
        self.max_terms = max_terms
        self.max_reasons = max_reasons
        self.doc_limit = doc_limit
        self.sampled = 0
        self.passed = 0  # stored passing calls (cascade mode)
        self.legacy_passed = 0  # ... of them without an inclusion probability
        self.escalated_not_ok = 0
        self.observed_ok = 0
        self.all = Bin()
        self.sizes: dict[str, Bin] = {label: Bin() for label, _ in SIZE_BUCKETS}
        self.features: dict[tuple[str, str], Bin] = {}
        self.by_validator: dict[str, Bin] = {}  # escalations each validator caused
        self.strata: dict[tuple[str, str], int] = {}  # (size label, language) -> id
        self.feature_counts: dict[Column, Counter[str]] = {}
        self.term_counts: dict[Column, Counter[str]] = {}
        self.term_totals: Counter[Column] = Counter()  # stored records with text per column
        self.term_docs: list[tuple[array[int], bool]] = []  # hashed terms, escalated
        self.terms_by_validator: dict[str, Counter[str]] = {}
        self.reasons: dict[str, dict[str, list[Any]]] = {}  # validator -> norm -> [n, example]
        self.failing_scores: dict[str, list[float]] = {}
        self.min_passing_score: dict[str, float] = {}
        # (input, signature): signed once here, grouped per task and again overall
        self.dup_sample: list[tuple[str, Signature]] = []
        self.final_models: dict[str, int] = {}  # model that answered escalated calls

    def add(self, record: CallRecord) -> None:
        """Count one stored record."""
        self.sampled += 1
        escalated, kind, wasted, extra = _outcome(record)
        weight = _weight(record, escalated, kind)
        if kind == 1:
            self.passed += 1
            self.legacy_passed += weight is None
        if record.escalated and not record.ok:
            self.escalated_not_ok += 1
        if record.mode == "observe" and record.ok:
            self.observed_ok += 1
        causes = _causes(record) if escalated else ()
        if escalated:
            self.final_models[record.model] = self.final_models.get(record.model, 0) + 1
        feats = record.features
        tokens = feats.get("prompt_tokens") or record.prompt_tokens or 0
        size = next(label for label, bound in SIZE_BUCKETS if tokens < bound)
        lang = str(feats.get("language", "none")).lower()
        bins = [self.all, self.sizes[size]]
        flags = [
            ALL,
            f"size={size}",
            *(f"size>={b:g}" for _, b in SIZE_BUCKETS[:-1] if tokens >= b),
        ]
        for name in CATEGORICAL:
            if name in feats:
                key = (name, str(feats[name]).lower())
                flags.append(f"{key[0]}={key[1]}")
                bins.append(self.features.get(key) or self.features.setdefault(key, Bin()))
        bins.extend(self.by_validator.setdefault(v, Bin()) for v in causes)
        for b in bins:
            if escalated:
                b.escalated += 1
                b.wasted += wasted
            else:
                b.kept += 1
                if weight is None:
                    b.legacy += 1
                    b.extra_legacy += extra
                else:
                    b.weighted += weight
                    b.extra += extra * weight
        stratum = self.strata.setdefault((size, lang), len(self.strata))
        column: Column = (stratum, escalated, 1.0 if escalated else weight)
        counts = self.feature_counts.get(column)
        if counts is None:
            counts = self.feature_counts[column] = Counter()
        counts.update(flags)
        self._reasons(record)
        text = record.input
        if text and not text.startswith("sha256:"):
            terms = terms_of(text)
            self._terms(terms, column, causes)
            if len(self.term_docs) < self.doc_limit:
                self.term_docs.append((array("q", map(hash, terms)), escalated))
            if escalated and len(self.dup_sample) < self.dup_limit:
                kept = text[:TEXT_CHARS]
                self.dup_sample.append((kept, signature(kept)))

    def _terms(self, terms: set[str], column: Column, causes: Sequence[str]) -> None:
        # Counter.update runs in C: this is the per-record cost that dominates a report.
        # Each column is pruned on its own counts: a term dropped from one column while kept
        # in another was rare there, so its count is off by little.
        self.term_totals[column] += 1
        counts = self.term_counts.get(column)
        if counts is None:
            counts = self.term_counts[column] = Counter()
        counts.update(terms)
        if len(counts) > self.max_terms:
            self.term_counts[column] = Counter(dict(counts.most_common(self.max_terms // 2)))
        for v in causes:
            mine = self.terms_by_validator.get(v)
            if mine is None:
                mine = self.terms_by_validator[v] = Counter()
            mine.update(terms)
            if len(mine) > self.max_terms:
                self.terms_by_validator[v] = Counter(dict(mine.most_common(self.max_terms // 2)))

    def _reasons(self, record: CallRecord) -> None:
        seen: set[tuple[str, str]] = set()
        for a in record.attempts:
            found = [(_provider(a.error), a.error)] if a.error else []
            for v in a.verdicts:
                if v.passed:
                    if v.score is not None:
                        low = self.min_passing_score.get(v.validator, v.score)
                        self.min_passing_score[v.validator] = min(low, v.score)
                    continue
                found.append((v.validator, v.reason))
                scores = self.failing_scores.setdefault(v.validator, [])
                if v.score is not None and len(scores) < self.dup_limit:
                    scores.append(v.score)
            for validator, reason in found:
                norm = normalise_reason(reason)
                if (validator, norm) in seen:
                    continue
                seen.add((validator, norm))
                table = self.reasons.setdefault(validator, {})
                entry = table.get(norm)
                if entry is None:
                    table[norm] = entry = [0, reason[:_REASON_CHARS]]
                entry[0] += 1
                if len(table) > self.max_reasons:
                    self.reasons[validator] = _pruned(table, self.max_reasons, itemgetter(0))

    def legacy_weight(self, totals: Totals) -> float:
        """How many passing calls one stored pass without an inclusion probability stands
        for, estimated from the counters (1 when every stored pass carries its own).

        Passing calls are the calls neither escalated nor failed (their overlap is counted
        from the records, where both kinds are always kept) nor observed; those the passes
        with a known probability stand for are taken out first.
        """
        if not self.legacy_passed:
            return 1.0
        failed = totals.escalations + totals.not_ok - self.escalated_not_ok
        passing = totals.calls - failed - self.observed_ok
        known = self.all.weighted - (self.all.kept - self.passed)  # weights of known passes
        return max((passing - known) / self.legacy_passed, 1.0)  # never fewer than stored


def _weight(record: CallRecord, escalated: bool, kind: int) -> float | None:
    """1 / the record's inclusion probability; None for a pass stored without one."""
    if escalated or kind == 2:
        return 1.0  # always kept
    p = record.inclusion_probability
    return None if p is None else 1.0 / p


def _outcome(record: CallRecord) -> tuple[bool, int, float, float]:
    """(escalated, kind, wasted, extra): kind 1 for a sampled pass, 2 for an always-kept
    call that did not escalate; ``wasted`` is the spend on models other than the final one,
    ``extra`` what answering with the strong model alone would have added."""
    if record.mode == "observe":
        obs = record.observation
        if obs is None:
            return False, 2, 0.0, 0.0
        cheap = obs.cheap_cost_usd or 0.0
        if obs.decision == "escalate":
            return True, 2, cheap, 0.0
        return False, 2, 0.0, 0.0
    if record.escalated:
        wasted = sum(a.cost_usd or 0.0 for a in record.attempts if a.model != record.model)
        return True, 2, wasted, 0.0
    if not record.ok:
        return False, 2, 0.0, 0.0
    extra = (record.baseline_cost_usd or 0.0) - (record.cost_usd or 0.0)
    return False, 1, 0.0, extra


def _causes(record: CallRecord) -> tuple[str, ...]:
    """The validators (or ``provider:<kind>``) that rejected an attempt before the last model."""
    names: dict[str, None] = {}
    for a in record.attempts:
        if a.model == record.model:
            continue
        if a.error:
            names[_provider(a.error)] = None
        for v in a.verdicts:
            if not v.passed:
                names[v.validator] = None
    return tuple(names)


def _provider(error: str) -> str:
    """The failure name of a provider error, as the daily counters spell it."""
    return "provider:" + re.split(r"[ :]", error, maxsplit=1)[0]


def _pruned(table: dict[str, Any], limit: int, count: Any) -> dict[str, Any]:
    """The ``limit // 2`` most frequent entries: pruning in halves keeps it amortised O(1)."""
    keep = heapq.nlargest(limit // 2, table.items(), key=lambda kv: count(kv[1]))
    return dict(keep)


def merged_reasons(collectors: Sequence[PatternCollector]) -> dict[str, dict[str, list[Any]]]:
    """Validator -> normalised reason -> [count, example], summed over ``collectors``."""
    out: dict[str, dict[str, list[Any]]] = {}
    for c in collectors:
        for validator, table in c.reasons.items():
            mine = out.setdefault(validator, {})
            for norm, (n, example) in table.items():
                entry = mine.setdefault(norm, [0, example])
                entry[0] += n
    return out
