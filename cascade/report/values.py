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
    """Escalation rate of the calls in one prompt-size bucket (``calls`` is an estimate:
    each stored record counts 1 / its inclusion probability), with its exact 95% interval."""

    label: str
    calls: float
    escalations: int
    rate: float
    rate_low: float = 0.0
    rate_high: float = 1.0


class FeatureRate(NamedTuple):
    """Escalation rate of the calls with one value of a categorical input feature (``calls``
    estimated as in ``SizeBucket``), with its exact 95% interval."""

    feature: str
    value: str
    calls: float
    escalations: int
    rate: float
    rate_low: float = 0.0
    rate_high: float = 1.0


class Term(NamedTuple):
    """A word or two-word phrase whose inputs escalate more often than the rest, claimed.

    ``term`` heads an entry of ``members`` (itself first): terms found in nearly the same
    inputs. ``escalated`` counts escalated inputs holding it, ``passing`` the estimated
    inputs holding it that did not escalate, ``inputs`` both. ``rate`` is the estimated
    escalation rate of those inputs, ``rate_low``..``rate_high`` its exact interval at level
    ``confidence`` (adjusted for the claims selected among all tested). ``z`` and
    ``p_value`` are of the one-sided Cochran-Mantel-Haenszel test within size x language
    strata; ``q_value`` its Benjamini-Hochberg adjusted p-value; ``others_rate`` the
    estimated rate of the inputs without it.
    """

    term: str
    z: float
    escalated: int
    passing: float
    inputs: float = 0.0
    rate: float = 0.0
    rate_low: float = 0.0
    rate_high: float = 1.0
    confidence: float = 0.95
    p_value: float = 1.0
    q_value: float = 1.0
    members: tuple[str, ...] = ()
    others_rate: float = 0.0


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
    ``tested`` counts the terms and feature values tested (the multiple-testing family);
    ``window_rate`` is the escalation rate estimated from the records read, the rate every
    claim is compared with.
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
    tested: int = 0
    window_rate: float | None = None
