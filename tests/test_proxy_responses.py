"""``POST /v1/responses`` through ``cascade serve``: the real openai SDK's Responses calls
against a proxy whose upstream is a ``ScriptedServer`` (which serves chat completions, and
the Responses API for what the proxy forwards unchanged)."""

from __future__ import annotations

import json

import openai
import pytest
import test_proxy
from openai.types.responses import Response
from test_proxy import GOOD, KEY, write_policy

from cascade.proxy import ProxyConfig
from cascade.testing import Reply

INVOICE = "Invoice INV-1, total 10"
SCHEMA = {
    "type": "object",
    "properties": {"invoice_number": {"type": "string"}, "total": {"type": "number"}},
    "required": ["invoice_number", "total"],
    "additionalProperties": False,
}
TASK = {"X-Cascade-Task": "invoice"}
# The proxy's fixtures: a ScriptedServer upstream, a policies directory, a proxy factory.
upstream, policies, start = test_proxy.upstream, test_proxy.policies, test_proxy.start


def test_text_input_is_cascaded_as_chat_and_answered_as_a_response(start, upstream) -> None:
    upstream.script("gpt-4o-mini", "the total is ten").script(
        "gpt-4o", Reply(GOOD, prompt_tokens=100, completion_tokens=12)
    )
    proxy = start()
    raw = proxy.client().responses.with_raw_response.create(
        model="gpt-4o", input=INVOICE, instructions="Extract the invoice.", extra_headers=TASK
    )
    response = raw.parse()
    assert isinstance(response, Response)
    assert response.output_text == GOOD
    assert response.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (100, 12)
    assert raw.headers["x-cascade-escalated"] == "true"
    assert raw.headers["x-cascade-model"] == "gpt-4o"
    assert raw.headers["x-cascade-reasons"].startswith("json_schema: ")
    # Every rung was asked on the upstream's chat endpoint, the instructions first.
    assert [r["_path"] for r in upstream.requests] == ["/v1/chat/completions"] * 2
    assert upstream.requests[0]["messages"] == [
        {"role": "system", "content": "Extract the invoice."},
        {"role": "user", "content": INVOICE},
    ]
    cascade_field = response.model_extra["cascade"]  # type: ignore[index]
    assert [a["model"] for a in cascade_field["attempts"]] == ["gpt-4o-mini", "gpt-4o"]
    proxy.server.stop()
    (record,) = proxy.cascade.store.records(task="invoice")
    assert record.escalated


def test_text_format_and_message_items_reach_the_rungs(start, upstream) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    proxy = start(ProxyConfig(proxy_keys=(KEY,), default_task="invoice"))
    response = proxy.client().responses.create(
        model="gpt-4o",
        input=[
            {"role": "developer", "content": "Answer in JSON."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": INVOICE}],
            },
        ],
        text={
            "format": {"type": "json_schema", "name": "invoice", "schema": SCHEMA, "strict": True}
        },
        max_output_tokens=50,
        temperature=0,
    )
    assert json.loads(response.output_text) == json.loads(GOOD)
    (sent,) = upstream.requests
    assert sent["messages"] == [
        {"role": "developer", "content": "Answer in JSON."},
        {"role": "user", "content": INVOICE},
    ]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "invoice", "schema": SCHEMA, "strict": True},
    }
    assert (sent["max_completion_tokens"], sent["temperature"]) == (50, 0)


def test_function_tools_calls_and_outputs_round_trip(start, upstream, policies) -> None:
    write_policy(policies, "agent", validators=[{"type": "tool_calls", "require": True}])
    call = {"name": "lookup", "arguments": {"invoice": "INV-1"}, "id": "call_1"}
    upstream.script("gpt-4o-mini", Reply(None, tool_calls=[call], finish_reason="tool_calls"))
    proxy = start()
    tool = {
        "type": "function",
        "name": "lookup",
        "description": "Find an invoice.",
        "parameters": {"type": "object", "properties": {"invoice": {"type": "string"}}},
        "strict": False,
    }
    client = proxy.client()
    first = client.responses.create(
        model="gpt-4o", input=INVOICE, tools=[tool], extra_headers={"X-Cascade-Task": "agent"}
    )
    (fc,) = first.output
    assert (fc.type, fc.name, fc.call_id) == ("function_call", "lookup", "call_1")
    assert json.loads(fc.arguments) == {"invoice": "INV-1"}
    assert upstream.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {k: tool[k] for k in ("name", "description", "parameters", "strict")},
        }
    ]
    upstream.script("gpt-4o-mini", Reply(None, tool_calls=[call]), times=1)
    client.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": INVOICE},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "total: 10"},
        ],
        tools=[tool],
        extra_headers={"X-Cascade-Task": "agent"},
    )
    assert upstream.requests[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "total: 10"},
    ]


def test_streamed_responses_are_the_apis_own_events(start, upstream) -> None:
    upstream.script("gpt-4o-mini", "no json").script("gpt-4o", GOOD)
    proxy = start()
    with proxy.client().responses.stream(
        model="gpt-4o", input=INVOICE, extra_headers=TASK
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds
    assert kinds[-1] == "response.completed"
    assert final.output_text == GOOD
    assert [r["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert "stream" not in upstream.requests[0]


async def test_async_stream_with_create(start, upstream) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    proxy = start()
    async with proxy.async_client() as client:
        stream = await client.responses.create(
            model="gpt-4o", input=INVOICE, stream=True, extra_headers=TASK
        )
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == GOOD


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "built-in tool web_search"),
        ({"background": True}, "background mode"),
    ],
)
def test_what_the_cascade_cannot_judge_goes_upstream_unchanged(
    start, upstream, extra, reason
) -> None:
    upstream.script("gpt-4o", "from upstream state")
    proxy = start()
    raw = proxy.client().responses.with_raw_response.create(
        model="gpt-4o", input="and then?", extra_headers=TASK, **extra
    )
    assert raw.parse().output_text == "from upstream state"
    assert raw.headers["x-cascade-passthrough"].startswith(reason)
    assert "x-cascade-model" not in raw.headers
    (sent,) = upstream.requests
    assert sent["_path"] == "/v1/responses"
    assert sent["model"] == "gpt-4o"  # the requested model, not a rung's
    assert {k: sent[k] for k in extra} == extra


def test_no_task_and_no_discovery_is_forwarded_with_the_reason(start, upstream) -> None:
    upstream.script("gpt-4o", "plain")
    proxy = start(ProxyConfig(proxy_keys=(KEY,), discover=False))
    raw = proxy.client().responses.with_raw_response.create(model="gpt-4o", input="hi")
    assert raw.parse().output_text == "plain"
    assert raw.headers["x-cascade-passthrough"] == "no task applies"
    assert upstream.requests[0]["_path"] == "/v1/responses"


def test_exhausted_ladder_with_raise_is_502_not_retried(start, upstream, policies) -> None:
    write_policy(policies, "strict", on_exhausted="raise")
    upstream.script("gpt-4o-mini", "no").script("gpt-4o", "still no")
    proxy = start()
    client = openai.OpenAI(base_url=proxy.server.base_url, api_key=KEY, max_retries=2)
    with pytest.raises(openai.InternalServerError) as e:
        client.responses.create(
            model="gpt-4o", input=INVOICE, extra_headers={"X-Cascade-Task": "strict"}
        )
    client.close()
    assert e.value.status_code == 502
    assert e.value.response.json()["error"]["code"] == "escalation_exhausted"
    assert e.value.response.headers["x-should-retry"] == "false"
    assert len(upstream.requests) == 2  # the SDK did not climb the ladder again


def test_a_responses_call_without_task_is_discovered_like_its_chat_twin(start, upstream) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    proxy = start(ProxyConfig(proxy_keys=(KEY,), discover={"mode": "cascade"}))
    client = proxy.client()
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input=INVOICE, instructions="Extract the key fields of the invoice."
    )
    assert raw.parse().output_text == GOOD
    chat = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Extract the key fields of the invoice."},
            {"role": "user", "content": INVOICE},
        ],
    )
    # One template, one task, whichever API the request came by.
    assert raw.headers["x-cascade-task"] == chat.headers["x-cascade-task"]
    assert raw.headers["x-cascade-task"].startswith("extract-the-key-fields")
    assert [r["_path"] for r in upstream.requests] == ["/v1/chat/completions"] * 2


def test_logprobs_asked_for_come_back_whole_and_streamed(start, upstream) -> None:
    upstream.script("gpt-4o-mini", Reply(GOOD, logprobs=[(GOOD, -0.5, [("x", -2.0)])]))
    proxy = start()
    client = proxy.client()
    asked = {"include": ["message.output_text.logprobs"], "top_logprobs": 1}
    response = client.responses.create(model="gpt-4o", input=INVOICE, extra_headers=TASK, **asked)
    (part,) = response.output[0].content  # type: ignore[union-attr]
    assert [(t.token, t.logprob) for t in part.logprobs] == [(GOOD, -0.5)]  # type: ignore[union-attr]
    assert upstream.requests[0]["logprobs"] is True
    assert upstream.requests[0]["top_logprobs"] == 1
    stream = client.responses.create(
        model="gpt-4o", input=INVOICE, stream=True, extra_headers=TASK, **asked
    )
    deltas = [e for e in stream if e.type == "response.output_text.delta"]
    assert [(t.token, t.top_logprobs[0].token) for t in deltas[0].logprobs] == [(GOOD, "x")]
