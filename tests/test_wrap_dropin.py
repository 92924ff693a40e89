"""``cascade.wrap`` as a faithful drop-in: the SDK's own ``parse``, ``with_raw_response``,
streams and errors, the Responses API, and libraries that take an openai client."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import openai
import pydantic
import pytest
import test_wrap
import yaml
from openai import AsyncStream, Stream

from cascade.testing import Reply
from cascade.wrap import wrap

if TYPE_CHECKING:
    from pathlib import Path

MSGS = test_wrap.MSGS
GOOD = test_wrap.GOOD
policies = test_wrap.policies  # the server fixture is conftest's


class Invoice(pydantic.BaseModel):
    invoice_number: str
    total: float


def test_parse_goes_through_the_cascade_and_parses(server, policies) -> None:
    server.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    client = wrap(server.client(), task="invoice")
    completion = client.chat.completions.parse(
        model="gpt-4o", messages=MSGS, response_format=Invoice
    )
    assert completion.choices[0].message.parsed == Invoice(invoice_number="INV-1", total=10)
    assert [r["model"] for r in server.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert server.requests[0]["response_format"]["type"] == "json_schema"


def test_with_raw_response_has_the_cascade_headers(server, policies) -> None:
    server.script("gpt-4o-mini", Reply(GOOD, prompt_tokens=10, completion_tokens=4))
    client = wrap(server.client(), task="invoice")
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)
    assert raw.headers["x-cascade-model"] == "gpt-4o-mini"
    assert raw.headers["x-cascade-prompt-tokens"] == "10"
    completion = raw.parse()
    assert completion.choices[0].message.content == GOOD
    assert completion.model_extra["cascade"]["attempts"][0]["model"] == "gpt-4o-mini"  # type: ignore[index]


def test_streams_are_the_sdks_stream_and_work_as_context_managers(server, policies) -> None:
    server.script("gpt-4o-mini", GOOD)
    client = wrap(server.client(), task="invoice")
    stream = client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    assert isinstance(stream, Stream)
    with stream as chunks:
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == GOOD


def test_responses_create_and_stream_through_the_cascade(server, policies) -> None:
    server.script("gpt-4o-mini", "no").script("gpt-4o", GOOD)
    client = wrap(server.client(), task="invoice")
    response = client.responses.create(model="gpt-4o", input="Invoice INV-1, total 10")
    assert response.output_text == GOOD
    with client.responses.stream(model="gpt-4o", input="Invoice INV-1, total 10") as stream:
        kinds = [e.type for e in stream]
        assert stream.get_final_response().output_text == GOOD
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert {r["_path"] for r in server.requests} == {"/v1/chat/completions"}


def test_responses_the_cascade_cannot_judge_go_to_the_wrapped_client(server, policies) -> None:
    server.script("gpt-4o", "with state")
    client = wrap(server.client(), task="invoice")
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input="and then?", previous_response_id="resp_1"
    )
    assert raw.parse().output_text == "with state"
    assert raw.headers["x-cascade-passthrough"].startswith("previous_response_id")
    assert server.requests[0]["_path"] == "/v1/responses"


def test_an_exhausted_ladder_raises_the_sdks_error_once(
    server, policies: Path, tmp_path: Path
) -> None:
    (policies / "strict.yaml").write_text(
        yaml.safe_dump(
            {
                "models": ["gpt-4o-mini", "gpt-4o"],
                "validators": [{"type": "json_schema", "schema": {"type": "object"}}],
                "on_exhausted": "raise",
            }
        )
    )
    server.script("gpt-4o-mini", "no").script("gpt-4o", "no")
    client = wrap(server.client(max_retries=2), task="strict")
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert e.value.status_code == 502
    assert e.value.body["code"] == "escalation_exhausted"  # type: ignore[index]
    assert len(server.requests) == 2  # not retried: the ladder was not climbed again


async def test_async_streams_are_the_sdks_async_stream(server, policies) -> None:
    server.script("gpt-4o-mini", GOOD)
    client = wrap(server.async_client(), task="invoice")
    stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    assert isinstance(stream, AsyncStream)
    async with stream as chunks:
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert text == GOOD
    response = await client.responses.create(model="gpt-4o", input="x")
    assert json.loads(response.output_text) == json.loads(GOOD)


def test_instructor_from_openai_of_a_wrapped_client(server, policies: Path) -> None:
    # instructor 1.17 pins jiter<0.15, which openai>=3.50 does not accept: it is installed
    # with --no-deps where it runs, and not part of the test extra.
    instructor = pytest.importorskip("instructor")
    tools = {"models": ["gpt-4o-mini", "gpt-4o"], "validators": [{"type": "tool_calls"}]}
    (policies / "tools.yaml").write_text(yaml.safe_dump(tools))
    call = {"name": "Invoice", "arguments": GOOD}
    server.script("gpt-4o-mini", Reply(None, tool_calls=[call], finish_reason="tool_calls"))
    client = instructor.from_openai(wrap(server.client(), task="tools"))
    invoice = client.chat.completions.create(model="gpt-4o", messages=MSGS, response_model=Invoice)
    assert invoice.model_dump() == {"invoice_number": "INV-1", "total": 10}
    assert server.requests[0]["tools"][0]["function"]["name"] == "Invoice"


def test_n_above_one_goes_to_the_strongest_model(server, policies) -> None:
    server.script("gpt-4o", "two answers")
    client = wrap(server.client(), task="invoice")
    raw = client.chat.completions.with_raw_response.create(model="x", messages=MSGS, n=2)
    assert raw.parse().choices[0].message.content == "two answers"
    assert raw.headers["x-cascade-passthrough"] == "n=2: sent to gpt-4o unjudged"
    assert [(r["model"], r["n"]) for r in server.requests] == [("gpt-4o", 2)]
