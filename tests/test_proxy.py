"""``cascade serve``: the real openai SDK and curl against a running proxy whose upstream is a
``ScriptedServer``."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import openai
import pytest
import yaml

import cascade
from cascade.proxy import ProxyConfig, ProxyServer, Route, create_app
from cascade.proxy.server import proxy_cascade, upstream_choice
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

KEY = "proxy-key-1"
UPSTREAM_KEY = "sk-upstream-secret-0123456789"
MSGS = [{"role": "user", "content": "Invoice INV-1, total 10"}]
GOOD = json.dumps({"invoice_number": "INV-1", "total": 10})
VALIDATORS = [{"type": "json_schema", "schema": {"type": "object", "required": ["total"]}}]


@dataclass
class Running:
    server: ProxyServer
    cascade: cascade.Cascade
    clients: list[openai.OpenAI] = field(default_factory=list)

    def client(self, key: str = KEY) -> openai.OpenAI:
        """A client of the proxy, closed after the test."""
        c = openai.OpenAI(base_url=self.server.base_url, api_key=key, max_retries=0)
        self.clients.append(c)
        return c

    def async_client(self, key: str = KEY) -> openai.AsyncOpenAI:
        """An async client of the proxy: use it as ``async with``."""
        return openai.AsyncOpenAI(base_url=self.server.base_url, api_key=key, max_retries=0)

    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """A plain HTTP request: status, headers (lower-case), body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    write_policy(d, "invoice")
    return d


def write_policy(directory: Path, task: str, **fields: Any) -> None:
    fields.setdefault("models", ["gpt-4o-mini", "gpt-4o"])
    fields.setdefault("validators", VALIDATORS)
    (directory / f"{task}.yaml").write_text(yaml.safe_dump(fields))


@pytest.fixture
def start(upstream: ScriptedServer, policies: Path) -> Iterator[Callable[..., Running]]:
    """Start a proxy (a fresh Cascade, memory store) in a thread; stopped after the test."""
    running: list[Running] = []

    def factory(config: ProxyConfig | None = None, store: str = "memory://") -> Running:
        config = config or ProxyConfig(proxy_keys=(KEY,))
        c, up = proxy_cascade(  # as `cascade serve` makes them
            policies,
            store,
            config,
            base_url=upstream.base_url,
            api_key=UPSTREAM_KEY,
            max_retries=0,
            timeout=5,
        )
        server = ProxyServer(create_app(c, config, up))
        running.append(Running(server.start(), c))
        return running[-1]

    yield factory
    for r in running:
        for client in r.clients:
            client.close()
        r.server.stop()


def error_of(e: openai.APIStatusError) -> dict[str, Any]:
    body = e.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


# -- the cascade through the proxy -------------------------------------------------------------


def test_sync_sdk_gets_the_accepted_completion_with_cascade_headers(start, upstream) -> None:
    upstream.script("gpt-4o-mini", Reply(content=GOOD, prompt_tokens=100, completion_tokens=10))
    proxy = start()
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == GOOD
    assert raw.headers["x-cascade-task"] == "invoice"
    assert raw.headers["x-cascade-model"] == "gpt-4o-mini"
    assert raw.headers["x-cascade-escalated"] == "false"
    assert raw.headers["x-cascade-reasons"] == ""
    assert float(raw.headers["x-cascade-cost-usd"]) == pytest.approx((100 * 0.15 + 10 * 0.6) / 1e6)
    (sent,) = upstream.requests
    # The policy chose the model; the proxy's key went upstream, never the client's.
    assert sent["model"] == "gpt-4o-mini"
    assert sent["_headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-cascade-task" not in {k.lower() for k in sent["_headers"]}


def test_upstream_calls_are_direct_when_aiohttp_is_installed_unless_configured() -> None:
    assert upstream_choice(None) == "direct"
    assert [upstream_choice(c) for c in ("direct", "aiohttp", "httpx")] == [
        "direct",
        "aiohttp",
        "httpx",
    ]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_sdk_transports_serve_answers_and_streams(start, upstream, transport) -> None:
    upstream.script("gpt-4o-mini", "no json").script("gpt-4o", GOOD)
    config = ProxyConfig(proxy_keys=(KEY,), default_task="invoice", upstream_http=transport)
    proxy = start(config)
    raw = proxy.client().chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)
    assert raw.parse().choices[0].message.content == GOOD
    assert raw.headers["x-cascade-escalated"] == "true"
    async with proxy.async_client() as client:
        stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == GOOD


def test_escalation_is_reported_in_headers_and_recorded(start, upstream) -> None:
    upstream.script("gpt-4o-mini", "the total is ten").script("gpt-4o", GOOD)
    proxy = start()
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
    )
    assert raw.parse().choices[0].message.content == GOOD
    assert raw.headers["x-cascade-model"] == "gpt-4o"
    assert raw.headers["x-cascade-escalated"] == "true"
    assert raw.headers["x-cascade-reasons"].startswith("json_schema: ")
    proxy.server.stop()  # the lifespan flushes and closes the store
    (record,) = proxy.cascade.store.records(task="invoice")
    assert record.escalated
    assert [a.model for a in record.attempts] == ["gpt-4o-mini", "gpt-4o"]


def test_reasons_header_is_one_ascii_line_cut_to_the_configured_length(start, upstream) -> None:
    upstream.script("gpt-4o-mini", "le total est dix \u20ac\nvraiment").script("gpt-4o", GOOD)
    proxy = start(ProxyConfig(proxy_keys=(KEY,), reasons_header_chars=24))
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
    )
    reasons = raw.headers["x-cascade-reasons"]
    assert len(reasons) == 24
    assert reasons.startswith("json_schema: ")
    assert reasons.endswith("...")
    assert reasons.isascii()


async def test_async_sdk_streaming_replays_the_validated_answer(start, upstream) -> None:
    upstream.script("gpt-4o-mini", Reply(content=GOOD, prompt_tokens=7, completion_tokens=3))
    proxy = start()
    async with proxy.async_client() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=MSGS,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Cascade-Task": "invoice"},
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == GOOD
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 7
    assert "stream" not in upstream.requests[0]  # the rung was asked for a whole answer


def test_sync_sdk_streaming_without_usage(start, upstream) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    proxy = start(ProxyConfig(proxy_keys=(KEY,), default_task="invoice"))
    chunks = list(proxy.client().chat.completions.create(model="m", messages=MSGS, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == GOOD
    assert all(c.usage is None for c in chunks)


def test_curl_request(start, upstream) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    upstream.script("gpt-4o-mini", GOOD)
    proxy = start()
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-i",
            f"{proxy.server.base_url}/chat/completions",
            "-H",
            f"Authorization: Bearer {KEY}",
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-Cascade-Task: invoice",
            "-d",
            json.dumps({"model": "gpt-4o", "messages": MSGS}),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    head, _, body = out.partition("\n\n")  # text mode turned curl's CRLFs into LFs
    assert head.startswith("HTTP/1.1 200")
    assert "x-cascade-model: gpt-4o-mini" in head.lower()
    assert json.loads(body)["choices"][0]["message"]["content"] == GOOD


# -- routing -----------------------------------------------------------------------------------


def test_routes_by_model_and_metadata(start, upstream, policies) -> None:
    write_policy(policies, "summary")
    upstream.script("gpt-4o-mini", GOOD)
    routes = (
        Route(model="gpt-4o", task="summary"),
        Route(metadata={"feature": "invoices"}, task="invoice"),
    )
    proxy = start(ProxyConfig(proxy_keys=(KEY,), routes=routes))
    client = proxy.client()
    by_model = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)
    by_meta = client.chat.completions.with_raw_response.create(
        model="other", messages=MSGS, metadata={"feature": "invoices"}
    )
    assert by_model.headers["x-cascade-task"] == "summary"
    assert by_meta.headers["x-cascade-task"] == "invoice"
    assert by_meta.parse().choices[0].message.content == GOOD


def test_with_discovery_off_a_request_without_task_is_forwarded_unchanged(start, upstream) -> None:
    upstream.script("gpt-4o", "plain answer")
    proxy = start(ProxyConfig(proxy_keys=(KEY,), discover=False))
    body = b'{"model": "gpt-4o",   "messages": [{"role": "user", "content": "hi"}], "seed": 7}'
    status, headers, out = proxy.http(
        "POST",
        "/v1/chat/completions",
        body,
        {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert status == 200
    assert "x-cascade-task" not in headers
    assert json.loads(out)["choices"][0]["message"]["content"] == "plain answer"
    (sent,) = upstream.requests
    assert sent["model"] == "gpt-4o"
    assert sent["seed"] == 7
    assert sent["_headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_other_endpoints_pass_through(start, upstream) -> None:
    proxy = start()
    status, _, body = proxy.http("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert upstream.requests[-1]["_path"].endswith("/models")
    assert upstream.requests[-1]["_headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert status == 200
    assert "data" in json.loads(body)


def test_upstream_errors_pass_through_unchanged(start, upstream) -> None:
    upstream.fail("gpt-4o", 429)
    proxy = start(ProxyConfig(proxy_keys=(KEY,), discover=False))
    with pytest.raises(openai.RateLimitError):
        proxy.client().chat.completions.create(model="gpt-4o", messages=MSGS)


# -- errors ------------------------------------------------------------------------------------


def test_every_rung_erroring_relays_the_last_ones_error(start, upstream) -> None:
    # No model answered: the last rung's upstream error is the answer, as a pass-through
    # request would get it (a 502 is for a ladder with no status to relay: timeouts).
    upstream.fail("gpt-4o-mini", 503).fail("gpt-4o", 500, message="the strong one is down")
    proxy = start()
    with pytest.raises(openai.APIStatusError) as e:
        proxy.client().chat.completions.create(
            model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
        )
    assert e.value.status_code == 500
    assert error_of(e.value)["message"] == "the strong one is down"
    reasons = e.value.response.headers["x-cascade-reasons"]
    assert "server_error 503" in reasons
    assert "server_error 500" in reasons


def test_an_upstream_401_is_a_502_that_does_not_echo_the_upstream_key(start, upstream) -> None:
    upstream.script("gpt-4o-mini", Reply(status=401, error_message=f"bad key {UPSTREAM_KEY}"))
    proxy = start()
    with pytest.raises(openai.APIStatusError) as e:
        proxy.client().chat.completions.create(
            model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
        )
    assert e.value.status_code == 502
    assert error_of(e.value)["code"] == "upstream_auth_failed"
    assert UPSTREAM_KEY not in e.value.response.text


def test_an_upstream_400_keeps_its_status_and_message(start, upstream) -> None:
    upstream.script("gpt-4o-mini", Reply(status=400, error_message="max_tokens is too large"))
    proxy = start()
    with pytest.raises(openai.BadRequestError) as e:
        proxy.client().chat.completions.create(
            model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
        )
    assert "max_tokens is too large" in error_of(e.value)["message"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", {"X-Cascade-Task": "invoice"}, 400, "invalid_json"),
        (b"[1, 2]", {"X-Cascade-Task": "invoice"}, 400, "invalid_json"),
        (b'{"messages": []}', {"X-Cascade-Task": "invoice"}, 400, "invalid_request"),
        (json.dumps({"messages": MSGS}).encode(), {"X-Cascade-Task": "nope"}, 400, "unknown_task"),
    ],
)
def test_bad_requests_are_400_with_openai_error_json(
    start, upstream, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    proxy = start()
    got, _, out = proxy.http(
        "POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {KEY}", **headers}
    )
    error = json.loads(out)["error"]
    assert (got, error["code"], error["type"]) == (status, code, "invalid_request_error")
    assert upstream.requests == []


def test_a_broken_policy_is_a_500_naming_the_file(start, upstream, policies) -> None:
    (policies / "broken.yaml").write_text("models: [only-one]\n")
    proxy = start()
    status, _, out = proxy.http(
        "POST",
        "/v1/chat/completions",
        json.dumps({"messages": MSGS}).encode(),
        {"Authorization": f"Bearer {KEY}", "X-Cascade-Task": "broken"},
    )
    error = json.loads(out)["error"]
    assert status == 500
    assert error["code"] == "policy_error"
    assert "broken.yaml" in error["message"]


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_proxy_key_is_401(start, upstream, key: str | None) -> None:
    proxy = start()
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models")]:
        status, _, out = proxy.http(method, path, b"{}", headers)
        error = json.loads(out)["error"]
        assert status == 401
        assert error == {**error, "type": "invalid_request_error", "code": "invalid_api_key"}
        assert error["param"] is None
    assert upstream.requests == []


def test_the_sdk_sees_a_wrong_key_as_an_authentication_error(start) -> None:
    with pytest.raises(openai.AuthenticationError):
        start().client("wrong").chat.completions.create(model="m", messages=MSGS)


def test_an_open_proxy_on_loopback_needs_no_key(start, upstream) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    proxy = start(ProxyConfig(default_task="invoice"))
    assert proxy.client("anything").chat.completions.create(model="m", messages=MSGS).choices


def test_a_body_over_the_limit_is_413(start, upstream) -> None:
    proxy = start(ProxyConfig(proxy_keys=(KEY,), max_body_bytes=1000))
    with pytest.raises(openai.APIStatusError) as e:
        proxy.client().chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x" * 2000}],
            extra_headers={"X-Cascade-Task": "invoice"},
        )
    assert e.value.status_code == 413
    assert error_of(e.value)["code"] == "request_too_large"
    assert upstream.requests == []


async def test_the_body_limit_is_enforced_while_reading(start) -> None:
    """A chunked body with no length: the 413 comes before the body ends (it never does)."""
    proxy = start(ProxyConfig(proxy_keys=(KEY,), max_body_bytes=1000))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
        + f"authorization: Bearer {KEY}\r\n\r\n".encode()
        + b"800\r\n"
        + b"x" * 0x800
        + b"\r\n"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 413")


def test_unknown_paths_are_404_with_openai_error_json(start) -> None:
    status, _, out = start().http("GET", "/nowhere")
    assert status == 404
    assert json.loads(out)["error"]["code"] == "unknown_url"


# -- health and metrics ------------------------------------------------------------------------


def test_healthz(start) -> None:
    status, _, out = start().http("GET", "/healthz")
    assert (status, json.loads(out)) == (200, {"status": "ok"})


def test_metrics_count_calls_escalations_costs_and_pass_through(start, upstream) -> None:
    upstream.script(
        "gpt-4o-mini", Reply(content=GOOD, prompt_tokens=1000, completion_tokens=0), times=3
    )
    proxy = start(ProxyConfig(proxy_keys=(KEY,), discover=False))
    client = proxy.client()
    for _ in range(3):
        client.chat.completions.create(
            model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
        )
    upstream.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    client.chat.completions.create(
        model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
    )
    client.chat.completions.create(model="gpt-4o", messages=MSGS)  # no task: pass-through
    status, headers, out = proxy.http("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = dict(
        line.rsplit(" ", 1) for line in out.decode().splitlines() if not line.startswith("#")
    )
    assert samples['cascade_calls_total{task="invoice"}'] == "4"
    assert samples['cascade_escalations_total{task="invoice"}'] == "1"
    assert float(samples['cascade_cost_usd_total{task="invoice"}']) > 3 * 1000 * 0.15 / 1e6
    assert float(samples['cascade_baseline_cost_usd_total{task="invoice"}']) > 0
    assert samples['cascade_latency_seconds_bucket{task="invoice",le="+Inf"}'] == "4"
    assert samples['cascade_latency_seconds_count{task="invoice"}'] == "4"
    assert samples["cascade_passthrough_total"] == "1"


# -- observation mode and the store -----------------------------------------------------------


def test_observation_mode_through_the_proxy(start, upstream, policies) -> None:
    write_policy(policies, "watched", mode="observe")
    upstream.script("gpt-4o", GOOD).script("gpt-4o-mini", "the total is ten")
    proxy = start()
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="x", messages=MSGS, extra_headers={"X-Cascade-Task": "watched"}
    )
    assert raw.headers["x-cascade-model"] == "gpt-4o"
    assert raw.parse().choices[0].message.content == GOOD
    proxy.server.stop()  # drains the observation, then closes the store
    (record,) = proxy.cascade.store.records(task="watched")
    assert record.mode == "observe"
    assert record.observation.to_dict()["decision"] == "escalate"


def test_shutdown_flushes_a_file_store(start, upstream, tmp_path) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    proxy = start(ProxyConfig(proxy_keys=(KEY,), default_task="invoice"), store=url)
    proxy.client().chat.completions.create(model="m", messages=MSGS)
    proxy.server.stop()
    from cascade.stores import store_from_url

    store = store_from_url(url)
    try:
        assert [d.calls for d in store.days(task="invoice")] == [1]
    finally:
        store.close()


# -- `cascade serve` as a process --------------------------------------------------------------


@pytest.mark.parametrize(("workers", "verbose"), [(1, False), (2, False), (2, True)])
def test_cascade_serve_logs_each_request_only_when_verbose(
    upstream, policies, tmp_path, workers: int, verbose: bool
) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "cascade.cli", *(["-v"] if verbose else []), "serve"]
    command += ["--port", str(port), "--policies", str(policies), "--store", "memory://"]
    command += ["--workers", str(workers)]
    env = {
        **os.environ,
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "CASCADE_PROXY_KEYS": KEY,
    }
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < workers:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY) as client:
            for _ in range(3):
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=MSGS, extra_headers={"X-Cascade-Task": "invoice"}
                )
                assert raw.parse().choices[0].message.content == GOOD
                assert raw.headers["x-cascade-model"] == "gpt-4o-mini"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    text = log.read_text()
    # uvicorn's access log, and the cascade's event for each call (workers do not inherit
    # the command's logging configuration: it is passed on to them).
    assert ("POST /v1/chat/completions" in text) is verbose, text
    assert ("cascade.call" in text) is verbose, text
    assert len(upstream.calls()) == 3
