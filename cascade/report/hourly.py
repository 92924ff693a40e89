"""The hourly series of a report: the hourly counters of the report's whole days, kept only
where they add up to the daily counters (else unknown, None)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, NamedTuple

from ..stores import HourlyStore

if TYPE_CHECKING:
    from ..events import TaskDay
    from ..stores import Store

__all__ = ["HOURLY_MAX_DAYS", "HourRow", "Hours", "hours_of"]

# The longest span (in days with calls, first to last) whose hourly series a report holds.
HOURLY_MAX_DAYS = 31


class HourRow(NamedTuple):
    """One UTC hour (``YYYY-MM-DDTHH``) of one task (or of all tasks), as ``DayRow``."""

    hour: str
    calls: int
    escalations: int
    cost_usd: float
    baseline_cost_usd: float


class Hours:
    """Running sums of hourly counters: calls, escalations, cost, baseline per hour."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, h: TaskDay) -> None:
        """Add one hour's counters (``h.day`` is the hour)."""
        row = self.sums.setdefault(h.day, [0, 0, 0.0, 0.0])
        for i, v in enumerate((h.calls, h.escalations, h.cost_usd, h.baseline_cost_usd)):
            row[i] += v

    def rows(self, daily: dict[str, list[float]]) -> tuple[HourRow, ...] | None:
        """The hourly rows when they add up to every day's calls and escalations (``daily``:
        day -> [calls, escalations, ...]) and hold no other day, else None (unknown)."""
        per_day: dict[str, list[float]] = {}
        for hour, (c, e, _, _) in self.sums.items():
            day = per_day.setdefault(hour[:10], [0, 0])
            day[0] += c
            day[1] += e
        if set(per_day) - set(daily):
            return None
        if any(per_day.get(day, [0, 0]) != row[:2] for day, row in daily.items()):
            return None
        return tuple(
            HourRow(hour, int(c), int(e), cost, base)
            for hour, (c, e, cost, base) in sorted(self.sums.items())
        )


def hours_of(store: Store, days: list[TaskDay], task: str | None) -> list[TaskDay] | None:
    """The hourly counters of the whole days of ``days``; None when the store keeps none or
    the span is longer than ``HOURLY_MAX_DAYS``."""
    if not isinstance(store, HourlyStore):
        return None
    if not days:
        return []
    first, last = min(d.day for d in days), max(d.day for d in days)
    start, end = _day_start(first), _day_start(last) + 86_399
    if end - start >= HOURLY_MAX_DAYS * 86_400:
        return None
    return store.hours(task=task, since=start, until=end)


def _day_start(day: str) -> float:
    return (date.fromisoformat(day) - date(1970, 1, 1)).days * 86_400.0
