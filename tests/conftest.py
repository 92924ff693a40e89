"""Shared fixtures: a real redis-server for the session, a clean database per test, and a
scripted OpenAI-compatible server per test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import redis
import structlog

from cascade._logging import reset_logging
from cascade.events import Attempt, CallRecord, Verdict
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture(autouse=True)
def _cascade_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep default stores and spools of every test out of the real home directory."""
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path_factory.mktemp("cascade-home")))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted OpenAI-compatible server on a free port, stopped after the test."""
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def make_record() -> Callable[..., CallRecord]:
    """A factory of plausible records (escalated and sampled unless told otherwise), one
    second apart from today's UTC midnight; keyword arguments override any field."""
    counter = iter(range(1_000_000))
    midnight = time.time() // 86_400 * 86_400  # recent times: stores look back a bounded span

    def make(**fields: Any) -> CallRecord:
        n = next(counter)
        escalated = fields.pop("escalated", True)
        cheap = Attempt(
            model="gpt-4o-mini",
            purpose="answer",
            output=f"cheap answer {n}",
            verdicts=(Verdict("schema", not escalated, "" if not escalated else "invalid json"),),
            prompt_tokens=100,
            completion_tokens=20,
            cached_tokens=0,
            cost_usd=0.00003,
            latency_s=0.4,
        )
        strong = Attempt(
            model="gpt-4o",
            purpose="answer",
            output=f"strong answer {n}",
            verdicts=(Verdict("schema", True, score=1.0),),
            prompt_tokens=100,
            completion_tokens=25,
            cached_tokens=0,
            cost_usd=0.0005,
            latency_s=0.9,
        )
        attempts = (cheap, strong) if escalated else (cheap,)
        values: dict[str, Any] = {
            "id": f"rec{n:07d}",
            "time": midnight + n,
            "task": "extract",
            "mode": "cascade",
            "models": tuple(a.model for a in attempts),
            "model": attempts[-1].model,
            "escalated": escalated,
            "ok": True,
            "attempts": attempts,
            "cost_usd": sum(a.cost_usd or 0 for a in attempts),
            "baseline_cost_usd": 0.0005,
            "latency_s": 1.3 if escalated else 0.4,
            "prompt_tokens": sum(a.prompt_tokens for a in attempts),
            "completion_tokens": sum(a.completion_tokens for a in attempts),
            "features": {"chars": 42, "language": "en"},
            "input": "user: hi\n",
            "sampled": True,
        }
        values.update(fields)
        return CallRecord(**values)

    return make


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process on its own port; ``kill`` and ``start`` simulate an outage."""

    binary: str
    port: int
    directory: Path
    args: tuple[str, ...] = ()  # more redis-server options; later ones win
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server on the same port and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--databases",
                "64",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; its data is gone (no persistence)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free port for the whole session (skips without the binary)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CASCADE_REQUIRE_REDIS"):  # CI: a missing server is a failure
            pytest.fail("redis-server is not installed and CASCADE_REQUIRE_REDIS is set")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


_next_db = iter(range(1, 64))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A URL to an empty database of the session's server (FLUSHDB before and after)."""
    if redis_server.process is None:  # a previous test killed it and failed before restarting
        redis_server.start()
    db = next(_next_db, 63)
    client = redis.Redis(port=redis_server.port, db=db)
    client.flushdb()
    yield f"redis://127.0.0.1:{redis_server.port}/{db}"
    try:
        client.flushdb()
    except redis.ConnectionError:
        pass
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """The command line configures logging (it is an application); undo it per test."""
    yield
    structlog.reset_defaults()
    reset_logging()


# -- what a chat request put on the wire (tests of the SDK fast path and the proxy upstream) --

# create()'s request options, as a caller passes them.
REQUEST_OPTIONS: dict[str, Any] = {
    "extra_headers": {"x-trace": "t-1"},
    "extra_query": {"api-version": "2"},
    "extra_body": {"custom_field": 1},
    "timeout": 5.0,
}


def assert_request_options_applied(request: dict[str, Any]) -> None:
    """``request`` (as a ScriptedServer records it) carries REQUEST_OPTIONS as create() sends
    them: a header, a query parameter, a body field, and none of them as body fields."""
    assert request["_headers"]["x-trace"] == "t-1"
    assert request["_path"].endswith("/chat/completions?api-version=2")
    assert request["custom_field"] == 1
    assert not REQUEST_OPTIONS.keys() & request.keys()


def wire(request: dict[str, Any]) -> tuple[dict[str, Any], str, str | None]:
    """What a recorded request put on the wire: its JSON body, path and bearer token."""
    body = {k: v for k, v in request.items() if not k.startswith("_")}
    return body, request["_path"], request["_headers"].get("authorization")
