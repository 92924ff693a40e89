"""``memory://``: records and counters in this process's memory, for tests and notebooks."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..events import CallRecord, TaskDay
from .counters import day_delta, day_of, hour_delta, hour_of, merge_day

if TYPE_CHECKING:
    from collections.abc import Iterator


class MemoryStore:
    """A thread-safe in-memory store; everything is lost when the process ends.

    ``add`` writes at once (there is no I/O to wait for), so ``flush`` has nothing to do.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._records: list[CallRecord] = []
        self._days: dict[tuple[str, str], TaskDay] = {}
        self._hours: dict[tuple[str, str], TaskDay] = {}

    def add(self, record: CallRecord) -> None:
        """Count the call and keep it if sampled; an id already added is ignored."""
        key = (record.task, day_of(record.time))
        hour = (record.task, hour_of(record.time))
        delta = day_delta(record)
        with self._lock:
            if record.id in self._seen:
                return
            self._seen.add(record.id)
            if record.sampled:
                self._records.append(record)
            self._days[key] = merge_day(self._days.get(key) or TaskDay(*key), delta)
            hourly = self._hours.get(hour) or TaskDay(*hour)
            self._hours[hour] = merge_day(hourly, hour_delta(delta))

    def records(
        self,
        *,
        task: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[CallRecord]:
        """Sampled records by task and time, oldest (or newest) first, at most ``limit``."""
        with self._lock:
            found = [r for r in self._records if _matches(r.task, r.time, task, since, until)]
        found.sort(key=lambda r: r.time, reverse=newest_first)
        return iter(found if limit is None else found[: max(limit, 0)])

    def days(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Daily counters per task for the UTC days overlapping [since, until]."""
        first = day_of(since) if since is not None else ""
        last = day_of(until) if until is not None else "9999"
        with self._lock:
            days = list(self._days.values())
        return _between(days, task, first, last)

    def hours(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Hourly counters per task for the UTC hours overlapping [since, until]."""
        first = hour_of(since) if since is not None else ""
        last = hour_of(until) if until is not None else "9999"
        with self._lock:
            hours = list(self._hours.values())
        return _between(hours, task, first, last)

    def tasks(self) -> list[str]:
        """Every task with at least one call."""
        with self._lock:
            return sorted({task for task, _ in self._days})

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to wait for: ``add`` is synchronous."""

    def close(self) -> None:
        """Nothing to release."""


def _between(counters: list[TaskDay], task: str | None, first: str, last: str) -> list[TaskDay]:
    return sorted(
        (d for d in counters if (task is None or d.task == task) and first <= d.day <= last),
        key=lambda d: (d.task, d.day),
    )


def _matches(
    rtask: str, rtime: float, task: str | None, since: float | None, until: float | None
) -> bool:
    return (
        (task is None or rtask == task)
        and (since is None or rtime >= since)
        and (until is None or rtime <= until)
    )
