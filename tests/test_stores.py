"""The store contract, run on every backend, plus the codec and ``store_from_url``."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from cascade.events import CallRecord, TaskDay
from cascade.exceptions import StoreError
from cascade.stores import (
    CorruptRecordError,
    HourlyStore,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    Store,
    default_sqlite_path,
    register_store,
    store_from_url,
)
from cascade.stores._codec import decode, encode
from cascade.stores._writer import BatchWriter
from cascade.stores.counters import day_of, hour_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    MakeRecord = Callable[..., CallRecord]

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every backend, empty."""
    if request.param == "memory":
        s: Store = store_from_url("memory://")
    elif request.param == "sqlite":
        s = store_from_url(f"sqlite:///{tmp_path}/records.sqlite3")
    else:
        s = store_from_url(f"{request.getfixturevalue('redis_url')}?spool={tmp_path}/spool")
    yield s
    s.close()


def test_every_backend_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


def test_add_then_read_back_exactly(store: Store, make_record: MakeRecord) -> None:
    kept = [make_record(), make_record(ok=False), make_record(task="summarise")]
    passing = [make_record(escalated=False, sampled=False, input=None) for _ in range(3)]
    for r in kept + passing:
        store.add(r)
    store.flush()

    assert list(store.records()) == kept
    assert list(store.records(task="summarise")) == kept[2:]
    assert store.tasks() == ["extract", "summarise"]
    days = store.days()
    today = day_of(kept[0].time)
    extract = TaskDay(
        "extract",
        today,
        calls=5,
        escalations=2,
        not_ok=1,
        cost_usd=pytest.approx(2 * 0.00053 + 3 * 0.00003),  # type: ignore[arg-type]
        baseline_cost_usd=pytest.approx(5 * 0.0005),  # type: ignore[arg-type]
        prompt_tokens=2 * 200 + 3 * 100,
        completion_tokens=2 * 45 + 3 * 20,
        failures={"schema": 2},
        latency_ms={"2500": 2, "500": 3},
    )
    summarise = TaskDay(
        "summarise",
        today,
        calls=1,
        escalations=1,
        cost_usd=pytest.approx(0.00053),  # type: ignore[arg-type]
        baseline_cost_usd=pytest.approx(0.0005),  # type: ignore[arg-type]
        prompt_tokens=200,
        completion_tokens=45,
        failures={"schema": 1},
        latency_ms={"2500": 1},
    )
    assert days == [extract, summarise]
    assert store.days(task="summarise") == [summarise]


def test_records_are_oldest_first(store: Store, make_record: MakeRecord) -> None:
    rs = [make_record() for _ in range(5)]
    for r in reversed(rs):
        store.add(r)
    store.flush()
    assert [r.id for r in store.records()] == [r.id for r in rs]


def test_records_newest_first_and_limited(store: Store, make_record: MakeRecord) -> None:
    now = make_record().time
    rs = [make_record(time=now + i) for i in range(6)]
    other = [make_record(task="summarise", time=now + 4.5 + i) for i in range(2)]
    for r in rs + other:
        store.add(r)
    store.flush()

    ids = [r.id for r in rs]
    read = store.records
    assert [r.id for r in read(task="extract", newest_first=True)] == ids[::-1]
    assert [r.id for r in read(task="extract", limit=2, newest_first=True)] == ids[:-3:-1]
    assert [r.id for r in read(task="extract", limit=2)] == ids[:2]
    assert [r.id for r in read(task="extract", limit=10)] == ids
    assert list(read(limit=0)) == []
    # Filters apply before the limit; across tasks the newest of all come first.
    assert [r.id for r in read(task="extract", until=now + 3, limit=2, newest_first=True)] == [
        ids[3],
        ids[2],
    ]
    assert [r.id for r in read(limit=3, newest_first=True)] == [other[1].id, ids[5], other[0].id]
    assert [d.calls for d in store.days()] == [6, 2]  # counters are not limited


def test_same_id_counts_once(store: Store, make_record: MakeRecord) -> None:
    r = make_record()
    unsampled = make_record(escalated=False, sampled=False)
    for _ in range(3):
        store.add(r)
        store.add(unsampled)
    store.flush()
    assert list(store.records()) == [r]
    assert [d.calls for d in store.days()] == [2]


def test_time_filters(store: Store, make_record: MakeRecord) -> None:
    now = make_record().time
    yesterday = [make_record(time=now - 86_400 + i) for i in range(3)]
    today = [make_record(time=now + i) for i in range(3)]
    for r in yesterday + today:
        store.add(r)
    store.flush()

    assert list(store.records(since=now)) == today
    assert list(store.records(until=now - 1)) == yesterday
    assert list(store.records(since=now - 86_400 + 1, until=now + 1)) == [
        *yesterday[1:],
        *today[:2],
    ]
    assert [d.calls for d in store.days(since=now)] == [3]
    assert [d.day for d in store.days(until=now - 1)] == [day_of(now - 86_400)]
    assert [d.calls for d in store.days(since=now - 86_400, until=now)] == [3, 3]


def test_hourly_counters_split_the_days(store: Store, make_record: MakeRecord) -> None:
    assert isinstance(store, HourlyStore)
    midnight = make_record().time // 86_400 * 86_400
    times = [midnight - 86_400 + 3600 * h + 7 for h in (0, 0, 5, 23)] + [
        midnight + 3600 * h + 60 for h in (1, 1, 1, 2)
    ]
    records = [make_record(time=t, escalated=i % 3 == 0) for i, t in enumerate(times)]
    records.append(make_record(time=midnight + 3600, task="other", escalated=False, sampled=False))
    for r in [*records, records[0]]:  # a record added twice counts once in its hour too
        store.add(r)
    store.flush()
    hours = store.hours(task="extract")
    assert [(h.day, h.calls) for h in hours] == [
        (hour_of(midnight - 86_400), 2), (hour_of(midnight - 86_400 + 5 * 3600), 1),
        (hour_of(midnight - 3600), 1), (hour_of(midnight + 3600), 3),
        (hour_of(midnight + 7200), 1),
    ]  # fmt: skip
    days = store.days(task="extract")
    for d in days:
        mine = [h for h in hours if h.day.startswith(d.day + "T")]
        for name in ("calls", "escalations", "not_ok", "uncosted"):
            assert sum(getattr(h, name) for h in mine) == getattr(d, name), name
        assert sum(h.cost_usd for h in mine) == pytest.approx(d.cost_usd)
        assert sum(h.baseline_cost_usd for h in mine) == pytest.approx(d.baseline_cost_usd)
    # What the charts by hour draw, no more: each field is one more command per write.
    assert all(h.failures == {} and h.latency_ms == {} and h.prompt_tokens == 0 for h in hours)
    one_hour = store.hours(since=midnight + 3600, until=midnight + 3601)
    assert [(h.task, h.calls) for h in one_hour] == [("extract", 3), ("other", 1)]
    assert [h.calls for h in store.hours(task="extract", since=midnight + 7200)] == [1]
    assert store.hours(task="extract", until=midnight - 86_400 - 1) == []


def test_many_threads_adding_at_once(store: Store, make_record: MakeRecord) -> None:
    lock = threading.Lock()
    ids: list[str] = []

    def work() -> None:
        for _ in range(150):
            with lock:  # the test's factory and list need the lock, not the store
                r = make_record(sampled=len(ids) % 2 == 0)
                ids.append(r.id)
            store.add(r)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    assert sum(d.calls for d in store.days()) == 1200
    kept = [r.id for r in store.records()]
    assert len(kept) == len(set(kept)) == 600
    assert set(kept) <= set(ids)


def test_empty_store(store: Store) -> None:
    store.flush()
    assert (list(store.records()), store.days(), store.tasks()) == ([], [], [])
    assert isinstance(store, HourlyStore)
    assert store.hours() == []


# --- backend-specific details ----------------------------------------------------------------


def test_sqlite_skips_and_counts_a_corrupt_record(tmp_path: Path, make_record: MakeRecord) -> None:
    store = SQLiteStore(tmp_path / "r.sqlite3")
    good = make_record()
    store.add(good)
    store.flush()
    with sqlite3.connect(tmp_path / "r.sqlite3") as db:
        db.execute(
            "INSERT INTO records VALUES ('bad', 'extract', ?, 1, 1, '[1, \"truncated')",
            (good.time - 1,),
        )
    assert list(store.records()) == [good]
    assert store.corrupt_records == 1
    store.close()


def test_sqlite_is_shared_by_two_writers(tmp_path: Path, make_record: MakeRecord) -> None:
    a, b = SQLiteStore(tmp_path / "r.sqlite3"), SQLiteStore(tmp_path / "r.sqlite3")
    for i in range(200):
        (a if i % 2 else b).add(make_record(sampled=False))
    a.close()
    b.close()
    reader = SQLiteStore(tmp_path / "r.sqlite3")
    assert [d.calls for d in reader.days()] == [200]
    with sqlite3.connect(tmp_path / "r.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.close()


def test_sqlite_add_after_close_reaches_the_file_through_the_spool(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    store = SQLiteStore(tmp_path / "r.sqlite3")
    store.close()
    r = make_record()
    store.add(r)  # never blocks, never writes on the caller's thread
    assert list(store.records()) == []
    later = SQLiteStore(tmp_path / "r.sqlite3")  # the next process, or one still running
    later.flush()
    assert list(later.records()) == [r]
    later.close()


def test_sqlite_unopenable_path_spools_and_reading_is_a_store_error(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    (tmp_path / "file").write_text("")
    store = SQLiteStore(tmp_path / "file" / "r.sqlite3", spool=tmp_path / "spool")
    r = make_record()
    store.add(r)
    store.flush()
    assert len(list((tmp_path / "spool").rglob("*.jsonl"))) == 1
    with pytest.raises(StoreError, match="cannot read"):
        store.days()
    store.close()


# --- store_from_url --------------------------------------------------------------------------


def test_store_from_url_schemes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)
    absolute = store_from_url(f"sqlite:///{tmp_path}/a.sqlite3")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == tmp_path / "a.sqlite3"
    monkeypatch.chdir(tmp_path)
    relative = store_from_url("sqlite://data/b.sqlite3")
    assert isinstance(relative, SQLiteStore)
    assert relative.path.resolve() == tmp_path / "data" / "b.sqlite3"
    redis_store = store_from_url("redis://127.0.0.1:1/0", spool=str(tmp_path))
    assert isinstance(redis_store, RedisStore)
    for s in (absolute, relative, redis_store):
        s.close()


def test_default_store_is_sqlite_under_cascade_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_record: MakeRecord
) -> None:
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    store = store_from_url(None)
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "home" / "records.sqlite3"
    store.add(make_record())
    store.flush()
    assert store.path.exists()
    store.close()
    monkeypatch.delenv("CASCADE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_sqlite_path() == tmp_path / "xdg" / "cascade" / "records.sqlite3"


def test_unknown_scheme_names_the_known_ones() -> None:
    known = r"memory://, redis://, redis\+cluster://, rediss://, rediss\+cluster://, sqlite://"
    with pytest.raises(ValueError, match=r"'mongo'.*" + known):
        store_from_url("mongo://:secret@db/x")
    with pytest.raises(ValueError, match=r":\*\*\*@") as info:
        store_from_url("mongo://:secret@db/x")
    assert "secret" not in str(info.value)


def test_register_store_adds_a_scheme() -> None:
    seen: dict[str, Any] = {}

    def factory(url: str, **options: Any) -> Store:
        seen.update(url=url, **options)
        return MemoryStore(url)

    register_store("mine", factory)
    assert store_from_url("mine://x", flag=True).url == "mine://x"
    assert seen == {"url": "mine://x", "flag": True}


# --- codec -----------------------------------------------------------------------------------


def test_codec_round_trips_exactly(make_record: MakeRecord) -> None:
    r = make_record(
        cost_usd=0.1 + 0.2,
        baseline_cost_usd=None,
        features={"language": "日本語", "nested": [1, {"a": None}]},
        input="emoji 🙂 and \u2028 line",
        extra={"user": "u1"},
    )
    back = decode(encode(r))
    assert back == r
    assert isinstance(back.models, tuple)
    assert isinstance(back.attempts[0].verdicts, tuple)
    assert back.cost_usd == 0.1 + 0.2
    assert "\n" not in encode(r)  # one record per line in a spool file


def test_codec_keeps_the_inclusion_probability(make_record: MakeRecord) -> None:
    r = make_record(escalated=False, inclusion_probability=0.05)
    assert decode(encode(r)).inclusion_probability == 0.05


def test_codec_reads_records_written_before_the_inclusion_probability(
    make_record: MakeRecord,
) -> None:
    r = make_record(inclusion_probability=None)
    fields = json.loads(encode(r))
    assert len(fields) == 20
    back = decode(json.dumps(fields[:19]))  # as format 1 wrote records before it
    assert back == r
    assert back.inclusion_probability is None


@pytest.mark.parametrize("p", [0, -0.5, 1.5, "0.5"])
def test_codec_rejects_an_impossible_inclusion_probability(
    make_record: MakeRecord, p: object
) -> None:
    fields = json.loads(encode(make_record()))
    with pytest.raises(CorruptRecordError):
        decode(json.dumps([*fields[:19], p]))


@given(st.floats(allow_nan=False), st.floats(min_value=0, allow_infinity=False))
def test_codec_floats_exact(cost: float, latency: float) -> None:
    r = CallRecord(
        "i",
        1.5,
        "t",
        "cascade",
        (),
        "m",
        False,
        True,
        (),
        cost,
        None,
        latency,
        0,
        0,
        {},
        None,
        False,
    )
    back = decode(encode(r))
    assert back.cost_usd is not None
    assert (back.cost_usd, math.copysign(1, back.cost_usd)) == (cost, math.copysign(1, cost))
    assert back.latency_s == latency


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"{}",
        b"[1]",
        b'[99, "id"]',
        json.dumps(
            [
                1,
                5,
                1.0,
                "t",
                "cascade",
                [],
                "m",
                False,
                True,
                [],
                None,
                None,
                1.0,
                0,
                0,
                {},
                None,
                False,
                {},
            ]
        ),
        json.dumps(
            [
                1,
                "i",
                "x",
                "t",
                "cascade",
                [],
                "m",
                False,
                True,
                [],
                None,
                None,
                1.0,
                0,
                0,
                {},
                None,
                False,
                {},
            ]
        ),
        json.dumps(
            [
                1,
                "i",
                1.0,
                "t",
                "cascade",
                [],
                "m",
                False,
                True,
                [["m"]],
                None,
                None,
                1.0,
                0,
                0,
                {},
                None,
                False,
                {},
            ]
        ),
    ],
)
def test_codec_rejects_corrupt_data(data: str | bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decode(data)


def test_corrupt_record_error_is_a_value_error() -> None:
    assert issubclass(CorruptRecordError, ValueError)


# -- the background writer ----------------------------------------------------------------


def _writer(linger_s: float) -> tuple[BatchWriter, list[int]]:
    batches: list[int] = []

    def handler(records: list[CallRecord], flushing: bool) -> None:
        if records:
            batches.append(len(records))

    return BatchWriter("test", handler, queue_size=1000, batch_size=500, linger_s=linger_s), batches


def test_the_writer_gathers_a_burst_of_records_into_one_batch(make_record: MakeRecord) -> None:
    writer, batches = _writer(linger_s=1.0)
    for _ in range(20):  # records arriving a few ms apart, as calls do
        assert writer.submit(make_record())
        time.sleep(0.005)
    assert writer.flush(timeout=5)
    writer.close()
    assert batches == [20]  # one write, not one per record


def test_a_record_the_writer_cannot_queue_goes_to_overflow_or_is_counted(
    make_record: MakeRecord,
) -> None:
    kept: list[list[CallRecord]] = []
    writer = BatchWriter(
        "test", lambda r, f: None, queue_size=0, batch_size=1, overflow=kept.append
    )
    record = make_record()
    writer.add(record)  # no room in the deque: the overflow keeps it
    assert kept == [[record]] and writer.dropped == 0
    writer.close()

    def full_disk(records: list[CallRecord]) -> None:
        raise OSError("No space left on device")

    writer = BatchWriter(
        "test", lambda r, f: None, queue_size=0, batch_size=1, overflow=full_disk,
        url="redis://:***@cache:6379/0",
    )  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        writer.add(make_record())  # nowhere to keep it: counted, not raised
        writer.add(make_record())
    assert writer.dropped == 2
    (first, _) = [e for e in logs if e["event"] == "cascade.store_dropped"]
    assert first["url"] == "redis://:***@cache:6379/0"  # which store, not only its kind
    assert first["error"] == "No space left on device"
    writer.close()


@pytest.mark.parametrize("end", ["flush", "close"])
def test_flush_and_close_do_not_wait_for_the_batch_to_fill(
    make_record: MakeRecord, end: str
) -> None:
    writer, batches = _writer(linger_s=60)  # far longer than the timeouts below
    writer.submit(make_record())
    if end == "flush":
        assert writer.flush(timeout=5)
    else:
        writer.close(timeout=5)
        assert not writer._thread.is_alive()
    assert batches == [1]
    writer.close()
