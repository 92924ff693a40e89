"""An upstream error reaches the client as the upstream sent it, in every mode: its status,
its error object and its retry headers (a 429 with ``retry-after``), never a 502 in its place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import openai
import pytest

import cascade
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RATE_LIMITED = Reply(
    "quota exceeded",
    status=429,
    headers={"retry-after": "7", "x-ratelimit-remaining-requests": "0"},
)
MESSAGES = [
    {"role": "system", "content": "Say hello to the user."},
    {"role": "user", "content": "hi"},
]


def _proxy(upstream: ScriptedServer, tmp_path: Path, discover: Any) -> ProxyServer:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    config = ProxyConfig(discover=discover)
    c, up = proxy_cascade(
        policies, "memory://", config, base_url=upstream.base_url, api_key="sk", max_retries=0
    )
    return ProxyServer(create_app(c, config, up)).start()


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        s.script("gpt-4o-mini", Reply("cheap is down", status=503))
        s.script("gpt-4o", RATE_LIMITED)
        yield s


@pytest.mark.parametrize(
    ("discover", "api", "stream"),
    [
        ({"mode": "observe"}, "chat", False),
        ({"mode": "observe"}, "chat", True),
        ({"mode": "observe"}, "responses", False),
        ({"mode": "cascade"}, "chat", False),
        ({"mode": "cascade"}, "chat", True),
        ({"mode": "cascade"}, "responses", False),
        (False, "chat", False),  # pass-through
        (False, "responses", False),
    ],
)
def test_a_429_is_relayed_with_its_retry_after(
    upstream: ScriptedServer, tmp_path: Path, discover: Any, api: str, stream: bool
) -> None:
    server = _proxy(upstream, tmp_path, discover)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        if api == "chat":
            call: Any = lambda: client.chat.completions.create(  # noqa: E731
                model="gpt-4o", messages=MESSAGES, stream=stream
            )
        else:
            call = lambda: client.responses.create(  # noqa: E731
                model="gpt-4o", input="hi", instructions="Say hello to the user."
            )
        with pytest.raises(openai.RateLimitError) as raised:
            call()
        client.close()
    finally:
        server.stop()
    error = raised.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "7"
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.response.headers.get("x-should-retry") != "false"
    assert isinstance(error.body, dict)
    assert error.body["message"] == "quota exceeded"
    assert error.body["code"] == "rate_limit_exceeded"
    if discover:  # through the cascade: its task and every rung's reason are said
        assert error.response.headers["x-cascade-task"].startswith("say-hello-to-the")
        assert "rate_limited 429" in error.response.headers["x-cascade-reasons"]
        if discover["mode"] == "cascade":
            assert "server_error 503" in error.response.headers["x-cascade-reasons"]


def test_an_answer_that_failed_validation_still_beats_a_later_rungs_error(
    tmp_path: Path,
) -> None:
    # Some model answered: that answer (x-cascade-ok: false) is the reply, not the 429.
    with ScriptedServer() as upstream:
        upstream.script("gpt-4o-mini", Reply(""))  # empty: fails the request's own checks
        upstream.script("gpt-4o", RATE_LIMITED)
        server = _proxy(upstream, tmp_path, {"mode": "cascade"})
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES
            )
            client.close()
        finally:
            server.stop()
    assert raw.http_response.status_code == 200
    assert raw.headers["x-cascade-ok"] == "false"


def test_a_timeout_of_every_model_stays_a_502_not_to_be_retried(tmp_path: Path) -> None:
    with ScriptedServer() as upstream:
        upstream.script("gpt-4o-mini", Reply("late", delay_s=1.0))
        upstream.script("gpt-4o", Reply("late", delay_s=1.0))
        policies = tmp_path / "policies"
        policies.mkdir()
        config = ProxyConfig(discover={"mode": "cascade"})
        c, up = proxy_cascade(
            policies, "memory://", config, base_url=upstream.base_url, api_key="sk",
            max_retries=0, timeout=0.2,
        )  # fmt: skip
        server = ProxyServer(create_app(c, config, up)).start()
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
            with pytest.raises(openai.APIStatusError) as raised:
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            client.close()
        finally:
            server.stop()
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "escalation_exhausted"


@pytest.mark.parametrize("mode", ["observe", "cascade"])
def test_a_wrapped_client_raises_the_sdks_rate_limit_error(
    upstream: ScriptedServer, tmp_path: Path, mode: str
) -> None:
    client = upstream.client(max_retries=0)
    c = cascade.Cascade(tmp_path, client=client, store="memory://", discover={"mode": mode})
    wrapped = cascade.wrap(client, cascade=c)
    with pytest.raises(openai.RateLimitError) as raised:
        wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    wrapped.close()
    c.close()
    assert raised.value.response.headers["retry-after"] == "7"
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["message"] == "quota exceeded"
