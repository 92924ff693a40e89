"""``sqlite:///path``: records and daily counters in one local SQLite file (the default store).

Tables: ``records`` (sampled records, ``id`` primary key, indexed on ``(task, time)``),
``days`` (one row of JSON counters per task and UTC day), ``hours`` (``HOUR_COUNTERS`` per
task and UTC hour, ``YYYY-MM-DDTHH``; a file written before it existed has none for its
earlier calls) and ``seen`` (ids of recent calls,
so a record added twice counts once; rows older than ``dedupe_s`` are pruned). The file is
in WAL mode and every batch is one ``BEGIN IMMEDIATE`` transaction, so several processes
may share it. Writes happen on a background thread; ``flush`` waits for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from .._logging import get_logger
from ..events import CallRecord, TaskDay
from ..exceptions import StoreError
from ._base import Waiting
from ._codec import CorruptRecordError, decode, encode
from ._delivery import Delivery, Unavailable
from ._spool import Spool, default_spool_dir
from ._writer import BatchWriter
from .counters import day_delta, day_of, flat_counters, hour_delta, hour_of, merge_day

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

log = get_logger()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, task TEXT NOT NULL, time REAL NOT NULL,
    escalated INTEGER NOT NULL, ok INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_task_time ON records (task, time);
CREATE TABLE IF NOT EXISTS days (
    task TEXT NOT NULL, day TEXT NOT NULL, counters TEXT NOT NULL, PRIMARY KEY (task, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hours (
    task TEXT NOT NULL, hour TEXT NOT NULL, counters TEXT NOT NULL, PRIMARY KEY (task, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, time REAL NOT NULL) WITHOUT ROWID;
"""


class SQLiteStore:
    """A store in one SQLite file, written by a background thread.

    Opening the file is the writer thread's first write, so a file that cannot be opened
    (corrupt, read-only, a directory in its place, a full disk) never fails a caller: its
    records go to the spool and are written once the file can be, by this process or the
    next one that opens it. Reading raises ``StoreError``.

    Args:
        path: the database file; its directory is created.
        url: how the store was named (kept as ``.url``).
        queue_size: records waiting for the writer; beyond it ``add`` spools directly.
        batch_size: records written per transaction.
        dedupe_s: how long an id is remembered to ignore a repeated ``add``.
        spool: the spool root (default ``$CASCADE_HOME/spool``); the file's own spool is a
            directory under it named from the file's absolute path.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        dedupe_s: float = 86_400.0,
        spool: str | Path | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.url = url or f"sqlite:///{self.path}"
        self.corrupt_records = 0
        self._dedupe_s = dedupe_s
        self._last_prune = 0.0
        self._db: sqlite3.Connection | None = None  # the writer thread's own connection
        self._db_pid = os.getpid()
        target = "sqlite:" + os.path.abspath(self.path)
        root = Path(spool) if spool else default_spool_dir()
        self.spool = Spool(root / hashlib.sha1(target.encode()).hexdigest()[:16])
        self._delivery = Delivery(self.url, self._send, self.spool, batch_size)
        self._writer = BatchWriter(
            "sqlite",
            self._delivery,
            queue_size=queue_size,
            batch_size=batch_size,
            rescue=self.spool.rescue,
            overflow=self.spool.append,
            url=self.url,
        )

    def waiting(self) -> Waiting:
        """The records in this store's spool now: this process's and others' (``OSError``
        when it cannot be read)."""
        return Waiting(*self.spool.count(), str(self.spool.directory))

    @property
    def dropped(self) -> int:
        """Records lost: refused alone by SQLite, unencodable, or neither written nor spooled."""
        return self._delivery.rejected + self.spool.rejected + self._writer.dropped

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def add(self, record: CallRecord) -> None:
        """Queue the record; never blocks on the database, never raises (a full queue or a
        closed store spools it)."""
        self._writer.add(record)

    def _send(self, records: list[CallRecord]) -> None:
        try:
            self._write_batch(records)
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError):
            raise  # about a record: the delivery finds which
        except (OSError, sqlite3.Error) as e:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
            self._db = None
            raise Unavailable(f"cannot write {self.path.absolute()}: {e}") from e

    def _write_batch(self, records: list[CallRecord]) -> None:
        if self._db is None or self._db_pid != os.getpid():
            # A connection must not cross a fork: a child opens its own.
            self._db, self._db_pid = self._connect(), os.getpid()
        db = self._db
        deltas: dict[tuple[str, str], TaskDay] = {}
        hourly: dict[tuple[str, str], TaskDay] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            for r in records:
                if (
                    db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (r.id, r.time)).rowcount
                    == 0
                ):
                    continue
                if r.sampled:
                    db.execute(
                        "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?)",
                        (r.id, r.task, r.time, r.escalated, r.ok, encode(r)),
                    )
                key = (r.task, day_of(r.time))
                delta = day_delta(r)
                deltas[key] = merge_day(deltas.get(key) or TaskDay(*key), delta)
                hour = (r.task, hour_of(r.time))
                hourly[hour] = merge_day(hourly.get(hour) or TaskDay(*hour), hour_delta(delta))
            _add_counters(db, "days", "day", deltas)
            _add_counters(db, "hours", "hour", hourly)
            now = time.time()
            if now - self._last_prune > 60:
                db.execute("DELETE FROM seen WHERE time < ?", (now - self._dedupe_s,))
                self._last_prune = now
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # keep the first error, not this one
                db.execute("ROLLBACK")
            raise

    def _read(self, sql: str, args: tuple[object, ...]) -> Generator[tuple[object, ...]]:
        try:
            with closing(self._connect()) as db:
                yield from db.execute(sql, args)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot read {self.url}: {e}", url=self.url) from e

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
        skipped and counted (they do not count toward ``limit``)."""
        where, args = _where(task, "time", since, until)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT body FROM records{where} ORDER BY time {order}"
        # Corrupt rows are skipped, so a limited read may need more rows than `limit`:
        # stop by counting what was yielded rather than with SQL LIMIT.
        if limit is not None and limit <= 0:
            return
        n = 0
        rows = self._read(sql, args)
        for (body,) in rows:
            try:
                record = decode(str(body))
            except CorruptRecordError as e:
                self.corrupt_records += 1
                log.warning("cascade.store_corrupt_record", url=self.url, error=str(e))
                continue
            yield record
            n += 1
            if limit is not None and n >= limit:
                rows.close()  # release the connection now, not at garbage collection
                return

    def days(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Daily counters per task for the UTC days overlapping [since, until]."""
        first = day_of(since) if since is not None else None
        last = day_of(until) if until is not None else None
        where, args = _where(task, "day", first, last)
        rows = self._read(f"SELECT task, day, counters FROM days{where} ORDER BY task, day", args)
        return [merge_day(TaskDay(str(t), str(d)), json.loads(str(c))) for t, d, c in rows]

    def hours(
        self, *, task: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[TaskDay]:
        """Hourly counters per task for the UTC hours overlapping [since, until]."""
        first = hour_of(since) if since is not None else None
        last = hour_of(until) if until is not None else None
        where, args = _where(task, "hour", first, last)
        sql = f"SELECT task, hour, counters FROM hours{where} ORDER BY task, hour"
        rows = self._read(sql, args)
        return [merge_day(TaskDay(str(t), str(h)), json.loads(str(c))) for t, h, c in rows]

    def tasks(self) -> list[str]:
        """Every task with at least one call."""
        return [str(t) for (t,) in self._read("SELECT DISTINCT task FROM days ORDER BY task", ())]

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record added so far is committed or spooled; retry the file now."""
        self._writer.flush(timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer thread (records added later are spooled)."""
        self._writer.close()
        if self._db is not None:
            self._db.close()
            self._db = None


def _add_counters(
    db: sqlite3.Connection, table: str, column: str, deltas: dict[tuple[str, str], TaskDay]
) -> None:
    """Add each (task, day or hour)'s counters to its row of ``table``."""
    for (task, when), delta in deltas.items():
        row = db.execute(
            f"SELECT counters FROM {table} WHERE task = ? AND {column} = ?", (task, when)
        ).fetchone()
        total = merge_day(delta, json.loads(row[0])) if row else delta
        db.execute(
            f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)",
            (task, when, json.dumps(flat_counters(total), separators=(",", ":"))),
        )


def _where(
    task: str | None, column: str, low: object | None, high: object | None
) -> tuple[str, tuple[object, ...]]:
    clauses, args = [], []
    for sql, value in (("task = ?", task), (f"{column} >= ?", low), (f"{column} <= ?", high)):
        if value is not None:
            clauses.append(sql)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
