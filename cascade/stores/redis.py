"""``redis://``, ``rediss://`` and ``redis+cluster://``: a shared store many processes write to.

URL: ``redis://[:password@]host:port/db?prefix=cascade&maxlen=1000000&retention=30d&spool=/dir``.
Our own parameters (``prefix``, ``maxlen``, ``retention``, ``spool``, ``dedupe``, ``days``,
``hours``)
are removed and the rest of the URL goes to redis-py's ``Redis.from_url`` (``rediss://`` is TLS).
``redis+cluster://[:password@]host:port[,host:port...]?prefix=...`` uses a Redis Cluster,
with the keys below tagged by task (see ``_redis_url.Keys``).

Keys, under the prefix::

    {prefix}:records:{task}        Stream, one entry per sampled record, field "r" = the
                                   encoded record; trimmed to ~maxlen entries, or by MINID
                                   to ~retention when retention is given
    {prefix}:day:{task}:{YYYY-MM-DD}  Hash of counters of one task on one UTC day: calls,
                                   escalations, not_ok, cost_usd, baseline_cost_usd,
                                   prompt_tokens, completion_tokens, fail:<validator>,
                                   fail:provider:<kind>, lat:<bucket ms>; expires `days`
                                   (default 400d) after its first call
    {prefix}:hour:{task}:{YYYY-MM-DDTHH}  Hash of the counters of one task in one UTC hour
                                   the charts by hour draw: calls, escalations, not_ok,
                                   uncosted, cost_usd, baseline_cost_usd; expires `hours`
                                   (default 14d) after its last write
    {prefix}:tasks                 Set of task names
    {prefix}:seen:{id}             String, set once per record id, expires after `dedupe`
                                   (default 1d): what makes a replayed record count once

Each record is applied by one Lua script (SET NX of the seen key, then XADD if sampled,
HINCRBY/HINCRBYFLOAT, EXPIRE, SADD; see ``_redis_apply``), so writes are atomic, idempotent,
and nothing is read-modify-write on the client; on a cluster the task set is added to by
its own SADD, as it lives in another slot. The hourly counters of the records a batch
applied follow in one more round trip, summed per task and hour. A background thread
sends a batch per round trip; when Redis is unreachable batches go to a local spool and are
replayed, oldest first, once it answers.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from redis.exceptions import RedisClusterException

from .._logging import get_logger
from ..events import CallRecord, TaskDay
from ..exceptions import StoreError
from ._base import Waiting
from ._codec import CorruptRecordError, decode
from ._delivery import Delivery, Unavailable
from ._redis_apply import APPLY, add_hours, apply
from ._redis_url import Keys, mask_url, parse, parse_duration, spool_name
from ._spool import Spool, default_spool_dir
from ._writer import BatchWriter
from .counters import day_delta, day_of, hour_of, merge_day

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from redis.cluster import RedisCluster

__all__ = ["RedisStore", "default_spool_dir", "mask_url", "parse_duration"]

log = get_logger()

_PAGE = 5000
# What a client raises while the server (or cluster) cannot be used; reads turn it into
# StoreError, writes into a spool.
_ERRORS = (redis.RedisError, RedisClusterException)
# Stream ids are Redis's clock at insertion, never before the record's own time (a spooled
# record is inserted later) unless the clocks disagree: start reading this much earlier.
_CLOCK_SLACK_S = 3600.0


class RedisStore:
    """A store in Redis, written by a background thread that spools while Redis is away.

    Args:
        url: ``redis://``, ``rediss://`` or ``redis+cluster://`` URL; query parameters
            ``prefix``, ``maxlen``, ``retention``, ``spool``, ``dedupe``, ``days``, ``hours``
            override the keyword defaults (``days``/``hours``: how long the daily and the
            hourly counters are kept).
        queue_size: records waiting for the writer; beyond it ``add`` spools directly.
        batch_size: records per pipeline (one round trip).

    Raises ``ValueError`` for a malformed URL; connecting is left to the writer, so a
    server that is down is not an error here.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cascade",
        maxlen: int = 1_000_000,
        retention: str | float | None = None,
        spool: str | Path | None = None,
        dedupe: str | float = "1d",
        days: str | float = "400d",
        hours: str | float = "14d",
        queue_size: int = 10_000,
        batch_size: int = 500,
    ) -> None:
        target = parse(url, prefix)
        own = target.own
        self.url = target.masked
        self.prefix = own.get("prefix", prefix)
        self.keys = Keys(self.prefix, target.cluster)
        self.maxlen = int(own.get("maxlen", maxlen))
        retention = own.get("retention", retention)
        self.retention_s = None if retention is None else _seconds(retention)
        self.dedupe_s = int(_seconds(own.get("dedupe", dedupe)))
        self.days_s = int(_seconds(own.get("days", days)))
        self.hours_s = int(_seconds(own.get("hours", hours)))
        self.corrupt_records = 0
        self._target = target
        self._client_lock = threading.Lock()
        self._client_made: redis.Redis | RedisCluster | None = None
        if not target.cluster:  # made now, so that a malformed URL fails here
            try:
                self._client_made = target.client()
            except ValueError as e:
                raise ValueError(f"invalid Redis URL {self.url}: {e}") from None
        # One spool directory per server and prefix, so replays go back where they belong.
        root = Path(own.get("spool") or spool or default_spool_dir())
        self.spool = Spool(root / spool_name(target))
        self._delivery = Delivery(self.url, self._send, self.spool, batch_size)
        self._writer = BatchWriter(
            "redis",
            self._delivery,
            queue_size=queue_size,
            batch_size=batch_size,
            rescue=self.spool.rescue,
            overflow=self.spool.append,
            url=self.url,
        )

    @property
    def _client(self) -> redis.Redis | RedisCluster:
        """The client; a cluster's is made on first use (it connects), raising
        ``redis.RedisError`` while no node answers."""
        if self._client_made is None:
            with self._client_lock:
                if self._client_made is None:
                    self._client_made = self._target.client()
        return self._client_made

    def waiting(self) -> Waiting:
        """This store's spool now: this process's records and others' (OSError: unreadable)."""
        return Waiting(*self.spool.count(), str(self.spool.directory))

    @property
    def dropped(self) -> int:
        """Records lost: refused alone by Redis, unencodable, or neither sent nor spooled."""
        return self._delivery.rejected + self.spool.rejected + self._writer.dropped

    # --- writing (caller's thread: add; writer thread: the rest) ------------------------------

    def add(self, record: CallRecord) -> None:
        """Queue the record; never blocks, never raises (a full queue spools it)."""
        self._writer.add(record)

    def _send(self, records: list[CallRecord]) -> None:
        try:
            self._pipeline(records)
        except _ERRORS as e:
            if _about_a_record(e):
                raise
            raise Unavailable(f"{type(e).__name__}: {e}") from e

    def _pipeline(self, records: list[CallRecord]) -> None:
        """Apply records in one pipeline; load the script and resend when Redis lost it.
        Then add the hourly counters of those the script applied (not those seen before)
        in a second one: were it lost, those hours would not add up to their day, and the
        report says the day's hours are unknown rather than show them short."""
        client = self._client
        deltas = [day_delta(r) for r in records]
        applied: list[tuple[CallRecord, dict[str, int | float]]] = []
        for _ in range(2):
            pipe = client.pipeline(transaction=False)
            trim = self._trim()
            tasks = sorted({r.task for r in records}) if self.keys.cluster else []
            for task in tasks:  # on a cluster the task set is in a slot of its own
                pipe.sadd(self.keys.tasks, task)
            for r, delta in zip(records, deltas, strict=True):
                apply(pipe, self.keys, r, delta, trim, (self.dedupe_s, self.days_s))
            results = pipe.execute(raise_on_error=False)
            done = results[len(tasks) :]
            applied += [(r, d) for r, d, ok in zip(records, deltas, done, strict=True) if ok == 1]
            errors = [e for e in results if isinstance(e, Exception)]
            if not errors:
                if applied:
                    pipe = client.pipeline(transaction=False)
                    add_hours(pipe, self.keys, applied, self.hours_s)
                    pipe.execute()
                return
            if not all(isinstance(e, redis.exceptions.NoScriptError) for e in errors):
                # A server-wide error first: the batch waits as a whole, not record by record.
                raise min(errors, key=_about_a_record)
            # After a restart the script cache is empty; records already applied are
            # ignored on the resend thanks to their seen keys.
            client.script_load(APPLY)
        raise redis.RedisError("the apply script could not be loaded")

    def _trim(self) -> tuple[str, str]:
        if self.retention_s is None:
            return "MAXLEN", str(self.maxlen)
        return "MINID", str(int((time.time() - self.retention_s) * 1000))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record added so far is in Redis or spooled; retry Redis now."""
        self._writer.flush(timeout)

    def close(self) -> None:
        """Flush, stop the writer thread and close the connections."""
        self._writer.close()
        if self._client_made is not None:
            with contextlib.suppress(redis.RedisError):
                self._client_made.close()

    # --- reading (the report's thread) --------------------------------------------------------

    def _error(self, e: Exception) -> StoreError:
        return StoreError(f"cannot read {self.url}: {e}", url=self.url)

    def tasks(self) -> list[str]:
        """Every task with at least one call."""
        try:
            names = self._client.smembers(self.keys.tasks)
        except _ERRORS as e:
            raise self._error(e) from e
        return sorted(_text(n) for n in names)

    def records(
        self,
        *,
        task: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[CallRecord]:
        """Sampled records, oldest (or newest) first, at most ``limit``; corrupt ones are
        skipped and counted.

        With ``limit`` each task's stream is read from that end only until ``limit`` records
        are found, so "newest" is by arrival in Redis (a record replayed from a spool
        arrives late); the records found are then ordered by their own time.
        """
        if limit is not None and limit <= 0:
            return iter(())
        tasks = [task] if task is not None else self.tasks()
        start = "-" if since is None else str(max(0, int((since - _CLOCK_SLACK_S) * 1000)))
        per_task = [
            sorted(
                self._stream(t, start, since, until, limit, newest_first),
                key=_time,
                reverse=newest_first,
            )
            for t in tasks
        ]
        merged = heapq.merge(*per_task, key=_time, reverse=newest_first)
        return merged if limit is None else itertools.islice(merged, limit)

    def _stream(
        self,
        task: str,
        start: str,
        since: float | None,
        until: float | None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[CallRecord]:
        key = self.keys.records(task)
        low, high = start, "+"
        found = 0
        while True:
            # A limited read asks for what it still needs, not a whole page (entries are KBs).
            count = _PAGE if limit is None else max(1, min(_PAGE, limit - found))
            try:
                if newest_first:
                    page: list[tuple[bytes, dict[bytes, bytes]]] = self._client.xrevrange(  # type: ignore[assignment]
                        key, high, low, count=count
                    )
                else:
                    page = self._client.xrange(key, low, high, count=count)  # type: ignore[assignment]
            except _ERRORS as e:
                raise self._error(e) from e
            for entry_id, fields in page:
                try:
                    r = decode(fields[b"r"])
                except (CorruptRecordError, KeyError) as e:
                    self.corrupt_records += 1
                    log.warning(
                        "cascade.store_corrupt_record", url=self.url, id=entry_id, error=str(e)
                    )
                    continue
                if (since is None or r.time >= since) and (until is None or r.time <= until):
                    yield r
                    found += 1
                    if limit is not None and found >= limit:
                        return
            if len(page) < count:
                return
            last = "(" + page[-1][0].decode()
            if newest_first:
                high = last
            else:
                low = last

    def days(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Daily counters per task for the UTC days overlapping [since, until].

        Without ``since`` it looks back as far as counters live (the ``days`` setting).
        """
        now = time.time()
        first = since if since is not None else now - self.days_s
        last = until if until is not None else now + 86_400
        dates: list[str] = []
        t = first
        while day_of(t) <= day_of(last):
            dates.append(day_of(t))
            t += 86_400
        keys = [(n, d) for n in ([task] if task is not None else self.tasks()) for d in dates]
        return self._hashes(self.keys.day, keys)

    def hours(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Hourly counters per task for the UTC hours overlapping [since, until].

        Only the hours of days that have counters are read, and none older than the
        ``hours`` setting (default 14 days): those have expired.
        """
        now = time.time()
        first = max(since if since is not None else 0.0, now - self.hours_s - 3600)
        last = until if until is not None else now + 3600
        if first > last:
            return []
        wanted: list[tuple[str, str]] = []
        for d in self.days(task=task, since=first, until=last):
            start = max(first, _day_start(d.day))
            end = min(last, _day_start(d.day) + 86_399)
            t = start - start % 3600
            while t <= end:
                wanted.append((d.task, hour_of(t)))
                t += 3600
        return self._hashes(self.keys.hour, wanted)

    def _hashes(
        self, key: Callable[[str, str], str], wanted: list[tuple[str, str]]
    ) -> list[TaskDay]:
        """The counter hashes of (task, day or hour) pairs, in one pipeline; empty ones left out."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for n, d in wanted:
                pipe.hgetall(key(n, d))
            hashes = pipe.execute()
        except _ERRORS as e:
            raise self._error(e) from e
        return [
            merge_day(TaskDay(n, d), {_text(k): _text(v) for k, v in h.items()})
            for (n, d), h in zip(wanted, hashes, strict=True)
            if h
        ]


def _about_a_record(e: Exception) -> bool:
    """True for an error one record causes (its key holds another type, its script failed):
    that record is rejected. Any other error is the server's, and every record waits."""
    if type(e) is not redis.ResponseError:
        return isinstance(e, redis.DataError)
    text = str(e)
    return text.startswith("WRONGTYPE") or "user_script" in text


def _day_start(day: str) -> float:
    """The unix time at which a UTC day (``YYYY-MM-DD``) starts."""
    return (date.fromisoformat(day) - date(1970, 1, 1)).days * 86_400.0


def _seconds(value: str | float) -> float:
    return parse_duration(value) if isinstance(value, str) else float(value)


def _time(r: CallRecord) -> float:
    return r.time


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
