"""The store protocol: where call records and daily counters go, and how the report reads them.

``HourlyStore`` is an optional part: a store that also keeps hourly counters (every built-in
backend does) lets the report and the dashboard draw a period hour by hour. ``Spooling`` is
another: a store that keeps what it cannot write in a local spool (SQLite, Redis) says how
many records wait there and how many were lost, so a command can say whether its records
reached the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..events import CallRecord, TaskDay


@runtime_checkable
class Store(Protocol):
    """A backend for call records.

    ``add`` is on the caller's path: it must not block on I/O and must never raise
    (a backend that writes to a server hands records to a background writer, and spools
    them locally when the server is away). Reading is for the report and may raise
    ``StoreError``.
    """

    url: str

    def add(self, record: CallRecord) -> None:
        """Count the call and, if ``record.sampled``, keep it whole."""

    def records(
        self,
        *,
        task: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[CallRecord]:
        """Sampled records, filtered by task and by time (unix seconds).

        Oldest first, or newest first with ``newest_first``; at most ``limit`` of them
        (None: all), taken from that end: ``limit=n, newest_first=True`` is the n newest.
        """

    def days(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Daily counters per task for the UTC days overlapping [since, until]."""

    def tasks(self) -> list[str]:
        """Every task with at least one call."""

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record added so far is written (or spooled)."""

    def close(self) -> None:
        """Flush and release connections and threads."""


@runtime_checkable
class HourlyStore(Protocol):
    """A store that also keeps counters per task and UTC hour (``counters.HOUR_COUNTERS``)."""

    def hours(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Hourly counters per task for the UTC hours overlapping [since, until], each a
        ``TaskDay`` whose ``day`` is the hour (``YYYY-MM-DDTHH``), with the fields of
        ``HOUR_COUNTERS`` (tokens, failures and latency are left empty); sorted by task and
        hour. Hours the store no longer keeps (or never kept) are absent."""


class Waiting(NamedTuple):
    """Records in a store's spool: this process's, other processes', and where."""

    mine: int
    others: int
    directory: str


@runtime_checkable
class Spooling(Protocol):
    """A store whose records wait in a local spool while the backend cannot take them."""

    def waiting(self) -> Waiting:
        """What waits in the spool now (files being written or sent by a process: not).
        Raises ``OSError`` when the spool cannot be read."""

    @property
    def dropped(self) -> int:
        """Records lost: refused by the backend alone, unencodable, or never spooled."""
