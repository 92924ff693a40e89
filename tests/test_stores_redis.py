"""RedisStore details: the key layout, the Lua script, outages and the spool, URLs."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import pytest
import redis
from conftest import RedisServer, free_port
from redis.connection import SSLConnection
from structlog.testing import capture_logs

from cascade.exceptions import StoreError
from cascade.stores import RedisStore
from cascade.stores._spool import Spool
from cascade.stores.counters import day_of, hour_of
from cascade.stores.redis import mask_url, parse_duration

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from cascade.events import CallRecord

    MakeRecord = Callable[..., CallRecord]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def durable_redis(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """A server of its own that writes every command to its AOF, so a SIGKILL loses nothing."""
    server = RedisServer(
        redis_server.binary,
        free_port(),
        tmp_path_factory.mktemp("durable"),
        args=("--appendonly", "yes", "--appendfsync", "always"),
    )
    server.start()
    yield server
    server.kill()


def test_documented_keys(redis_url: str, client: redis.Redis, make_record: MakeRecord) -> None:
    store = RedisStore(redis_url + "?prefix=app")
    kept, counted = make_record(), make_record(escalated=False, sampled=False)
    store.add(kept)
    store.add(counted)
    store.close()
    day = f"app:day:extract:{day_of(kept.time)}"
    assert client.type("app:records:extract") == b"stream"
    assert client.xlen("app:records:extract") == 1  # the unsampled record is only counted
    assert client.type(day) == b"hash"
    assert client.hget(day, "calls") == b"2"
    assert client.hget(day, "fail:schema") == b"1"
    assert 399 * 86_400 < client.ttl(day) <= 400 * 86_400
    assert client.smembers("app:tasks") == {b"extract"}
    for r in (kept, counted):
        assert client.get(f"app:seen:{r.id}") == b"1"
        assert 0 < client.ttl(f"app:seen:{r.id}") <= 86_400
    hour = f"app:hour:extract:{hour_of(kept.time)}"
    assert client.type(hour) == b"hash"
    assert client.hget(hour, "calls") == b"2"
    assert client.hget(hour, "escalations") == b"1"
    assert client.hget(hour, "cost_usd") == client.hget(day, "cost_usd")
    assert client.hget(hour, "fail:schema") is None  # the hours keep what the charts draw
    assert client.hget(hour, "prompt_tokens") is None
    assert 13 * 86_400 < client.ttl(hour) <= 14 * 86_400


def test_hourly_counters_expire_as_the_hours_parameter_says(
    redis_url: str, client: redis.Redis, make_record: MakeRecord
) -> None:
    store = RedisStore(redis_url + "?prefix=short&hours=2h")
    r = make_record(time=time.time() - 4 * 3600)  # written late, older than the hours kept
    recent = make_record(time=time.time())
    store.add(r)
    store.add(recent)
    store.close()
    assert 3600 < client.ttl(f"short:hour:extract:{hour_of(r.time)}") <= 7200
    assert store.hours_s == 7200
    # The read looks back only as far as hours are kept (another hour for the last write).
    assert [h.day for h in store.hours()] == [hour_of(recent.time)]


def test_apply_is_idempotent_across_writers(
    redis_url: str, tmp_path: Path, make_record: MakeRecord
) -> None:
    # Two stores stand for two processes that both got the same record (a replayed spool).
    a = RedisStore(redis_url, spool=tmp_path / "a")
    b = RedisStore(redis_url, spool=tmp_path / "b")
    r = make_record()
    for s in (a, b, a):
        s.add(r)
        s.flush()
    assert list(a.records()) == [r]
    assert [d.calls for d in b.days()] == [1]
    a.close()
    b.close()


def test_script_reloaded_after_script_flush(
    redis_url: str, client: redis.Redis, make_record: MakeRecord
) -> None:
    store = RedisStore(redis_url)
    store.add(make_record())
    store.flush()
    client.script_flush()
    store.add(make_record())
    store.close()
    assert [d.calls for d in store.days()] == [2]


def test_outage_loses_and_duplicates_nothing(
    durable_redis: RedisServer,
    tmp_path: Path,
    make_record: MakeRecord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cascade")  # the library's INFO events, when asked
    store = RedisStore(durable_redis.url, spool=tmp_path / "spool", batch_size=20)
    records = [make_record(escalated=i % 3 == 0, sampled=i % 2 == 0) for i in range(600)]
    half = threading.Event()

    def adder() -> None:
        for i, r in enumerate(records):
            store.add(r)
            if i == 200:
                half.set()
            time.sleep(0.0005)

    with capture_logs() as logs:
        thread = threading.Thread(target=adder)
        thread.start()
        half.wait()
        durable_redis.kill()
        time.sleep(0.3)
        durable_redis.start()
        thread.join()
        store.flush(timeout=20)

    events = {e["event"] for e in logs}
    assert {"cascade.store_unavailable", "cascade.store_replayed"} <= events
    kept = [r.id for r in store.records()]
    assert sorted(kept) == sorted(r.id for r in records if r.sampled)
    days = store.days()
    assert sum(d.calls for d in days) == 600
    assert sum(d.escalations for d in days) == 200
    assert sum(d.prompt_tokens for d in days) == sum(r.prompt_tokens for r in records)
    assert not list((tmp_path / "spool").rglob("*.jsonl"))
    store.close()


def test_full_queue_spools_then_replays(
    redis_url: str, tmp_path: Path, make_record: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cascade")  # the library's INFO events, when asked
    store = RedisStore(redis_url, spool=tmp_path, queue_size=1, batch_size=1)
    records = [make_record() for _ in range(300)]
    with capture_logs() as logs:
        for r in records:
            store.add(r)
        store.flush()
    replayed = sum(e["records"] for e in logs if e["event"] == "cascade.store_replayed")
    assert replayed > 0
    assert [r.id for r in store.records()] == [r.id for r in records]
    assert sum(d.calls for d in store.days()) == 300
    store.close()


def test_spool_left_by_another_process_is_replayed_at_once(
    redis_url: str, tmp_path: Path, make_record: MakeRecord
) -> None:
    first = RedisStore(redis_url, spool=tmp_path)
    first.close()
    leftover = [make_record() for _ in range(5)]
    Spool(first.spool.directory).append(leftover)  # a process that just ended
    (first.spool.directory / "torn.jsonl").write_text('[1, "half a rec')
    second = RedisStore(redis_url, spool=tmp_path)  # started right after it
    second.flush()
    assert list(second.records()) == leftover
    assert second.spool.corrupt_lines == 1
    assert not list(first.spool.directory.glob("*"))
    second.close()


@pytest.mark.parametrize("busy", [True, False])
def test_a_running_process_replays_what_another_spools_later(
    redis_url: str, tmp_path: Path, make_record: MakeRecord, busy: bool
) -> None:
    running = RedisStore(redis_url, spool=tmp_path)  # a server process, busy or idle
    first = make_record()
    if busy:
        running.add(first)
        running.flush()  # it has looked at the spool and found nothing
    later = [make_record() for _ in range(3)]
    Spool(running.spool.directory).append(later)  # a short process that saw Redis down
    deadline = time.monotonic() + 10
    while len(list(running.records())) < len(later) + busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.id for r in running.records()] == [r.id for r in ([first] if busy else []) + later]
    running.close()


def test_records_of_a_run_with_a_wrong_password_reach_redis_through_the_next_run(
    redis_server: RedisServer, tmp_path: Path, make_record: MakeRecord
) -> None:
    server = RedisServer(redis_server.binary, free_port(), tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", "right")
    admin.close()
    try:
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        wrong = RedisStore(url, spool=tmp_path / "spool")
        records = [make_record() for _ in range(50)]
        for r in records:
            wrong.add(r)
        wrong.close()  # refused by the server: all spooled, in the directory of that server
        right = RedisStore(url.replace("wrong", "right"), spool=tmp_path / "spool")
        right.flush()  # a process started right after, with the password fixed
        assert [r.id for r in right.records()] == [r.id for r in records]
        right.close()
    finally:
        server.kill()


def test_a_file_being_appended_to_is_not_claimed(
    redis_url: str, tmp_path: Path, make_record: MakeRecord
) -> None:
    store = RedisStore(redis_url, spool=tmp_path)
    other = Spool(store.spool.directory)
    other.append([make_record()])
    (path,) = store.spool.directory.glob("*.jsonl")
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # another process is in the middle of an append
        store.flush()
        assert list(store.records()) == []
    store.flush()
    assert len(list(store.records())) == 1
    store.close()


def test_forked_child_gets_its_own_writer(redis_url: str, make_record: MakeRecord) -> None:
    store = RedisStore(redis_url)
    parent, child = make_record(), make_record()
    store.add(parent)
    pid = os.fork()
    if pid == 0:  # the child: add through the inherited store, then leave at once
        store.add(child)
        store.flush(timeout=5)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    store.flush()
    assert sorted(r.id for r in store.records()) == [parent.id, child.id]
    store.close()


def test_unreachable_redis_spools_and_masks_the_password(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    store = RedisStore(url, spool=tmp_path)
    assert store.url == url.replace("s3cret", "***")
    with capture_logs() as logs:
        store.add(make_record())
        store.flush(timeout=5)
    assert [e["event"] for e in logs] == ["cascade.store_unavailable"]
    assert "s3cret" not in repr(logs)
    assert len(list(tmp_path.rglob("*.jsonl"))) == 1
    with pytest.raises(StoreError, match=r"redis://:\*\*\*@127\.0\.0\.1") as info:
        store.days()
    assert "s3cret" not in str(info.value)
    with pytest.raises(StoreError):
        list(store.records())
    store.close()


def test_corrupt_stream_entry_is_skipped_and_counted(
    redis_url: str, client: redis.Redis, make_record: MakeRecord
) -> None:
    store = RedisStore(redis_url)
    good = make_record()
    store.add(good)
    store.flush()
    client.xadd("cascade:records:extract", {"r": b"\x00garbage"})
    client.xadd("cascade:records:extract", {"other": b"1"})
    assert list(store.records()) == [good]
    assert store.corrupt_records == 2
    store.close()


def test_records_read_in_pages(redis_url: str, make_record: MakeRecord) -> None:
    store = RedisStore(redis_url)
    # Times in the past (the fixture's count from today's midnight would run up to 2.8 hours
    # ahead of the clock before 02:47 UTC, beyond the store's one-hour slack for `since`).
    start = time.time() - 3 * 3600
    records = [make_record(task=f"t{i % 2}", time=start + i) for i in range(5003 * 2)]
    for r in records:
        store.add(r)
    store.flush()
    assert [r.id for r in store.records()] == [r.id for r in records]
    assert len(list(store.records(task="t1", since=records[-4].time))) == 2
    store.close()


def test_maxlen_and_retention_trim_streams(
    redis_url: str, client: redis.Redis, make_record: MakeRecord
) -> None:
    store = RedisStore(redis_url + "?maxlen=10")
    for _ in range(500):
        store.add(make_record())
    store.close()
    assert client.xlen("cascade:records:extract") < 200
    assert client.hget(f"cascade:day:extract:{day_of(time.time())}", "calls") == b"500"

    client.flushdb()
    store = RedisStore(redis_url + "?retention=1s")
    for _ in range(300):
        store.add(make_record())
    store.flush()
    time.sleep(1.1)
    store.add(make_record())
    store.close()
    assert client.xlen("cascade:records:extract") < 200


def test_url_parameters_are_ours_and_rediss_uses_tls(tmp_path: Path) -> None:
    store = RedisStore(
        "rediss://:pw@cache.example:6380/2?prefix=x&maxlen=10&retention=7d&dedupe=2h"
        f"&days=30d&spool={tmp_path}&ssl_cert_reqs=none"
    )
    pool = store._client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert pool.connection_kwargs["db"] == 2
    assert not {"prefix", "maxlen", "retention", "spool"} & set(pool.connection_kwargs)
    assert (store.prefix, store.maxlen, store.retention_s) == ("x", 10, 7 * 86_400)
    assert (store.dedupe_s, store.days_s) == (7200, 30 * 86_400)
    assert store.spool.directory.parent == tmp_path
    assert store.url.startswith("rediss://:***@cache.example:6380/2?")
    store.close()


def test_a_url_parameter_redis_py_does_not_take_is_refused_when_the_store_is_made(
    tmp_path: Path,
) -> None:
    # Before, it was refused at the first write, as if the records were at fault: they (and
    # the spooled records of other runs replayed with them) were dropped.
    with pytest.raises(ValueError, match=r"invalid Redis URL .*\?pw=\*\*\*.*'pw'") as info:
        RedisStore(f"redis://127.0.0.1:1/0?pw=s3cret&spool={tmp_path}")
    assert "s3cret" not in str(info.value)


def test_mask_url_and_durations() -> None:
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"
    assert mask_url("bogus://") == "bogus://"  # a URL with nothing to mask is left as given
    # A password holding '#', '?' or '/' ends urllib's host part early: all of it is masked,
    # and the store refuses the URL (it would connect elsewhere) without quoting it.
    for url, shown in [
        ("redis://:pa#ss@127.0.0.1:1/0", "redis://***@127.0.0.1:1/0"),
        ("redis://:6379#hunter2@10.0.0.1/0", "redis://***@10.0.0.1/0"),
        ("rediss+cluster://:a/b?c@h:1", "rediss+cluster://***@h:1"),
        ("redis:/u:hunter2@h:1", "redis://***@h:1"),  # one slash: no host part at all
        ("redis://:pa[ss@h:1/0", "redis://***@h:1/0"),  # urllib cannot split it
        ("redis://h:1/0?password=hun#ter2", "redis://h:1/0?***"),
    ]:
        assert mask_url(url) == shown
        with pytest.raises(ValueError, match="percent-encode") as info:
            RedisStore(url)
        said = str(info.value)
        assert not any(s in said for s in ("pa#ss", "pa[ss", "hunter2", "ter2", "a/b?c"))
    with pytest.raises(ValueError, match=r"invalid port in redis://h:x/0$"):
        RedisStore("redis://h:x/0")
    # redis-py reads a password from the query too: it is masked there as well.
    # From the first secret on, the query is masked: an unencoded '&' in it would split it.
    assert mask_url("redis://h:1/0?password=s3cret&prefix=x") == "redis://h:1/0?password=***"
    assert (
        mask_url("redis://h:1/0?prefix=x&password=hun&ter2")
        == "redis://h:1/0?prefix=x&password=***"
    )
    assert mask_url("redis://h:1/0?password=hun#ter2") == "redis://h:1/0?***"
    assert [parse_duration(t) for t in ("30d", "12h", "15m", "45s", "2.5")] == [
        2_592_000,
        43_200,
        900,
        45,
        2.5,
    ]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
