"""``cascade.wrap``: a drop-in openai client whose chat completions run the cascade."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import openai
import pytest
import yaml
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import cascade
from cascade.testing import Reply
from cascade.wrap import AsyncWrapped, Wrapped, wrap

if TYPE_CHECKING:
    from pathlib import Path

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10"}]
GOOD = json.dumps({"invoice_number": "INV-1", "total": 10})


@pytest.fixture
def policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "invoice.yaml").write_text(
        yaml.safe_dump(
            {
                "models": ["gpt-4o-mini", "gpt-4o"],
                "validators": [
                    {"type": "json_schema", "schema": {"type": "object", "required": ["total"]}}
                ],
            }
        )
    )
    monkeypatch.setenv("CASCADE_POLICIES", str(d))
    monkeypatch.setenv("CASCADE_STORE", "memory://")
    return d


def test_sync_task_from_the_argument_ignores_the_requested_model(server, policies) -> None:
    server.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    client = wrap(server.client(), task="invoice")
    assert isinstance(client, Wrapped)
    reply = client.chat.completions.create(model="gpt-3.5-turbo", messages=MSGS)
    assert isinstance(reply, ChatCompletion)
    assert reply.choices[0].message.content == GOOD
    assert [r["model"] for r in server.requests] == ["gpt-4o-mini", "gpt-4o"]
    (record,) = client.cascade.store.records(task="invoice")
    assert record.escalated


def test_task_from_extra_body_and_other_extra_fields_still_sent(server, policies) -> None:
    server.script("gpt-4o-mini", GOOD)
    client = wrap(server.client())
    client.chat.completions.create(
        model="m", messages=MSGS, extra_body={"cascade_task": "invoice", "vendor_flag": 1}
    )
    (sent,) = server.requests
    assert sent["model"] == "gpt-4o-mini"
    assert sent["vendor_flag"] == 1
    assert "cascade_task" not in sent


def test_no_task_and_no_discovery_is_a_plain_call_of_the_wrapped_client(server, policies) -> None:
    server.script("gpt-4o", "hello")
    inner = server.client()
    client = wrap(inner, cascade=cascade.Cascade(client=inner, discover=False))
    reply = client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert reply.choices[0].message.content == "hello"
    assert [r["model"] for r in server.requests] == ["gpt-4o"]
    assert list(client.cascade.store.records()) == []


def test_no_task_is_a_task_discovered_from_the_request(server, policies) -> None:
    server.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    inner = server.client()
    client = wrap(inner, cascade=cascade.Cascade(client=inner, discover={"mode": "cascade"}))
    system = {"role": "system", "content": "Extract the invoice fields as JSON."}
    rf = {"type": "json_object"}
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[system, *MSGS], response_format=rf
    )
    assert reply.choices[0].message.content == GOOD  # the cheap answer broke the request's format
    (task,) = client.cascade.store.tasks()
    assert task.startswith("extract-the-invoice-fields-")


def test_an_explicit_cascade_is_used(server, policies) -> None:
    server.script("gpt-4o-mini", GOOD)
    mine = cascade.Cascade(policies, client=server.client(), store="memory://")
    client = wrap(server.client(), task="invoice", cascade=mine)
    client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert client.cascade is mine
    assert [d.calls for d in mine.store.days(task="invoice")] == [1]


def test_sync_stream_replays_the_validated_answer(server, policies) -> None:
    server.script("gpt-4o-mini", Reply(content=GOOD, prompt_tokens=3, completion_tokens=2))
    client = wrap(server.client(), task="invoice")
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == GOOD
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert "stream" not in server.requests[0]


def test_other_resources_pass_through(server, policies) -> None:
    server.script("gpt-4o-mini", GOOD)
    inner = server.client()
    client = wrap(inner, task="invoice")
    assert isinstance(client, openai.OpenAI)
    assert client.base_url == inner.base_url
    assert client.api_key == inner.api_key
    assert client.max_retries == inner.max_retries
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]  # the SDK's own call
    assert server.requests[0]["_path"] == "/v1/models"
    assert "cascade.wrap" in repr(client)


def test_wrap_rejects_what_is_not_an_openai_client() -> None:
    with pytest.raises(TypeError, match="OpenAI or AsyncOpenAI"):
        wrap(object())  # type: ignore[call-overload]


async def test_async_task_from_the_argument(server, policies) -> None:
    server.script("gpt-4o-mini", GOOD)
    client = wrap(server.async_client(), task="invoice")
    assert isinstance(client, AsyncWrapped)
    reply = await client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert reply.choices[0].message.content == GOOD
    assert [r["model"] for r in server.requests] == ["gpt-4o-mini"]


async def test_async_task_from_extra_body_and_stream(server, policies) -> None:
    server.script("gpt-4o-mini", GOOD)
    client = wrap(server.async_client())
    stream = await client.chat.completions.create(
        model="m", messages=MSGS, stream=True, extra_body={"cascade_task": "invoice"}
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == GOOD


async def test_async_without_task_passes_through(server, policies) -> None:
    server.script("gpt-4o", "plain")
    inner = server.async_client()
    client = wrap(inner, cascade=cascade.Cascade(async_client=inner, discover=False))
    reply = await client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert reply.choices[0].message.content == "plain"
    assert [r["model"] for r in server.requests] == ["gpt-4o"]


def test_invalid_requests_raise_the_sdks_error_before_any_call(server, policies) -> None:
    client = wrap(server.client(max_retries=2), task="invoice")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert e.value.body["code"] == "invalid_request"  # type: ignore[index]
    assert server.requests == []
