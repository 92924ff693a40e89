"""The proxy under abuse: unknown task names, huge headers, hostile prompts, lone surrogates."""

# The proxy fixtures are test_proxy's, imported: ruff reads their use as arguments as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING

import aiohttp
import pytest
from test_proxy import GOOD, KEY, MSGS, policies, start, upstream, write_policy  # noqa: F401

import cascade
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.http import H11HeadLimit
from cascade.proxy.server import proxy_cascade
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from pathlib import Path

AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
BODY = json.dumps({"model": "x", "messages": MSGS}).encode()


def _samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_unknown_task_names_share_one_metrics_label(start, upstream) -> None:
    proxy = start(ProxyConfig(proxy_keys=(KEY,), discover=False))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.server.port, timeout=30)
    try:
        for i in range(2000):
            conn.request(
                "POST", "/v1/chat/completions", BODY, {**AUTH, "X-Cascade-Task": f"nope-{i}"}
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 400
    finally:
        conn.close()
    status, _, out = proxy.http("GET", "/metrics")
    text = out.decode()
    assert status == 200 and "nope-" not in text
    assert _samples(text)['cascade_errors_total{task="_unknown",status="400"}'] == "2000"
    assert len(text) < 4000  # the size of an idle /metrics, not 2,000 series
    assert upstream.requests == []


def test_unknown_task_errors_name_only_what_the_client_sent(
    start, policies: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cascade")
    proxy = start()
    name = "nope-" + "x" * 500
    status, _, out = proxy.http(
        "POST", "/v1/chat/completions", BODY, {**AUTH, "X-Cascade-Task": name}
    )
    error = json.loads(out)["error"]
    assert (status, error["code"]) == (400, "unknown_task")
    assert error["message"] == f"no policy for task {name[:100] + '…'!r}"
    assert str(policies) not in out.decode() and "invoice" not in out.decode()
    (logged,) = [
        r.getMessage() for r in caplog.records if "cascade.proxy.unknown_task" in r.getMessage()
    ]
    assert str(policies) in logged and "invoice" in logged  # the operator still sees it all


def _send_huge_head(port: int, size: int) -> tuple[int, bytes]:
    """Send a request whose one header is ``size`` bytes; return what was sent, and the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                answer += part
        except ConnectionResetError:
            pass
        return sent, answer
    finally:
        sock.close()


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_a_64_mib_header_is_refused_with_431_before_it_is_read(
    upstream, policies: Path, parser: str
) -> None:
    config = ProxyConfig(proxy_keys=(KEY,))
    c, up = proxy_cascade(policies, "memory://", config, base_url=upstream.base_url, api_key="k")
    options = {} if parser == "httptools" else {"http": H11HeadLimit}  # default: httptools
    with ProxyServer(create_app(c, config, up), **options) as server:
        sent, answer = _send_huge_head(server.port, 64 * 1024 * 1024)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b'"code": "request_header_fields_too_large"' in answer
        # Refused and closed at 64 KiB: the sender was cut off long before 64 MiB (what
        # it got out is what the kernel's socket buffers held).
        assert sent < 32 * 1024 * 1024
        # A head under the limit is served as before.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/healthz", headers={"X-Big": "a" * 60_000})
        assert conn.getresponse().status == 200
        conn.close()


def test_healthz_answers_while_hostile_prompts_are_redacted(start, upstream) -> None:
    """Redaction of 30,000 ``(`` took 5.6 s on the event loop; eight of them at once held
    /healthz for most of a minute."""
    upstream.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)  # escalated: stored whole
    proxy = start()
    hostile = json.dumps(
        {"model": "x", "messages": [{"role": "user", "content": "(" * 30_000 + " +15551234567"}]}
    ).encode()
    answers: list[int] = []

    def send() -> None:
        answers.append(
            proxy.http(
                "POST", "/v1/chat/completions", hostile, {**AUTH, "X-Cascade-Task": "invoice"}
            )[0]
        )

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    health = [proxy.http("GET", "/healthz")[0] for _ in range(20)]  # 10 s timeout each
    for t in threads:
        t.join()
    assert health == [200] * 20 and answers == [200] * 8
    proxy.cascade.store.flush()
    records = list(proxy.cascade.store.records())
    assert len(records) == 8
    assert all("[PHONE]" in r.input and "+1555" not in r.input for r in records)


def test_a_lone_surrogate_from_one_client_costs_no_other_clients_record(
    tmp_path: Path, policies: Path
) -> None:
    """Through the proxy into SQLite: 200 concurrent clients, one of them sending ``\\ud800``."""
    store = f"sqlite:///{tmp_path / 'calls.db'}"
    config = ProxyConfig(proxy_keys=(KEY,))
    n = 200
    with ScriptedServer() as upstream_:
        upstream_.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
        c, up = proxy_cascade(
            policies, store, config, base_url=upstream_.base_url, api_key="sk-up", max_retries=0
        )
        with ProxyServer(create_app(c, config, up)) as server:

            async def one(session: aiohttp.ClientSession, i: int) -> int:
                content = f"client {i} " + ("LONE" if i == 57 else "")
                message = {"role": "user", "content": content}
                raw = json.dumps({"model": "x", "messages": [message]}).replace("LONE", "\\ud800")
                async with session.post(
                    f"{server.base_url}/chat/completions",
                    data=raw.encode(),
                    headers={**AUTH, "X-Cascade-Task": "invoice"},
                ) as response:
                    await response.read()
                    return response.status

            async def all_clients() -> list[int]:
                async with aiohttp.ClientSession() as session:
                    return await asyncio.gather(*(one(session, i) for i in range(n)))

            assert asyncio.run(all_clients()) == [200] * n
    with cascade.Cascade(policies, store=store) as reader:
        inputs = sorted(r.input or "" for r in reader.store.records())
    assert len(inputs) == n
    assert any("\ud800" in i for i in inputs)
    assert {i.split()[2] for i in inputs} == {str(i) for i in range(n)}
