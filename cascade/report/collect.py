"""Streaming over sampled records: the counters and bounded samples patterns are made of.

``PatternCollector`` reads one task's sampled records once. Memory does not grow with the
number of records: tables are pruned to their most frequent entries, samples are capped.
"""

from __future__ import annotations

import heapq
import re
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
    "CATEGORICAL",
    "SIZE_BUCKETS",
    "Bin",
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
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_REASON_CHARS = 200


def normalise_reason(reason: str) -> str:
    """``reason`` with every number replaced by ``#``, so reasons differing in values group."""
    return _NUMBER.sub("#", reason.strip())[:_REASON_CHARS]


class Bin:
    """Counts of one group of calls: escalated, sampled passing, other (always-kept, not
    escalated), the cheap spend wasted on the escalated ones and what starting the passing
    ones at the strong model would add."""

    __slots__ = ("escalated", "extra", "other", "passed", "wasted")

    def __init__(self) -> None:
        self.escalated = 0
        self.passed = 0
        self.other = 0
        self.wasted = 0.0
        self.extra = 0.0

    def calls(self, weight: float) -> float:
        """The estimated number of calls, sampled passes counting ``weight`` each."""
        return self.escalated + self.other + self.passed * weight

    def rate(self, weight: float) -> float:
        """The estimated escalation rate (0 for an empty bin)."""
        calls = self.calls(weight)
        return self.escalated / calls if calls else 0.0


class PatternCollector:
    """Counters and bounded samples of one task's sampled records, filled by ``add``.

    Memory does not grow with the number of records: the term and reason tables are pruned
    to their most frequent entries when they pass ``max_terms`` / ``max_reasons`` (so counts
    of rare terms are approximate), and only the first ``dup_limit`` escalated inputs are
    kept for near-duplicate grouping.
    """

    def __init__(
        self, *, dup_limit: int = 5000, max_terms: int = 50_000, max_reasons: int = 500
    ) -> None:
        self.dup_limit = dup_limit
        self.max_terms = max_terms
        self.max_reasons = max_reasons
        self.sampled = 0
        self.passed = 0  # sampled passing calls in cascade mode: the numerator of the rate
        self.escalated_not_ok = 0
        self.observed_ok = 0
        self.all = Bin()
        self.sizes: dict[str, Bin] = {label: Bin() for label, _ in SIZE_BUCKETS}
        self.features: dict[tuple[str, str], Bin] = {}
        self.by_validator: dict[str, Bin] = {}  # escalations each validator caused
        # term -> inputs containing it: escalated, sampled passing, other (always kept)
        self.terms: tuple[Counter[str], ...] = (Counter(), Counter(), Counter())
        self.terms_by_validator: dict[str, Counter[str]] = {}
        self.reasons: dict[str, dict[str, list[Any]]] = {}  # validator -> norm -> [n, example]
        self.failing_scores: dict[str, list[float]] = {}
        self.min_passing_score: dict[str, float] = {}
        # (input, signature): signed once here, grouped per task and again overall
        self.dup_sample: list[tuple[str, Signature]] = []
        self.final_models: dict[str, int] = {}  # model that answered escalated calls

    def add(self, record: CallRecord) -> None:
        """Count one sampled record."""
        self.sampled += 1
        escalated, kind, wasted, extra = _outcome(record)
        if kind == 1:
            self.passed += 1
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
        bins = [self.all, self.sizes[size]]
        for name in CATEGORICAL:
            if name in feats:
                key = (name, str(feats[name]).lower())
                bins.append(self.features.get(key) or self.features.setdefault(key, Bin()))
        bins.extend(self.by_validator.setdefault(v, Bin()) for v in causes)
        for b in bins:
            if escalated:
                b.escalated += 1
                b.wasted += wasted
            elif kind == 1:
                b.passed += 1
                b.extra += extra
            else:
                b.other += 1
        self._reasons(record)
        text = record.input
        if text and not text.startswith("sha256:"):
            self._terms(terms_of(text), escalated, kind, causes)
            if escalated and len(self.dup_sample) < self.dup_limit:
                kept = text[:TEXT_CHARS]
                self.dup_sample.append((kept, signature(kept)))

    def _terms(self, terms: set[str], escalated: bool, kind: int, causes: Sequence[str]) -> None:
        # Counter.update runs in C: this is the per-record cost that dominates a report.
        # Each column is pruned on its own counts: a term dropped from one column while kept
        # in another was rare there, so its count is off by little.
        index = 0 if escalated else kind
        column = self.terms[index]
        column.update(terms)
        if len(column) > self.max_terms:
            columns = list(self.terms)
            columns[index] = Counter(dict(column.most_common(self.max_terms // 2)))
            self.terms = tuple(columns)
        for v in causes:
            counts = self.terms_by_validator.get(v)
            if counts is None:
                counts = self.terms_by_validator[v] = Counter()
            counts.update(terms)
            if len(counts) > self.max_terms:
                self.terms_by_validator[v] = Counter(dict(counts.most_common(self.max_terms // 2)))

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

    def pass_weight(self, totals: Totals) -> float | None:
        """How many passing calls one sampled pass stands for (None if none was sampled).

        Passing calls are the calls neither escalated nor failed (their overlap is counted
        from the records, where both kinds are always kept) nor observed.
        """
        if not self.passed:
            return None
        failed = totals.escalations + totals.not_ok - self.escalated_not_ok
        passing = totals.calls - failed - self.observed_ok
        return max(passing / self.passed, 1.0)  # never fewer calls than were sampled


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
