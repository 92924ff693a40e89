"""The daily and hourly counters every backend keeps: one call's increments, and merging them.

Counters count every call exactly, sampled or not; the report's totals come from them. The
hourly counters keep the fields the charts by hour draw (``HOUR_COUNTERS``: calls,
escalations, not_ok, uncosted, cost_usd, baseline_cost_usd; no tokens, failures or
latency), so that they add little to each write; an hour is written ``YYYY-MM-DDTHH``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..events import LATENCY_BUCKETS_MS, CallRecord, TaskDay

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "FAIL_PREFIX",
    "FLOAT_COUNTERS",
    "HOUR_COUNTERS",
    "INT_COUNTERS",
    "LATENCY_LABELS",
    "LATENCY_PREFIX",
    "day_delta",
    "day_of",
    "failure_names",
    "flat_counters",
    "hour_delta",
    "hour_of",
    "latency_label",
    "merge_day",
]

# Counter names shared by every backend (the Redis day hash uses them as field names).
INT_COUNTERS = (
    "calls", "escalations", "not_ok", "prompt_tokens", "completion_tokens", "uncosted",
)  # fmt: skip
FLOAT_COUNTERS = ("cost_usd", "baseline_cost_usd")
HOUR_COUNTERS = ("calls", "escalations", "not_ok", "uncosted", *FLOAT_COUNTERS)
FAIL_PREFIX = "fail:"
LATENCY_PREFIX = "lat:"
LATENCY_LABELS: tuple[str, ...] = tuple(
    "inf" if b == float("inf") else f"{b:g}" for b in LATENCY_BUCKETS_MS
)


def day_of(timestamp: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of a unix time."""
    return _day(int(timestamp // 86400))  # unix time has no leap seconds: 86,400 s a day


@lru_cache(maxsize=64)
def _day(days: int) -> str:  # formatted once a day, not once a call
    return (_EPOCH + timedelta(days=days)).isoformat()


_EPOCH = date(1970, 1, 1)


def hour_of(timestamp: float) -> str:
    """The UTC hour (``YYYY-MM-DDTHH``) of a unix time."""
    hours = int(timestamp // 3600)
    return f"{_day(hours // 24)}T{hours % 24:02d}"


def hour_delta(delta: Mapping[str, int | float]) -> dict[str, int | float]:
    """The part of a call's ``day_delta`` its hour's counters add (``HOUR_COUNTERS``)."""
    return {k: delta[k] for k in HOUR_COUNTERS if k in delta}


def latency_label(latency_s: float) -> str:
    """The latency bucket (a bound of ``LATENCY_BUCKETS_MS`` as text) a call falls in."""
    ms = latency_s * 1000
    for bound, label in zip(LATENCY_BUCKETS_MS, LATENCY_LABELS, strict=True):
        if ms <= bound:
            return label
    return "inf"


def failure_names(record: CallRecord) -> set[str]:
    """Validators that failed on any attempt, and ``provider:<kind>`` for provider errors."""
    names = {v.validator for a in record.attempts for v in a.verdicts if not v.passed}
    for a in record.attempts:
        if a.error is not None:
            names.add("provider:" + re.split(r"[ :]", a.error, maxsplit=1)[0])
    return names


def day_delta(record: CallRecord) -> dict[str, int | float]:
    """The counter increments one call makes to its task's day, as flat field names.

    Fields: ``calls``, ``escalations``, ``not_ok``, ``cost_usd``, ``baseline_cost_usd``,
    ``uncosted``, ``prompt_tokens``, ``completion_tokens``, ``fail:<name>`` and
    ``lat:<bound>``; zeros are left out. The day is ``day_of(record.time)``.
    """
    delta: dict[str, int | float] = {
        "calls": 1,
        "escalations": int(record.escalated),
        "not_ok": int(not record.ok),
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost_usd": record.cost_usd or 0.0,
        "baseline_cost_usd": record.baseline_cost_usd or 0.0,
        "uncosted": int(record.cost_usd is None or record.baseline_cost_usd is None),
        LATENCY_PREFIX + latency_label(record.latency_s): 1,
    }
    for name in failure_names(record):
        delta[FAIL_PREFIX + name] = 1
    return {k: v for k, v in delta.items() if v}


def merge_day(day: TaskDay, counters: Mapping[str, int | float | str | bytes]) -> TaskDay:
    """A copy of ``day`` with flat counters (as ``day_delta`` makes them) added in.

    Values may be numbers or their text (as Redis returns them); unknown fields are ignored.
    """
    values: dict[str, Any] = {}
    failures = dict(day.failures)
    latency = dict(day.latency_ms)
    for key, raw in counters.items():
        if key in FLOAT_COUNTERS:
            values[key] = values.get(key, getattr(day, key)) + float(raw)
        elif key in INT_COUNTERS:
            values[key] = values.get(key, getattr(day, key)) + int(raw)
        elif key.startswith(FAIL_PREFIX):
            name = key[len(FAIL_PREFIX) :]
            failures[name] = failures.get(name, 0) + int(raw)
        elif key.startswith(LATENCY_PREFIX):
            label = key[len(LATENCY_PREFIX) :]
            latency[label] = latency.get(label, 0) + int(raw)
    return replace(day, failures=failures, latency_ms=latency, **values)


def flat_counters(day: TaskDay) -> dict[str, int | float]:
    """The counters of ``day`` as flat fields, the inverse of ``merge_day``."""
    flat: dict[str, int | float] = {k: getattr(day, k) for k in INT_COUNTERS + FLOAT_COUNTERS}
    flat.update({FAIL_PREFIX + k: v for k, v in day.failures.items()})
    flat.update({LATENCY_PREFIX + k: v for k, v in day.latency_ms.items()})
    return flat
