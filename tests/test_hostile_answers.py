"""A 200 answer whose fields have the wrong types, and a provider that never answers: every
path (run, arun, the SDK's create, the proxy's direct upstream, wrap) escalates and records
the attempt as ``malformed_response`` or ``timeout``; nothing raises."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import openai
import pytest
import yaml

import cascade
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.testing import Reply, ScriptedServer
from cascade.transports import OpenAITransport

if TYPE_CHECKING:
    from pathlib import Path

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10"}]
GOOD = json.dumps({"total": 10})
POLICY = {
    "models": ["gpt-4o-mini", "gpt-4o"],
    "validators": [{"type": "json_schema", "schema": {"type": "object", "required": ["total"]}}],
}


def _answer(**fields: Any) -> str:
    body: dict[str, Any] = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": GOOD},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    body.update(fields)
    return json.dumps(body)


def _message(message: Any, **choice: Any) -> str:
    return _answer(choices=[{"index": 0, "finish_reason": "stop", "message": message, **choice}])


def _tool_message(tool_calls: Any) -> str:
    return _message({"role": "assistant", "content": None, "tool_calls": tool_calls})


# (name, body, what the reason names)
BODIES = [
    ("choices an int", _answer(choices=5), "choices is int 5"),
    ("choices a string", _answer(choices="abc"), "choices is str"),
    ("a choice a string", _answer(choices=["a"]), "choices[0] is str"),
    ("message a string", _message("hi"), "choices[0].message is str"),
    ("content an int", _message({"role": "assistant", "content": 5}), "content is int"),
    ("content a list", _message({"role": "assistant", "content": [1]}), "content is list"),
    ("usage a string", _answer(usage="lots"), "usage is str"),
    ("usage counts strings", _answer(usage={"prompt_tokens": "a"}), "usage.prompt_tokens"),
    ("negative usage", _answer(usage={"prompt_tokens": -5}), "usage.prompt_tokens"),
    ("no message", _answer(choices=[{"index": 0}]), "choice without a message"),
    ("no choices", "{}", "no choices"),
    ("tool_calls a string", _tool_message("x"), "tool_calls is str"),
    ("a tool call's id an int", _tool_message([{"id": 1, "function": "f"}]), "tool_calls[0].id"),
    (
        "a tool call's arguments an int",
        _tool_message([{"id": "a", "type": "function", "function": {"name": "f", "arguments": 5}}]),
        "tool_calls[0].function.arguments",
    ),
    (
        "logprobs an int",
        _message({"role": "assistant", "content": GOOD}, logprobs={"content": 5}),
        "unreadable response",
    ),
    (
        "finish_reason an int",
        _answer(choices=[{"index": 0, "finish_reason": 5, "message": {"content": GOOD}}]),
        "finish_reason is int",
    ),
    ("refusal an int", _message({"role": "assistant", "refusal": 5}), "refusal is int"),
]
IDS = [b[0] for b in BODIES]


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(POLICY))
    return tmp_path


def _escalated(r: cascade.Result, reason: str) -> None:
    assert r.ok and r.model == "gpt-4o" and r.output == GOOD
    error = r.attempts[0].error
    assert error is not None and error.startswith("malformed_response: ") and reason in error


@pytest.mark.parametrize(("name", "body", "reason"), BODIES, ids=IDS)
@pytest.mark.parametrize("how", ["run", "arun", "create"])
async def test_a_wrong_typed_answer_escalates_as_malformed(
    server, policies, name, body, reason, how
) -> None:
    server.script("gpt-4o-mini", Reply(status=200, body=body)).script("gpt-4o", GOOD)
    c = cascade.Cascade(policies, client=server.client(), store="memory://")
    if how == "arun":
        r = await c.arun("t", MSGS)
    else:  # messages that are not a list go through the SDK's create() and its own parsing
        r = c.run("t", MSGS if how == "run" else tuple(MSGS))
    _escalated(r, reason)
    (record,) = c.store.records(task="t")
    assert record.escalated and record.attempts[0].error == r.attempts[0].error
    await c.aclose()


@pytest.mark.parametrize(("name", "body", "reason"), BODIES, ids=IDS)
def test_the_proxy_escalates_a_wrong_typed_answer(server, policies, name, body, reason) -> None:
    server.script("gpt-4o-mini", Reply(status=200, body=body)).script("gpt-4o", GOOD)
    config = ProxyConfig(proxy_keys=("k",))
    c, up = proxy_cascade(
        policies, "memory://", config, base_url=server.base_url, api_key="sk-up", max_retries=0
    )
    with (
        ProxyServer(create_app(c, config, up)) as proxy,
        openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0) as client,
    ):
        reply = client.chat.completions.with_raw_response.create(
            model="m", messages=MSGS, extra_headers={"x-cascade-task": "t"}
        )
        assert reply.headers["x-cascade-model"] == "gpt-4o"
        assert reply.parse().choices[0].message.content == GOOD
        (record,) = c.store.records(task="t")
        error = record.attempts[0].error
        assert error is not None and error.startswith("malformed_response") and reason in error


@pytest.mark.parametrize(("name", "body", "reason"), BODIES[:8], ids=IDS[:8])
def test_wrap_escalates_a_wrong_typed_answer(server, policies, name, body, reason) -> None:
    server.script("gpt-4o-mini", Reply(status=200, body=body)).script("gpt-4o", GOOD)
    client = cascade.wrap(
        server.client(),
        cascade=cascade.Cascade(policies, client=server.client(), store="memory://"),
    )
    reply = client.chat.completions.create(
        model="m", messages=MSGS, extra_body={"cascade_task": "t"}
    )
    assert reply.choices[0].message.content == GOOD
    (record,) = client.cascade.store.records(task="t")
    assert (
        record.attempts[0].error.startswith("malformed_response")
        and reason in record.attempts[0].error
    )


# -- a provider that accepts and never answers ------------------------------------------------


def _read_timeouts(server: ScriptedServer) -> list[str]:
    return [r["_headers"].get("x-stainless-read-timeout") for r in server.requests]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_client_left_at_the_sdk_default_waits_60_s_per_request(
    server, policies, asynchronous
) -> None:
    server.script("gpt-4o-mini", GOOD)
    c = _default_clients(server, policies)
    r = await c.arun("t", MSGS) if asynchronous else c.run("t", MSGS)
    r2 = c.run("t", tuple(MSGS))  # through the SDK's create()
    await c.aclose()
    assert r.ok and r2.ok
    assert _read_timeouts(server) == ["60.0", "60.0"]  # not the SDK's 600


def _default_clients(server: ScriptedServer, policies: Path) -> cascade.Cascade:
    """A Cascade over clients left at the SDK's default timeout, which it owns."""
    return cascade.Cascade(
        policies,
        transport=OpenAITransport(
            openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0),
            openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0),
            owned=True,
        ),
        store="memory://",
    )


async def test_a_timeout_set_elsewhere_wins(server, policies, tmp_path) -> None:
    server.script("gpt-4o-mini", GOOD)
    c = cascade.Cascade(policies, client=server.client(timeout=7, max_retries=0))
    c.run("t", MSGS)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**POLICY, "params": {"timeout": 9}}))
    c.run("p", MSGS)
    await c.aclose()
    assert _read_timeouts(server) == ["7", "9"]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_cascade_timeout_bounds_a_silent_rung_and_escalates(
    server, policies, monkeypatch, asynchronous
) -> None:
    monkeypatch.setenv("CASCADE_TIMEOUT", "0.3")
    server.script("gpt-4o-mini", Reply(content=GOOD, delay_s=2.0)).script("gpt-4o", GOOD)
    c = _default_clients(server, policies)
    r = await c.arun("t", MSGS) if asynchronous else c.run("t", MSGS)
    (record,) = c.store.records(task="t")
    await c.aclose()
    assert r.ok and r.model == "gpt-4o"
    assert r.attempts[0].error.startswith("timeout")
    assert record.attempts[0].error.startswith("timeout")


@pytest.mark.parametrize("config", [{}, {"upstream_timeout": 0.3}])
def test_the_proxy_bounds_a_silent_upstream(server, policies, monkeypatch, config) -> None:
    if not config:
        monkeypatch.setenv("CASCADE_TIMEOUT", "0.3")
    server.script("gpt-4o-mini", Reply(content=GOOD, delay_s=2.0)).script("gpt-4o", GOOD)
    proxy_config = ProxyConfig(proxy_keys=("k",), **config)
    c, up = proxy_cascade(
        policies, "memory://", proxy_config, base_url=server.base_url, api_key="u", max_retries=0
    )
    with (
        ProxyServer(create_app(c, proxy_config, up)) as proxy,
        openai.OpenAI(base_url=proxy.base_url, api_key="k", max_retries=0) as client,
    ):
        reply = client.chat.completions.with_raw_response.create(
            model="m", messages=MSGS, extra_headers={"x-cascade-task": "t"}
        )
        assert reply.headers["x-cascade-model"] == "gpt-4o"
    (record,) = c.store.records(task="t")
    assert record.attempts[0].error.startswith("timeout")
    assert _read_timeouts(server)[0] == "0.3"


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_cascade_timeout_fails_before_any_call(policies, monkeypatch, value) -> None:
    monkeypatch.setenv("CASCADE_TIMEOUT", value)
    with pytest.raises(ValueError, match="CASCADE_TIMEOUT"):
        cascade.Cascade(policies, store="memory://")
