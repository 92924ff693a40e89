"""Nothing lost, nothing raised: stores that cannot be opened or written, bad records, and
a process that ends (normally or by SIGTERM) while records are still on their way."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Any

import openai
import pytest
import yaml
from conftest import RedisServer, free_port

import cascade
from cascade.cli import main
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.stores import MemoryStore, RedisStore, SQLiteStore, Store, store_from_url
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from cascade.events import CallRecord

    MakeRecord = Callable[..., CallRecord]

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10 EUR"}]
GOOD = json.dumps({"invoice_number": "INV-1", "total": 10})
BAD = "not json"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    schema = {"type": "object", "required": ["invoice_number"]}
    policy = {
        "models": ["gpt-4o-mini", "gpt-4o"],
        "validators": [{"type": "json_schema", "schema": schema}],
    }
    (d / "t.yaml").write_text(yaml.safe_dump(policy))
    return d


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Make a path immutable (``chattr +i``): not even root may write it, as on a read-only
    filesystem. Undone after the test."""
    done: list[Path] = []

    def make(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported here")
        done.append(path)

    yield make
    for path in done:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def _break(kind: str, home: Path, immutable: Callable[[Path], None]) -> str:
    """A store URL that cannot be opened or written, in one of the ways disks go wrong."""
    if kind == "corrupt":
        (home / "r.sqlite3").write_bytes(b"this is not a database" * 100)
    elif kind == "directory":
        (home / "r.sqlite3").mkdir()
    elif kind == "read-only":
        (home / "ro").mkdir()
        immutable(home / "ro")
        return f"sqlite:///{home}/ro/r.sqlite3"
    elif kind == "unwritable-home":
        return "sqlite:////proc/cascade-home/r.sqlite3"  # no one may create files in /proc
    return f"sqlite:///{home}/r.sqlite3"


KINDS = ["corrupt", "directory", "read-only", "unwritable-home"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_store_that_cannot_open_never_fails_a_paid_call(
    kind: str, tmp_path: Path, server: ScriptedServer, policies: Path, immutable: Any
) -> None:
    url = _break(kind, tmp_path, immutable)
    server.script("gpt-4o-mini", BAD)
    server.script("gpt-4o", GOOD)
    with cascade.Cascade(policies, client=server.client(), store=url) as c:
        for _ in range(5):
            result = c.run("t", MSGS)
            assert (result.model, result.ok) == ("gpt-4o", True)
        store = c.store
        store.flush()
        spool = store.spool.directory  # type: ignore[attr-defined]
        lines = sum(len(p.read_text().splitlines()) for p in spool.glob("*.jsonl"))
        assert lines == 5  # every record waits in the spool (CASCADE_HOME is writable)
        with pytest.raises(cascade.StoreError, match="cannot read"):
            store.days()


def test_cascade_serve_answers_with_a_store_that_cannot_open(
    tmp_path: Path, server: ScriptedServer, policies: Path, immutable: Any
) -> None:
    url = _break("directory", tmp_path, immutable)
    server.script("gpt-4o-mini", GOOD)
    config = ProxyConfig(proxy_keys=("k",), default_task="t")
    c, up = proxy_cascade(  # as `cascade serve` makes them
        policies, url, config, base_url=server.base_url, api_key="up", max_retries=0, timeout=5
    )
    proxy = ProxyServer(create_app(c, config, up)).start()
    try:
        with openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0) as client:
            for _ in range(3):
                answer = client.chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
                assert answer.choices[0].message.content == GOOD
    finally:
        proxy.stop()


async def test_a_broken_store_never_fails_arun(
    tmp_path: Path, server: ScriptedServer, policies: Path, immutable: Any
) -> None:
    url = _break("corrupt", tmp_path, immutable)
    server.script("gpt-4o-mini", GOOD)
    async with cascade.Cascade(policies, async_client=server.async_client(), store=url) as c:
        result = await c.arun("t", MSGS)
        assert result.ok


def test_records_of_a_broken_file_reach_it_once_it_is_repaired(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    path = tmp_path / "r.sqlite3"
    path.mkdir()  # a directory where the file should be
    broken = SQLiteStore(path)
    records = [make_record() for _ in range(20)]
    for r in records:
        broken.add(r)
    broken.close()
    path.rmdir()
    repaired = SQLiteStore(path)  # the next process on this machine
    repaired.flush()
    assert list(repaired.records()) == records
    assert repaired.dropped == broken.dropped == 0
    repaired.close()


def test_the_report_includes_what_the_spool_held(
    tmp_path: Path, make_record: MakeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.sqlite3"
    path.mkdir()
    broken = SQLiteStore(path)  # a process that ran while the file could not be written
    for _ in range(40):
        broken.add(make_record())
    broken.close()
    path.rmdir()
    url = f"sqlite:///{path}"
    capsys.readouterr()  # what the broken store logged
    assert main(["report", "--store", url, "--format", "json", "--since", "2d"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["calls"] == 40


def test_a_store_that_cannot_write_its_spool_counts_what_it_drops(
    tmp_path: Path, make_record: MakeRecord, immutable: Any
) -> None:
    (tmp_path / "ro").mkdir()
    immutable(tmp_path / "ro")
    store = SQLiteStore(
        tmp_path / "ro" / "r.sqlite3", spool=tmp_path / "ro" / "spool", batch_size=2
    )
    for _ in range(5):
        store.add(make_record())
    # Neither written nor spooled: they stay queued and are retried, and neither a flush
    # nor a close waits for that forever.
    ends = threading.Thread(target=lambda: (store.flush(), store.close()))
    ends.start()
    ends.join(timeout=20)
    assert not ends.is_alive()
    assert store.dropped == 5  # the process ends: now they are lost, and counted


def test_an_unknown_store_scheme_fails_before_any_paid_call(
    server: ScriptedServer, policies: Path
) -> None:
    server.script("gpt-4o-mini", GOOD)
    c = cascade.Cascade(policies, client=server.client(), store="mongo://db/x")
    with pytest.raises(ValueError, match="unknown store scheme 'mongo'"):
        c.run("t", MSGS)
    assert server.calls() == []


def test_a_store_whose_add_raises_never_fails_a_paid_call(
    server: ScriptedServer, policies: Path
) -> None:
    class Broken(MemoryStore):
        def add(self, record: CallRecord) -> None:
            raise RuntimeError("a bug in a user's store")

    server.script("gpt-4o-mini", GOOD)
    with cascade.Cascade(policies, client=server.client(), store=Broken()) as c:
        assert c.run("t", MSGS).ok


def test_sqlite_add_never_waits_for_a_locked_file(tmp_path: Path, make_record: MakeRecord) -> None:
    path = tmp_path / "r.sqlite3"
    SQLiteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the file for a long time
    store = SQLiteStore(path, queue_size=2, batch_size=1)
    records = [make_record() for _ in range(50)]
    adder = threading.Thread(target=lambda: [store.add(r) for r in records])
    adder.start()
    adder.join(timeout=10)  # the file's busy timeout is 30 s: a blocking add would still wait
    assert not adder.is_alive()
    holder.execute("ROLLBACK")
    holder.close()
    store.close()
    reader = SQLiteStore(path)
    reader.flush()
    assert sorted(r.id for r in reader.records()) == sorted(r.id for r in records)
    reader.close()


# -- one bad record never costs another ------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def written(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The backends that write on a background thread."""
    if request.param == "sqlite":
        s: Store = store_from_url(f"sqlite:///{tmp_path}/records.sqlite3")
    else:
        s = store_from_url(f"{request.getfixturevalue('redis_url')}?spool={tmp_path}/spool")
    yield s
    s.close()


def test_a_lone_surrogate_is_stored_and_costs_no_other_record(
    written: Store, make_record: MakeRecord
) -> None:
    records = [make_record() for _ in range(30)]
    odd = make_record(input="user: \ud800 half a pair\n")
    for r in [*records[:15], odd, *records[15:]]:
        written.add(r)
    written.flush()
    assert sorted(r.id for r in written.records()) == sorted(r.id for r in [*records, odd])
    (back,) = (r for r in written.records() if r.id == odd.id)
    assert back == odd  # escaped on the way in, the same string on the way out
    assert sum(d.calls for d in written.days()) == 31


def test_a_record_the_backend_refuses_is_the_only_one_lost(
    written: Store, make_record: MakeRecord
) -> None:
    records = [make_record() for _ in range(30)]
    poison = make_record(features={"chars": object()})  # nothing can encode it
    for r in [*records[:10], poison, *records[10:]]:
        written.add(r)
    written.flush()
    assert sorted(r.id for r in written.records()) == sorted(r.id for r in records)
    assert written.dropped == 1  # type: ignore[attr-defined]


# -- exit and SIGTERM ---------------------------------------------------------------------------


def _child(url: str, n: int, before: str = "") -> subprocess.Popen[str]:
    """A process that adds ``n`` records to ``url``, says so, and then waits for stdin."""
    code = textwrap.dedent(
        f"""
        import signal, sys, time
        {before}
        from cascade.stores import store_from_url
        from cascade.events import CallRecord
        store = store_from_url({url!r})
        now = time.time()
        for i in range({n}):
            store.add(CallRecord(
                id=f"c{{i}}", time=now + i, task="t", mode="cascade", models=("m",),
                model="m", escalated=False, ok=True, attempts=(), cost_usd=0.0,
                baseline_cost_usd=0.0, latency_s=0.1, prompt_tokens=1, completion_tokens=1,
                features={{}}, input=None, sampled=True,
            ))
        print("added", flush=True)
        sys.stdin.readline()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "added\n"
    return child


def _end(child: subprocess.Popen[str], how: str) -> int:
    """End the child by ``sigterm`` or by a normal ``exit``; its exit status."""
    if how == "sigterm":
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=30)
    else:
        child.communicate("\n", timeout=30)
    return child.returncode


def test_sigterm_loses_nothing_and_still_ends_the_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.sqlite3"
    child = _child(url, 300)
    # The records are still lingering in the queue when the signal comes.
    assert _end(child, "sigterm") == -signal.SIGTERM
    store = SQLiteStore(tmp_path / "r.sqlite3")
    assert sum(d.calls for d in store.days()) == 300
    store.close()


def test_sigterm_chains_to_the_applications_handler(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.sqlite3"
    before = "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))"
    child = _child(url, 100, before)
    assert _end(child, "sigterm") == 7  # the application's handler still decides
    store = SQLiteStore(tmp_path / "r.sqlite3")
    assert sum(d.calls for d in store.days()) == 100
    store.close()


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    code = (
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"from cascade.stores import SQLiteStore; SQLiteStore({str(tmp_path / 'r')!r})\n"
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "True\n"


@pytest.fixture
def paused_redis(redis_server: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    """A server of its own, to be paused with SIGSTOP (a Redis that hangs)."""
    server = RedisServer(redis_server.binary, free_port(), tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.kill()


@pytest.mark.parametrize("end", ["exit", "sigterm"])
def test_ending_while_redis_hangs_spools_every_record(
    paused_redis: RedisServer, tmp_path: Path, end: str
) -> None:
    url = f"{paused_redis.url}?spool={tmp_path}/spool"
    RedisStore(url).close()  # the server is known: the child's first send will hang
    assert paused_redis.process is not None
    paused_redis.process.send_signal(signal.SIGSTOP)
    child = _child(url, 500)
    # A send is stuck in a read that times out after 5 s, twice.
    assert _end(child, end) == (0 if end == "exit" else -signal.SIGTERM)
    paused_redis.process.send_signal(signal.SIGCONT)
    store = RedisStore(url)  # the next process replays what the child spooled
    store.flush()
    assert sum(d.calls for d in store.days()) == 500
    assert len(list(store.records())) == 500
    store.close()
