"""``cascade serve``'s direct upstream calls (``DirectTransport``) against a ``ScriptedServer``: the
same requests, retries, failures and answers as through the openai SDK."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import openai
import pytest
import yaml
from conftest import REQUEST_OPTIONS, assert_request_options_applied, wire

from cascade.proxy import ProxyConfig
from cascade.proxy.server import proxy_cascade
from cascade.testing import Reply, ScriptedServer
from cascade.transports.direct import DirectTransport, _backoff, _retry_after, _should_retry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    import cascade

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10"}]
GOOD = json.dumps({"invoice_number": "INV-1", "total": 10})
SCHEMA = {"type": "object", "required": ["total"]}


@pytest.fixture
def server() -> AsyncIterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


@pytest.fixture
async def make(tmp_path: Path, server: ScriptedServer) -> AsyncIterator[Callable[..., Any]]:
    """A proxy's Cascade over task 't' whose upstream is ``server``, calling it directly."""
    made: list[tuple[cascade.Cascade, openai.AsyncOpenAI]] = []

    def factory(base_url: str | None = None, **client: Any) -> cascade.Cascade:
        policy = {
            "models": ["gpt-4o-mini", "gpt-4o"],
            "validators": [{"type": "json_schema", "schema": SCHEMA}],
        }
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
        client.setdefault("max_retries", 0)
        c, up = proxy_cascade(
            tmp_path,
            "memory://",
            ProxyConfig(),
            base_url=base_url or server.base_url,
            api_key="sk-upstream",
            **client,
        )
        assert isinstance(c.transport, DirectTransport)  # the public seam
        made.append((c, up))
        return c

    yield factory
    for c, up in made:  # as the proxy's shutdown closes them
        await up.close()
        await c.aclose()


async def test_sends_what_the_sdks_create_sends(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    params = {"temperature": 0.2, "user": "u-1", "logprobs": True, "metadata": {"k": "v"}}
    r = await make().arun("t", MSGS, **params)
    assert (r.model, r.output, r.escalated) == ("gpt-4o-mini", GOOD, False)
    # The proxy's upstream waits 60 s per request (CASCADE_TIMEOUT), not the SDK's 600.
    async with server.async_client(api_key="sk-upstream", timeout=60.0) as sdk:
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS, **params)
    direct, via_sdk = server.calls()
    assert wire(direct) == wire(via_sdk)
    transport = {"host", "connection", "accept-encoding", "content-length"}
    assert {k: v for k, v in direct["_headers"].items() if k not in transport} == {
        k: v for k, v in via_sdk["_headers"].items() if k not in transport
    }


async def test_request_options_apply_as_create_applies_them(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    r = await make().arun("t", MSGS, **REQUEST_OPTIONS)
    assert r.ok
    (request,) = server.calls()
    assert_request_options_applied(request)


async def test_query_parameters_are_encoded_as_the_sdk_encodes_them(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    query = {"api-version": "2024-10-01", "q": "a b&c=d/é"}
    await make().arun("t", MSGS, extra_query=query)
    async with server.async_client(api_key="sk-upstream") as sdk:
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_query=query)
    direct, via_sdk = server.calls()
    assert urllib.parse.parse_qs(direct["_path"].partition("?")[2]) == {
        k: [v] for k, v in query.items()
    }
    assert urllib.parse.parse_qs(direct["_path"].partition("?")[2]) == urllib.parse.parse_qs(
        via_sdk["_path"].partition("?")[2]
    )


async def test_arguments_that_are_not_plain_json_go_through_the_sdk(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    r = await make().arun("t", MSGS, temperature=openai.omit, stop=("END",))
    assert r.ok
    (request,) = server.calls()
    assert "temperature" not in request and request["stop"] == ["END"]


async def test_retries_a_failed_call_as_the_sdk_does(make, server) -> None:
    server.fail("gpt-4o-mini", 500, times=1).script("gpt-4o-mini", GOOD)
    r = await make(max_retries=1).arun("t", MSGS)
    assert (r.model, r.escalated) == ("gpt-4o-mini", False)
    calls = server.calls()
    assert [c["model"] for c in calls] == ["gpt-4o-mini"] * 2
    assert [c["_headers"]["x-stainless-retry-count"] for c in calls] == ["0", "1"]


@pytest.mark.parametrize(
    ("status", "kind"), [(500, "server_error"), (429, "rate_limited"), (409, "client_error")]
)
async def test_error_statuses_escalate_with_the_sdks_reason(make, server, status, kind) -> None:
    server.fail("gpt-4o-mini", status, message="upstream says no").script("gpt-4o", GOOD)
    r = await make().arun("t", MSGS)
    assert r.model == "gpt-4o" and r.ok
    assert r.attempts[0].error == f"{kind} {status}: Error code: {status} - upstream says no"


async def test_a_refused_request_keeps_the_upstreams_status_and_error(make, server) -> None:
    server.script("gpt-4o-mini", Reply(status=400, error_message="max_tokens is too large"))
    with pytest.raises(Exception) as e:  # noqa: PT011  # ProviderError, checked below
        await make().arun("t", MSGS)
    assert type(e.value).__name__ == "ProviderError"
    cause = e.value.__cause__
    assert cause is not None and cause.status == 400  # type: ignore[attr-defined]
    assert cause.body["message"] == "max_tokens is too large"  # type: ignore[attr-defined]


async def test_a_timeout_and_a_refused_connection(make, server, tmp_path) -> None:
    server.script("gpt-4o-mini", Reply(content=GOOD, delay_s=1.0)).script("gpt-4o", GOOD)
    r = await make(timeout=0.3).arun("t", MSGS)
    assert r.model == "gpt-4o" and r.attempts[0].error.startswith("timeout")
    refused = make(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(Exception, match="connection_error"):  # EscalationExhausted
        await refused.arun("t", MSGS)


@pytest.mark.parametrize(
    ("body", "reason"),
    [("<html>bad gateway</html>", "the response is not JSON"), ("[1]", "not a ChatCompletion")],
)
async def test_a_body_that_is_no_completion_is_malformed(make, server, body, reason) -> None:
    server.script("gpt-4o-mini", Reply(status=200, body=body)).script("gpt-4o", GOOD)
    r = await make().arun("t", MSGS)
    assert r.model == "gpt-4o"
    assert r.attempts[0].error.startswith("malformed_response") and reason in r.attempts[0].error


def test_retry_rules_follow_the_sdk() -> None:
    assert _should_retry(500, {}) and _should_retry(429, {}) and _should_retry(408, {})
    assert not _should_retry(400, {}) and not _should_retry(404, {})
    assert _should_retry(400, {"x-should-retry": "true"})
    assert not _should_retry(503, {"x-should-retry": "false"})
    assert not _should_retry(429, {"retry-after": "120"})  # longer than a minute: give up
    assert _retry_after({"retry-after-ms": "1500"}) == 1.5
    assert _retry_after({"retry-after": "2"}) == 2.0
    date = _retry_after({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert date is not None and 28 < date <= 30
    assert _backoff(0, {"retry-after": "3"}) == 3.0
    assert 0.375 <= _backoff(0, None) <= 0.5 and 6.0 <= _backoff(5, None) <= 8.0


class RawUpstream:
    """A bare HTTP/1.1 server answering every request with one ChatCompletion and an
    ``x-request-id``; keeps each request's head as sent (header case and repeats included)."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            self.heads.append(head)
            body = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": GOOD},
                            "finish_reason": "stop",
                        }
                    ],
                }
            ).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
            writer.write(b"x-request-id: req-42\r\n")
            writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    def header_lines(self, name: bytes) -> list[bytes]:
        """The values of header ``name`` in the last request, as many times as sent."""
        lines = self.heads[-1].split(b"\r\n")[1:]
        return [
            line.partition(b":")[2].strip()
            for line in lines
            if line.partition(b":")[0].lower() == name
        ]


async def test_an_http_proxy_from_the_environment_is_used_as_the_sdk_would(
    make, monkeypatch, tmp_path
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"  # a credentials file must not change what is sent
    netrc.write_text("default login someone password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    async with RawUpstream() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        r = await make(base_url="http://upstream.invalid/v1").arun("t", MSGS)
    assert r.ok and r.model == "gpt-4o-mini"
    assert proxy.heads[0].split(b"\r\n")[0] == (
        b"POST http://upstream.invalid/v1/chat/completions HTTP/1.1"
    )
    assert proxy.header_lines(b"authorization") == [b"Bearer sk-upstream"]


async def test_request_id_and_replaced_headers_as_the_sdk_has_them(make) -> None:
    async with RawUpstream() as upstream:
        c = make(base_url=upstream.url + "/v1")
        r = await c.arun("t", MSGS, extra_headers={"AUTHORIZATION": "Bearer other", "x-a": None})
        assert r.completion._request_id == "req-42"
        assert upstream.header_lines(b"authorization") == [b"Bearer other"]  # replaced, once
        async with openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="k") as sdk:
            via_sdk = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        assert via_sdk._request_id == r.completion._request_id


async def test_what_the_direct_path_does_not_reproduce_goes_through_the_sdk(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    query = {"flag": True, "tags": ["a", "b"]}  # the SDK's own encoding of these
    await make().arun("t", MSGS, extra_query=query)
    await make(default_query={"api-version": "1"}).arun("t", MSGS)
    async with server.async_client(api_key="sk-upstream") as sdk:
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_query=query)
    direct, with_default_query, via_sdk = server.calls()
    assert direct["_path"] == via_sdk["_path"]
    assert with_default_query["_path"].endswith("?api-version=1")


async def test_a_wrapped_create_sees_the_proxys_calls_too(make, server, monkeypatch) -> None:
    seen: list[str] = []
    original = openai.resources.chat.completions.AsyncCompletions.create

    async def traced(self: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["model"])
        return await original(self, **kwargs)

    monkeypatch.setattr(openai.resources.chat.completions.AsyncCompletions, "create", traced)
    server.script("gpt-4o-mini", GOOD)
    r = await make().arun("t", MSGS)
    assert r.ok and seen == ["gpt-4o-mini"]
