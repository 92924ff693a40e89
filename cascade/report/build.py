"""The report: what the cascade cost, saved and escalated, per task and overall.

Totals (calls, escalations, costs, tokens, failures, latency) come from the daily counters,
which count every call exactly; failure reasons and patterns come from the sampled records.
``aggregate`` streams over the records once and keeps counters and bounded samples only, so
a report over millions of records runs in constant memory. Renderers are in ``render``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ..events import LATENCY_BUCKETS_MS, CallRecord, TaskDay
from .hourly import HourRow, Hours, hours_of
from .observation import ObservationCollector, observation_of
from .patterns import (
    PatternCollector,
    Patterns,
    ReasonCount,
    Totals,
    patterns_of,
    top_reasons_by_validator,
)
from .prerouted import PreRouteCollector, pre_routed_of

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

    from ..stores import Store
    from .observation import ObservationSummary
    from .prerouted import PreRouted

__all__ = [
    "DayRow", "HourRow", "Report", "TaskReport", "aggregate", "build_report", "latency_quantile",
]  # fmt: skip

PROGRESS_EVERY = 10_000
# Stored records per task the patterns are drawn from (newest first): enough for stable
# rates and terms, few enough that a report over a million calls takes seconds.
DEFAULT_SAMPLE = 5_000
_LABELS = tuple("inf" if b == float("inf") else f"{b:g}" for b in LATENCY_BUCKETS_MS)


class DayRow(NamedTuple):
    """One UTC day of one task (or of all tasks): calls, escalations and costs."""

    day: str
    calls: int
    escalations: int
    cost_usd: float
    baseline_cost_usd: float


@dataclass(frozen=True, slots=True)
class TaskReport:
    """The figures of one task, or of every task together (``task == "*"``).

    ``savings_usd`` is baseline minus cost (what not sending every call to the strong model
    saved); ``savings_pct`` is that over the baseline (None without a baseline). Latency
    quantiles are the upper bound of the histogram bucket holding them (``inf`` past the
    last bound, None without calls). ``validators`` maps a validator (or ``provider:<kind>``)
    to how many calls it rejected an attempt in; ``top_reasons`` its most frequent reasons.
    ``observation`` is what observe mode saw (None when no call was observed);
    ``pre_routed`` the calls a ``start_at`` rule started up the ladder (None: no such call).
    ``hourly`` splits ``daily`` by hour, its rows adding up to them; None when unknown: the
    store keeps no hourly counters for some day of the span (expired, or written before
    they existed), or the span is longer than ``hourly.HOURLY_MAX_DAYS``.
    ``uncosted_calls`` counts calls with a model of unknown price: when above 0 the cost,
    baseline and savings are unknown (the sums leave those calls out) and shown so.
    """

    task: str
    calls: int = 0
    escalations: int = 0
    escalation_rate: float = 0.0
    not_ok: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    savings_usd: float = 0.0
    savings_pct: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    validators: Mapping[str, int] = field(default_factory=dict)
    top_reasons: Mapping[str, tuple[ReasonCount, ...]] = field(default_factory=dict)
    daily: tuple[DayRow, ...] = ()
    patterns: Patterns = field(default_factory=Patterns)
    observation: ObservationSummary | None = None
    uncosted_calls: int = 0
    pre_routed: PreRouted | None = None
    hourly: tuple[HourRow, ...] | None = None

    @property
    def costs_known(self) -> bool:
        """Whether every call's cost and baseline is known (so the sums are the costs)."""
        return not self.uncosted_calls


@dataclass(frozen=True, slots=True)
class Report:
    """The report of a span of time: one ``TaskReport`` per task and one ``overall``.

    Times are unix seconds (``since``/``until`` None when open); ``corrupt_records`` counts
    stored records the store could not decode and skipped.
    """

    generated_at: float
    since: float | None
    until: float | None
    tasks: tuple[TaskReport, ...]
    overall: TaskReport
    corrupt_records: int = 0


def latency_quantile(histogram: Mapping[str, int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile ``q`` of a latency histogram.

    ``histogram`` maps bounds of ``LATENCY_BUCKETS_MS`` as text to counts; returns None
    when it is empty.
    """
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for label, bound in zip(_LABELS, LATENCY_BUCKETS_MS, strict=True):
        seen += histogram.get(label, 0)
        if seen >= q * total:
            return bound
    return float("inf")


class _Counters:
    """Running sums of the daily counters of one task (or all)."""

    def __init__(self) -> None:
        self.calls = self.escalations = self.not_ok = self.uncosted = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.cost = self.baseline = 0.0
        self.failures: dict[str, int] = {}
        self.latency: dict[str, int] = {}
        self.daily: dict[str, list[float]] = {}
        self.hourly: Hours | None = None  # None: no hourly counters read

    def add(self, d: TaskDay) -> None:
        self.calls += d.calls
        self.escalations += d.escalations
        self.not_ok += d.not_ok
        self.uncosted += d.uncosted
        self.prompt_tokens += d.prompt_tokens
        self.completion_tokens += d.completion_tokens
        self.cost += d.cost_usd
        self.baseline += d.baseline_cost_usd
        for name, n in d.failures.items():
            self.failures[name] = self.failures.get(name, 0) + n
        for label, n in d.latency_ms.items():
            self.latency[label] = self.latency.get(label, 0) + n
        row = self.daily.setdefault(d.day, [0, 0, 0.0, 0.0])
        for i, v in enumerate((d.calls, d.escalations, d.cost_usd, d.baseline_cost_usd)):
            row[i] += v

    def totals(self) -> Totals:
        return Totals(self.calls, self.escalations, self.not_ok, self.cost, self.baseline)

    def report(
        self,
        task: str,
        collectors: list[PatternCollector],
        patterns: Patterns,
        top: int,
        observation: ObservationSummary | None = None,
        pre_routed: PreRouted | None = None,
    ) -> TaskReport:
        savings = self.baseline - self.cost
        known = not self.uncosted
        return TaskReport(
            task=task,
            calls=self.calls,
            escalations=self.escalations,
            escalation_rate=self.escalations / self.calls if self.calls else 0.0,
            not_ok=self.not_ok,
            cost_usd=self.cost,
            baseline_cost_usd=self.baseline,
            savings_usd=savings,
            savings_pct=savings / self.baseline if self.baseline and known else None,
            uncosted_calls=self.uncosted,
            latency_p50_ms=latency_quantile(self.latency, 0.50),
            latency_p95_ms=latency_quantile(self.latency, 0.95),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            validators=dict(sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0]))),
            top_reasons=top_reasons_by_validator(collectors, top),
            daily=tuple(
                DayRow(day, int(c), int(e), cost, base)
                for day, (c, e, cost, base) in sorted(self.daily.items())
            ),
            patterns=patterns,
            observation=observation,
            pre_routed=pre_routed,
            hourly=None if self.hourly is None else self.hourly.rows(self.daily),
        )


def aggregate(
    records: Iterable[CallRecord],
    days: Iterable[TaskDay],
    *,
    since: float | None = None,
    until: float | None = None,
    now: float | None = None,
    progress: Callable[[int], None] | None = None,
    corrupt_records: int = 0,
    top: int = 10,
    min_count: int = 5,
    dup_limit: int = 5000,
    certified: Mapping[str, Collection[str]] | None = None,
    hours: Iterable[TaskDay] | None = None,
) -> Report:
    """Build the report from sampled records and daily counters; reads ``records`` once.

    Args:
        records: sampled records (any order); unsampled ones are skipped.
        days: the daily counters of the same tasks and span.
        hours: the hourly counters of the same whole days (None: unknown; the report's
            ``hourly`` series are then None).
        progress: called with the number of records read, every 10,000, and once more
            with the total when more than 10,000 were read (so the last figure shown is the
            number read, not the last multiple of 10,000).
        top: how many reasons, terms and groups to list; ``min_count``: the least number
            of escalated calls behind a reported pattern or suggestion; ``dup_limit``: how
            many escalated inputs per task the near-duplicate search keeps.
        certified: task -> the validators whose threshold ``cascade calibrate`` certified
            (``cascade report`` reads them from the policy files): never suggested lower.
    Returns the ``Report``, its tasks sorted by name.
    """
    sure = certified or {}
    counters: dict[str, _Counters] = {}
    overall = _Counters()
    for d in days:
        counters.setdefault(d.task, _Counters()).add(d)
        overall.add(d)
    if hours is not None:
        overall.hourly = Hours()
        for each in counters.values():
            each.hourly = Hours()
        for h in hours:
            mine = counters.setdefault(h.task, _Counters())
            mine.hourly = mine.hourly or Hours()
            mine.hourly.add(h)
            overall.hourly.add(h)
    collectors: dict[str, PatternCollector] = {}
    observers: dict[str, ObservationCollector] = {}
    routes: dict[str, PreRouteCollector] = {}
    n = 0
    for n, record in enumerate(records, 1):
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(n)
        if not record.sampled:
            continue
        c = collectors.get(record.task)
        if c is None:
            c = collectors[record.task] = PatternCollector(dup_limit=dup_limit)
        c.add(record)
        if record.mode == "cascade":
            r = routes.get(record.task)
            if r is None:
                r = routes[record.task] = PreRouteCollector()
            r.add(record)
        if record.mode == "observe":
            o = observers.get(record.task)
            if o is None:
                o = observers[record.task] = ObservationCollector()
            o.add(record)
    if progress is not None and n > PROGRESS_EVERY and n % PROGRESS_EVERY:
        progress(n)
    for task in collectors:
        counters.setdefault(task, _Counters())
    reports = []
    for task in sorted(counters):
        cs = [collectors[task]] if task in collectors else []
        seen = observation_of([observers[task]] if task in observers else [])
        p = patterns_of(
            [(c, counters[task].totals()) for c in cs], top=top, min_count=min_count,
            observed_action=None if seen is None else seen.action,
            certified=sure.get(task, ()),
        )  # fmt: skip
        routed = pre_routed_of([routes[task]] if task in routes else [])
        reports.append(counters[task].report(task, cs, p, top, seen, routed))
    everything = [(collectors[t], counters[t].totals()) for t in sorted(collectors)]
    if len(reports) == 1:  # the overall patterns are the task's: do not search twice
        overall_patterns = reports[0].patterns
    else:
        seen_all = observation_of(observers.values())
        overall_patterns = patterns_of(
            everything, top=top, min_count=min_count,
            observed_action=None if seen_all is None else seen_all.action,
            certified={v for names in sure.values() for v in names},
        )  # fmt: skip
    all_observed = observers.values()
    return Report(
        generated_at=time.time() if now is None else now,
        since=since,
        until=until,
        tasks=tuple(reports),
        overall=overall.report(
            "*",
            [c for c, _ in everything],
            overall_patterns,
            top,
            observation_of(all_observed),
            pre_routed_of(routes.values()),
        ),
        corrupt_records=corrupt_records,
    )


def build_report(
    store: Store,
    *,
    task: str | None = None,
    since: float | None = None,
    until: float | None = None,
    progress: Callable[[int], None] | None = None,
    now: float | None = None,
    sample: int | None = DEFAULT_SAMPLE,
    certified: Mapping[str, Collection[str]] | None = None,
) -> Report:
    """Read a store's records and counters for a task (or all) and a span, and aggregate them.

    ``since``/``until`` are unix seconds. Totals come from the counters (every call);
    patterns from at most ``sample`` stored records per task, the newest first (None: all of
    them), so the time and memory of a report do not grow with the store. ``certified``:
    as in ``aggregate``.
    Raises ``StoreError`` when the store cannot be read.
    """
    days = store.days(task=task, since=since, until=until)
    hours = hours_of(store, days, task)
    if sample is None:
        records: Iterable[CallRecord] = store.records(task=task, since=since, until=until)
    else:
        names = [task] if task is not None else sorted({d.task for d in days})
        records = itertools.chain.from_iterable(
            store.records(task=t, since=since, until=until, limit=sample, newest_first=True)
            for t in names
        )
    report = aggregate(
        records, days, since=since, until=until, now=now, progress=progress,
        certified=certified, hours=hours,
    )  # fmt: skip
    corrupt = int(getattr(store, "corrupt_records", 0) or 0)
    if corrupt:
        from dataclasses import replace

        report = replace(report, corrupt_records=corrupt)
    return report
