"""Unmodified third-party clients against ``cascade serve`` (upstream: a ``ScriptedServer``):
the OpenAI Agents SDK, LangChain's ``ChatOpenAI(use_responses_api=True)`` and pydantic-ai's
``OpenAIResponsesModel``, each escalating on answers that break the policy's schema."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
import test_proxy
from test_proxy import GOOD, KEY

from cascade.proxy import ProxyConfig
from cascade.testing import Reply

upstream, policies, start = test_proxy.upstream, test_proxy.policies, test_proxy.start
INVOICE = "Invoice INV-1, total 10"


class Invoice(pydantic.BaseModel):
    invoice_number: str
    total: float


def _tooled(request: dict[str, Any]) -> Reply:
    """A tool call first; once the tool has answered, the invoice."""
    if any(m.get("role") == "tool" for m in request["messages"]):
        return Reply(GOOD)
    call = {"name": "lookup", "arguments": {"invoice": "INV-1"}, "id": "call_9"}
    return Reply(None, tool_calls=[call], finish_reason="tool_calls")


async def test_openai_agents_sdk_runs_tools_and_escalates(start, upstream) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    proxy = start(ProxyConfig(proxy_keys=(KEY,), default_task="invoice"))
    looked_up: list[str] = []

    @agents.function_tool
    def lookup(invoice: str) -> str:
        """Find an invoice's total."""
        looked_up.append(invoice)
        return "total: 10"

    upstream.script("gpt-4o-mini", "the total is ten")  # fails the schema: escalates
    upstream.script("gpt-4o", _tooled)
    async with proxy.async_client() as client:
        agent = agents.Agent(
            name="clerk",
            instructions="Extract the invoice as JSON.",
            tools=[lookup],
            model=agents.OpenAIResponsesModel(model="gpt-4o", openai_client=client),
        )
        result = await agents.Runner.run(agent, INVOICE)
    assert json.loads(result.final_output) == json.loads(GOOD)
    assert looked_up == ["INV-1"]
    # Both turns went through the cascade: cheap first, then the strong model.
    assert [r["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o"] * 2
    second = upstream.requests[3]["messages"]
    assert second[0] == {"role": "system", "content": "Extract the invoice as JSON."}
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_9"


async def test_openai_agents_sdk_structured_output(start, upstream) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    proxy = start(ProxyConfig(proxy_keys=(KEY,), default_task="invoice"))
    upstream.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    async with proxy.async_client() as client:
        agent = agents.Agent(
            name="clerk",
            output_type=Invoice,
            model=agents.OpenAIResponsesModel(model="gpt-4o", openai_client=client),
        )
        result = await agents.Runner.run(agent, INVOICE)
    assert result.final_output == Invoice(invoice_number="INV-1", total=10)
    assert upstream.requests[0]["response_format"]["type"] == "json_schema"


def test_langchain_chat_openai_with_the_responses_api(start, upstream) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    proxy = start()
    upstream.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    llm = langchain_openai.ChatOpenAI(
        model="gpt-4o",
        base_url=proxy.server.base_url,
        api_key=KEY,
        use_responses_api=True,
        max_retries=0,
        default_headers={"X-Cascade-Task": "invoice"},
    )
    assert llm.invoke(INVOICE).text == GOOD
    assert "".join(chunk.text for chunk in llm.stream(INVOICE)) == GOOD
    assert [r["_path"] for r in upstream.requests] == ["/v1/chat/completions"] * 4
    assert [r["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o"] * 2


async def test_pydantic_ai_openai_responses_model(start, upstream) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    proxy = start(ProxyConfig(proxy_keys=(KEY,), default_task="invoice"))
    upstream.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    async with proxy.async_client() as client:
        model = OpenAIResponsesModel("gpt-4o", provider=OpenAIProvider(openai_client=client))
        result = await Agent(model, instructions="Extract the invoice as JSON.").run(INVOICE)
    assert result.output == GOOD
    assert [r["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o"]
