"""The figures the pages show: ``report_to_dict(build_report(...))``, cached.

Counter-only reports (``sample=0``: totals, days, failures, latency) read the daily counters
and take milliseconds; they are kept ``cache_s`` seconds. A Task page's patterns read the
newest ``sample`` stored records of the task, which takes seconds over a large store, so
they are built on a background thread and kept ``patterns_s`` seconds: while the first one
is being built the page shows the counter figures and says the patterns are on their way,
and after that it shows the last complete report (with its generation time) while the next
is built. No page load waits for a pattern analysis.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .._logging import get_logger
from ..exceptions import StoreError
from ..report import build_report, report_to_dict

if TYPE_CHECKING:
    from ..stores import Store

__all__ = ["Figures"]

_log = get_logger()
Key = tuple[str | None, float | None, float | None, int]


class Figures:
    """Reports of one store, cached; ``background=False`` builds every report in the caller
    (the patterns too: for tests and static snapshots)."""

    def __init__(
        self, store: Store, *, sample: int, cache_s: float = 5.0, patterns_s: float = 60.0,
        background: bool = True,
    ) -> None:  # fmt: skip
        self.store = store
        self.sample = sample
        self.cache_s = cache_s
        self.patterns_s = patterns_s
        self.background = background
        self._cache: dict[Key, tuple[float, dict[str, Any]]] = {}  # key -> (built at, report)
        self._building: set[Key] = set()
        self._lock = threading.Lock()

    def _build(self, key: Key) -> dict[str, Any]:
        task, since, until, sample = key
        data = report_to_dict(
            build_report(self.store, task=task, since=since, until=until, sample=sample)
        )
        with self._lock:
            now = time.monotonic()
            keep = max(self.cache_s, self.patterns_s) * 10  # stale reports serve while rebuilt
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < keep}
            self._cache[key] = (now, data)
        return data

    def counters(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """The report from the counters alone (no stored record read)."""
        key: Key = (task, since, until, 0)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        return self._build(key)

    def with_patterns(
        self, *, task: str, since: float | None = None, until: float | None = None
    ) -> tuple[dict[str, Any], bool]:
        """The report with patterns from the newest ``sample`` stored records, and whether it
        has them (False: the first one is still being built; the counters are returned)."""
        key: Key = (task, since, until, self.sample)
        if not self.background:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.cache_s:
                return hit[1], True
            return self._build(key), True
        with self._lock:
            hit = self._cache.get(key)
            stale = hit is None or time.monotonic() - hit[0] >= self.patterns_s
            start = stale and key not in self._building
            if start:
                self._building.add(key)
        if start:
            threading.Thread(
                target=self._build_in_background, args=(key,), daemon=True,
                name="cascade-dashboard-patterns",
            ).start()  # fmt: skip
        if hit is not None:
            return hit[1], True
        return self.counters(task=task, since=since, until=until), False

    def _build_in_background(self, key: Key) -> None:
        try:
            self._build(key)
        except StoreError as e:  # the page shows the counters and says so on the next load
            _log.warning("cascade.dashboard_patterns_failed", task=key[0], error=str(e))
        finally:
            with self._lock:
                self._building.discard(key)
