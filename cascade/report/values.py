"""The values a report is made of: rates, terms, reasons, suggestions, the patterns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DuplicateGroup",
    "FeatureRate",
    "Patterns",
    "ReasonCount",
    "SizeBucket",
    "Suggestion",
    "Term",
    "Totals",
]


class Totals(NamedTuple):
    """The exact counters of a task (or of all tasks) that patterns are weighed against."""

    calls: int
    escalations: int
    not_ok: int
    cost_usd: float
    baseline_cost_usd: float


class SizeBucket(NamedTuple):
    """Escalation rate of the calls in one prompt-size bucket (``calls`` is an estimate)."""

    label: str
    calls: float
    escalations: int
    rate: float


class FeatureRate(NamedTuple):
    """Escalation rate of the calls with one value of a categorical input feature."""

    feature: str
    value: str
    calls: float
    escalations: int
    rate: float


class Term(NamedTuple):
    """A word or two-word phrase over-represented in escalated inputs.

    ``z`` is the z-score of the weighted log-odds ratio; the counts are of inputs containing
    it (``passing`` re-weighted by the sampling rate).
    """

    term: str
    z: float
    escalated: int
    passing: float


class ReasonCount(NamedTuple):
    """A normalised failure reason, in how many sampled calls it occurred, one verbatim example."""

    reason: str
    calls: int
    example: str


class DuplicateGroup(NamedTuple):
    """Escalated inputs that are near-duplicates of each other: their number and one of them."""

    size: int
    example: str


class Suggestion(NamedTuple):
    """A change the data supports, with the saving it projects per 1,000 calls of the task."""

    kind: str
    message: str
    projected_savings_usd_per_1k_calls: float | None
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Patterns:
    """What the sampled records say about why calls escalate.

    ``pass_sampling_rate`` is None when no passing call was sampled (rates are then unknown
    and left empty); ``reasons`` are (validator, ReasonCount) pairs, most frequent first.
    """

    sampled_records: int = 0
    pass_sampling_rate: float | None = None
    size_buckets: tuple[SizeBucket, ...] = ()
    features: tuple[FeatureRate, ...] = ()
    terms: tuple[Term, ...] = ()
    terms_by_validator: Mapping[str, tuple[Term, ...]] = field(default_factory=dict)
    reasons: tuple[tuple[str, ReasonCount], ...] = ()
    duplicates: tuple[DuplicateGroup, ...] = ()
    suggestions: tuple[Suggestion, ...] = ()
