"""``redis://`` and ``rediss://``: a shared store many processes write to at once.

URL: ``redis://[:password@]host:port/db?prefix=cascade&maxlen=1000000&retention=30d&spool=/dir``.
Our own parameters (``prefix``, ``maxlen``, ``retention``, ``spool``, ``dedupe``, ``days``)
are removed and the rest of the URL goes to redis-py's ``Redis.from_url`` (``rediss://`` is TLS).

Keys, under the prefix::

    {prefix}:records:{task}        Stream, one entry per sampled record, field "r" = the
                                   encoded record; trimmed to ~maxlen entries, or by MINID
                                   to ~retention when retention is given
    {prefix}:day:{task}:{YYYY-MM-DD}  Hash of counters of one task on one UTC day: calls,
                                   escalations, not_ok, cost_usd, baseline_cost_usd,
                                   prompt_tokens, completion_tokens, fail:<validator>,
                                   fail:provider:<kind>, lat:<bucket ms>; expires after `days`
                                   (default 400d)
    {prefix}:tasks                 Set of task names
    {prefix}:seen:{id}             String, set once per record id, expires after `dedupe`
                                   (default 1d): what makes a replayed record count once

Each record is applied by one Lua script (SET NX of the seen key, then XADD if sampled,
HINCRBY/HINCRBYFLOAT, EXPIRE, SADD), so writes are atomic, idempotent, and nothing is
read-modify-write on the client. A background thread sends a batch per round trip; when Redis
is unreachable batches go to a local spool and are replayed, oldest first, once it answers.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..events import CallRecord, TaskDay
from ..exceptions import StoreError
from ._codec import CorruptRecordError, decode, encode
from ._spool import Spool
from ._writer import BatchWriter
from .counters import FLOAT_COUNTERS, day_delta, day_of, merge_day

if TYPE_CHECKING:
    from collections.abc import Iterator

log = structlog.get_logger("cascade")

# ARGV: seen ttl, day ttl, task, trim kind, trim threshold, record ('' when unsampled),
# counters as JSON (integers as numbers, floats as text for HINCRBYFLOAT: exact, and one
# argument instead of dozens keeps the client's packing cheap).
_APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
if ARGV[6] ~= '' then redis.call('XADD', KEYS[2], ARGV[4], '~', ARGV[5], '*', 'r', ARGV[6]) end
for field, value in pairs(cjson.decode(ARGV[7])) do
  if type(value) == 'string' then redis.call('HINCRBYFLOAT', KEYS[3], field, value)
  else redis.call('HINCRBY', KEYS[3], field, value) end
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
return 1
"""
_APPLY_SHA = hashlib.sha1(_APPLY.encode()).hexdigest()
_OWN_PARAMS = ("prefix", "maxlen", "retention", "spool", "dedupe", "days")
_PAGE = 5000
# Stream ids are Redis's clock at insertion, never before the record's own time (a spooled
# record is inserted later) unless the clocks disagree: start reading this much earlier.
_CLOCK_SLACK_S = 3600.0
_BACKOFF = (0.5, 10.0)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to log or show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``15m``, ``45s`` or a plain number of seconds."""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 15m, 45s)") from None


def default_spool_dir() -> Path:
    """``${CASCADE_HOME:-${XDG_STATE_HOME:-~/.local/state}/cascade}/spool``."""
    home = os.environ.get("CASCADE_HOME")
    if not home:
        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        home = os.path.join(state, "cascade")
    return Path(home).expanduser() / "spool"


class RedisStore:
    """A store in Redis, written by a background thread that spools while Redis is away.

    Args:
        url: ``redis://`` or ``rediss://`` URL; query parameters ``prefix``, ``maxlen``,
            ``retention``, ``spool``, ``dedupe``, ``days`` override the keyword defaults.
        queue_size: records waiting for the writer; beyond it ``add`` spools directly.
        batch_size: records per pipeline (one round trip).
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
        queue_size: int = 10_000,
        batch_size: int = 500,
    ) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        own = {k: query.pop(k) for k in _OWN_PARAMS if k in query}
        redis_url = urlunsplit(parts._replace(query=urlencode(query)))
        self.url = mask_url(url)
        self.prefix = own.get("prefix", prefix)
        self.maxlen = int(own.get("maxlen", maxlen))
        retention = own.get("retention", retention)
        self.retention_s = None if retention is None else _seconds(retention)
        self.dedupe_s = int(_seconds(own.get("dedupe", dedupe)))
        self.days_s = int(_seconds(own.get("days", days)))
        self.corrupt_records = 0
        self._batch_size = batch_size
        try:
            self._client = redis.Redis.from_url(
                redis_url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as e:
            raise ValueError(f"invalid Redis URL {self.url}: {e}") from None
        # One spool directory per server and prefix, so replays go back where they belong.
        target = f"{parts.hostname}:{parts.port}{parts.path}/{self.prefix}"
        root = (
            Path(own["spool"]) if "spool" in own else Path(spool) if spool else default_spool_dir()
        )
        self.spool = Spool(root / hashlib.sha1(target.encode()).hexdigest()[:16])
        self._retry_at = 0.0
        self._backoff = 0.0
        self._writer = BatchWriter(
            "redis", self._handle, queue_size=queue_size, batch_size=batch_size
        )

    # --- writing (caller's thread: add; writer thread: the rest) ------------------------------

    def add(self, record: CallRecord) -> None:
        """Queue the record; never blocks, never raises (a full queue spools it)."""
        if self._writer.submit(record):
            return
        try:
            self.spool.append([record])
        except OSError as e:
            log.error("cascade.store_dropped", url=self.url, error=str(e), records=1)

    def _handle(self, records: list[CallRecord], flushing: bool) -> float | None:
        wait = self._retry_at - time.monotonic()
        if wait > 0 and not flushing:
            self.spool.append(records)
            return wait
        try:
            if self.spool.dirty:
                replayed = self.spool.replay(self._send, self._batch_size)
                if replayed:
                    log.info("cascade.store_replayed", url=self.url, records=replayed)
            self._send(records)
        except redis.RedisError as e:
            self.spool.append(records)
            self._backoff = min(max(self._backoff * 2, _BACKOFF[0]), _BACKOFF[1])
            self._retry_at = time.monotonic() + self._backoff
            log.warning(
                "cascade.store_unavailable",
                url=self.url,
                error=str(e),
                spooled=len(records),
                retry_in_s=self._backoff,
            )
            return self._backoff
        if self._backoff:
            log.info("cascade.store_available", url=self.url)
            self._backoff = 0.0
        return None

    def _send(self, records: list[CallRecord]) -> None:
        """Apply records in one pipeline; load the script and resend when Redis lost it."""
        if not records:
            return
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            trim = self._trim()
            for r in records:
                self._apply(pipe, r, trim)
            results = pipe.execute(raise_on_error=False)
            errors = [e for e in results if isinstance(e, Exception)]
            if not errors:
                return
            if not all(isinstance(e, redis.exceptions.NoScriptError) for e in errors):
                raise errors[0]
            # After a restart the script cache is empty; records already applied are
            # ignored on the resend thanks to their seen keys.
            self._client.script_load(_APPLY)
        raise redis.RedisError("the apply script could not be loaded")

    def _trim(self) -> tuple[str, str]:
        if self.retention_s is None:
            return "MAXLEN", str(self.maxlen)
        return "MINID", str(int((time.time() - self.retention_s) * 1000))

    def _apply(self, pipe: redis.client.Pipeline, r: CallRecord, trim: tuple[str, str]) -> None:
        counters = {
            k: repr(float(v)) if k in FLOAT_COUNTERS else v for k, v in day_delta(r).items()
        }
        p = self.prefix
        pipe.evalsha(
            _APPLY_SHA,
            4,
            f"{p}:seen:{r.id}",
            f"{p}:records:{r.task}",
            f"{p}:day:{r.task}:{day_of(r.time)}",
            f"{p}:tasks",
            self.dedupe_s,
            self.days_s,
            r.task,
            *trim,
            encode(r) if r.sampled else "",
            json.dumps(counters, separators=(",", ":")),
        )

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record added so far is in Redis or spooled; retry Redis now."""
        self._writer.flush(timeout)

    def close(self) -> None:
        """Flush, stop the writer thread and close the connections."""
        self._writer.close()
        self._client.close()

    # --- reading (the report's thread) --------------------------------------------------------

    def _error(self, e: Exception) -> StoreError:
        return StoreError(f"cannot read {self.url}: {e}", url=self.url)

    def tasks(self) -> list[str]:
        """Every task with at least one call."""
        try:
            names = self._client.smembers(f"{self.prefix}:tasks")
        except redis.RedisError as e:
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
        key = f"{self.prefix}:records:{task}"
        low, high = start, "+"
        found = 0
        while True:
            try:
                if newest_first:
                    page: list[tuple[bytes, dict[bytes, bytes]]] = self._client.xrevrange(  # type: ignore[assignment]
                        key, high, low, count=_PAGE
                    )
                else:
                    page = self._client.xrange(key, low, high, count=_PAGE)  # type: ignore[assignment]
            except redis.RedisError as e:
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
            if len(page) < _PAGE:
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
        try:
            pipe = self._client.pipeline(transaction=False)
            for n, d in keys:
                pipe.hgetall(f"{self.prefix}:day:{n}:{d}")
            hashes = pipe.execute()
        except redis.RedisError as e:
            raise self._error(e) from e
        return [
            merge_day(TaskDay(n, d), {_text(k): _text(v) for k, v in h.items()})
            for (n, d), h in zip(keys, hashes, strict=True)
            if h
        ]


def _seconds(value: str | float) -> float:
    return parse_duration(value) if isinstance(value, str) else float(value)


def _time(r: CallRecord) -> float:
    return r.time


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
