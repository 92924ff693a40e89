"""Unmodified clients against ``cascade serve`` with an empty policies directory and
``discover: {mode: cascade}``: the request's own schema and tools decide escalation, tasks are
named from the traffic, ``cascade tasks`` counts them, and a promoted policy passes ``check``.

The upstream is a ``ScriptedServer``: the cheap model breaks the request's own schema or tools,
the strong model answers well. Third-party clients are skipped when not installed.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pydantic
import pytest

import cascade
from cascade.cli import main
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEY = "proxy-key-1"
SYSTEM = "Extract the invoice fields from the customer's message as JSON."
GOOD = {"number": "INV-1", "total": 10}
BAD = {"number": "INV-1", "total": "ten"}


class Invoice(pydantic.BaseModel):
    number: str
    total: float


def answer(good: bool) -> Any:
    """A reply in the request's own terms: a call of its first tool, else JSON content."""
    args = GOOD if good else BAD

    def reply(request: dict[str, Any]) -> Reply:
        tools = request.get("tools") or []
        if tools:
            name = tools[0]["function"]["name"]
            if not good and "unknown tool" in request["messages"][-1]["content"]:
                name = "drop_db"
            return Reply(content=None, tool_calls=[{"name": name, "arguments": args}],
                         finish_reason="tool_calls")  # fmt: skip
        if not good and "malformed" in request["messages"][-1]["content"]:
            return Reply(status=200, body='{"choices": 5}')
        if not good and "in prose" in request["messages"][-1]["content"]:
            return Reply("Sure! Here it is: total ten")
        return Reply(json.dumps(args))

    return reply


@pytest.fixture(autouse=True)
def _collected() -> Iterator[None]:
    """Garbage left by a client library is collected inside the test that made it."""
    yield
    gc.collect()


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        s.script("gpt-4o-mini", answer(good=False))
        s.script("gpt-4o", answer(good=True))
        yield s


def serve(upstream: ScriptedServer, tmp_path: Path) -> Any:
    """``cascade serve`` with no policy at all, discovering tasks in cascade mode; started
    again on the same ``tmp_path``, it is the same deployment after a restart."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    config = ProxyConfig(proxy_keys=(KEY,), discover={"mode": "cascade"})
    store = f"sqlite:///{tmp_path / 'calls.db'}"
    c, up = proxy_cascade(
        policies, store, config, base_url=upstream.base_url, api_key="sk-up", max_retries=0
    )
    server = ProxyServer(create_app(c, config, up)).start()
    server.policies, server.store_url, server.cascade = policies, store, c  # type: ignore[attr-defined]
    return server


@pytest.fixture
def proxy(upstream: ScriptedServer, tmp_path: Path) -> Iterator[Any]:
    server = serve(upstream, tmp_path)
    yield server
    server.stop()


def client(proxy: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=0)


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "invoice",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"number": {"type": "string"}, "total": {"type": "number"}},
            "required": ["number", "total"],
            "additionalProperties": False,
        },
    },
}


def test_openai_sdk_an_answer_breaking_the_requests_schema_escalates(proxy, upstream) -> None:
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("Invoice INV-1 over 10 EUR"),
            response_format=SCHEMA_FORMAT,
        )  # fmt: skip
    assert json.loads(raw.parse().choices[0].message.content) == GOOD
    assert raw.headers["x-cascade-escalated"] == "true"
    assert "response_format: schema" in raw.headers["x-cascade-reasons"]
    assert raw.headers["x-cascade-task"].startswith("extract-the-invoice-fields-")
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"]


def test_a_400_from_the_cheap_rung_goes_on_to_the_requested_model(proxy, upstream) -> None:
    # The Agents SDK sends reasoning_effort for the model it was given; a cheap rung the
    # application never chose may refuse it. The requested model answers instead.
    refusal = "Unsupported parameter: 'reasoning_effort' is not supported with this model."
    upstream.fail("gpt-4o-mini", 400, message=refusal)
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("Invoice INV-1 over 10 EUR"),
            response_format=SCHEMA_FORMAT, reasoning_effort="low",
        )  # fmt: skip
        assert json.loads(raw.parse().choices[0].message.content) == GOOD
        assert (raw.headers["x-cascade-model"], raw.headers["x-cascade-ok"]) == ("gpt-4o", "true")
        upstream.fail("gpt-4o-mini", 400, message=refusal)
        upstream.fail("gpt-4o", 400, message="Invalid value for 'temperature'.")
        with pytest.raises(openai.BadRequestError, match="temperature"):  # its own 400
            c.chat.completions.create(
                model="gpt-4o", messages=messages("Invoice INV-2 over 12 EUR"), temperature=9
            )


def test_openai_sdk_a_call_of_an_unknown_tool_escalates(proxy, upstream) -> None:
    tool = {
        "type": "function",
        "function": {"name": "save_invoice", "parameters": SCHEMA_FORMAT["json_schema"]["schema"]},
    }
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("INV-1, 10 (call an unknown tool)"), tools=[tool]
        )
    call = raw.parse().choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("save_invoice", GOOD)
    assert "not one of the request's tools" in raw.headers["x-cascade-reasons"]


def test_discovered_names_are_stable_and_cascade_tasks_counts_them(proxy, capsys) -> None:
    with client(proxy) as c:
        for n in (1, 2, 3):
            c.chat.completions.create(
                model="gpt-4o", messages=messages(f"Invoice INV-{n}"), response_format=SCHEMA_FORMAT
            )
        other = [{"role": "system", "content": "Summarise ticket 4411 for the on-call engineer."},
                 {"role": "user", "content": "printer"}]  # fmt: skip
        c.chat.completions.create(model="gpt-4o", messages=other)
    proxy.cascade.store.flush()
    capsys.readouterr()  # the calls' log lines
    assert main(["tasks", "--store", proxy.store_url, "--policies", str(proxy.policies),
                 "--format", "json"]) == 0  # fmt: skip
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)["tasks"]}
    (invoice,) = [t for t in rows if t.startswith("extract-the-invoice-fields-")]
    (summary,) = [t for t in rows if t.startswith("summarise-ticket-")]
    assert rows[invoice]["calls"] == 3 and rows[invoice]["kind"] == "discovered"
    assert rows[invoice]["escalation_rate"] == 1.0 and rows[invoice]["mode"] == "cascade"
    assert rows[summary]["calls"] == 1
    assert main(["tasks", "--store", proxy.store_url, "--policies", str(proxy.policies)]) == 0
    assert invoice in capsys.readouterr().out


def test_a_task_with_no_call_stored_whole_is_of_unknown_kind_and_mode(
    upstream, tmp_path, capsys
) -> None:
    # Passing calls are only counted unless sampled: nothing stored says what the task was.
    store = f"sqlite:///{tmp_path / 'calls.db'}"
    discover = {"mode": "cascade", "sample_passes": 0}
    c = cascade.Cascade(tmp_path, client=upstream.client(), store=store, discover=discover)
    c.run(None, [{"role": "system", "content": "Say hi."}, {"role": "user", "content": "x"}])
    c.close()
    capsys.readouterr()
    assert main(["tasks", "--store", store, "--policies", str(tmp_path), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["tasks"]
    assert (row["calls"], row["kind"], row["mode"]) == (1, "unknown", "unknown")


def test_a_promoted_policy_is_accepted_by_cascade_check(proxy, capsys) -> None:
    with client(proxy) as c:
        for n in range(3):
            c.chat.completions.create(
                model="gpt-4o", messages=messages(f"Invoice INV-{n}"), response_format=SCHEMA_FORMAT
            )
    proxy.cascade.store.flush()
    capsys.readouterr()
    main(["tasks", "--store", proxy.store_url, "--format", "json"])
    (task,) = [r["task"] for r in json.loads(capsys.readouterr().out)["tasks"]]
    where = ["--store", proxy.store_url, "--policies", str(proxy.policies)]
    assert main(["tasks", "promote", task, *where]) == 0
    text = (proxy.policies / f"{task}.yaml").read_text()
    assert "mode: observe" in text and "fingerprint:" in text
    assert "number: required, present in 3 of 3 answers" in text
    assert main(["check", "--policies", str(proxy.policies)]) == 0
    assert main(["tasks", "promote", task, *where]) == 2  # exists: not replaced without --force


INVOICE_SCHEMA = SCHEMA_FORMAT["json_schema"]["schema"]
SAVE = {"type": "function", "function": {"name": "save_invoice", "parameters": INVOICE_SCHEMA}}


def tasks(proxy: Any, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    """``cascade tasks --format json`` of the proxy's store, by task."""
    proxy.cascade.store.flush()
    capsys.readouterr()  # the calls' log lines
    assert main(["tasks", "--store", proxy.store_url, "--policies", str(proxy.policies),
                 "--format", "json"]) == 0  # fmt: skip
    return {r["task"]: r for r in json.loads(capsys.readouterr().out)["tasks"]}


def test_openai_sdk_responses_calls_escalate_on_their_own_format_and_tools(proxy, upstream) -> None:
    text = {"format": {"type": "json_schema", "name": "invoice", "strict": True,
                       "schema": INVOICE_SCHEMA}}  # fmt: skip
    tool = {"type": "function", "name": "save_invoice", "parameters": INVOICE_SCHEMA}
    with client(proxy) as c:
        formatted = c.responses.with_raw_response.create(
            model="gpt-4o", instructions=SYSTEM, input="Invoice INV-1 over 10 EUR", text=text
        )
        tooled = c.responses.with_raw_response.create(
            model="gpt-4o", instructions=SYSTEM, input="INV-1, 10 (call an unknown tool)",
            tools=[tool],
        )  # fmt: skip
    assert json.loads(formatted.parse().output_text) == GOOD
    assert "response_format: schema" in formatted.headers["x-cascade-reasons"]
    (call,) = tooled.parse().output
    assert (call.type, call.name) == ("function_call", "save_invoice")  # type: ignore[union-attr]
    assert json.loads(call.arguments) == GOOD  # type: ignore[union-attr]
    assert "not one of the request's tools" in tooled.headers["x-cascade-reasons"]
    assert formatted.headers["x-cascade-task"].startswith("extract-the-invoice-fields-")
    assert tooled.headers["x-cascade-task"] != formatted.headers["x-cascade-task"]  # other tools
    # Every rung asked on the upstream's chat completions, cheap first.
    assert [(r["_path"], r["model"]) for r in upstream.requests] == [
        ("/v1/chat/completions", m) for m in ("gpt-4o-mini", "gpt-4o") * 2
    ]


def test_a_restart_keeps_the_discovered_names_and_the_counts_add_up(
    upstream, tmp_path, capsys
) -> None:
    names = []
    for n in (1, 2):  # the same deployment (policies, store) started twice
        server = serve(upstream, tmp_path)
        try:
            with client(server) as c:
                raw = c.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=messages(f"Invoice INV-{n}"),
                    response_format=SCHEMA_FORMAT,
                )  # fmt: skip
            names.append(raw.headers["x-cascade-task"])
        finally:
            server.stop()
    assert names[0] == names[1]
    rows = tasks(server, capsys)
    assert (rows[names[0]]["calls"], rows[names[0]]["kind"]) == (2, "discovered")


def test_a_promoted_tool_task_keeps_the_requests_own_checks(upstream, tmp_path) -> None:
    # A tool call's answer is no text to learn from: the policy has no inferred validator
    # (one learnt from text would reject its tool-call turns), the request's tools judge it.
    server = serve(upstream, tmp_path)
    try:
        with client(server) as c:
            first = c.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=messages("INV-1, 10 (call an unknown tool)"), tools=[SAVE]
            )
        task = first.headers["x-cascade-task"]
        server.cascade.store.flush()
        where = ["--store", server.store_url, "--policies", str(server.policies)]
        assert main(["tasks", "promote", task, *where]) == 0
    finally:
        server.stop()
    path = server.policies / f"{task}.yaml"
    text = path.read_text()
    assert "validators: []" in text and "tools (save_invoice)" in text
    assert "1 are tool calls, 0 text" in text
    assert main(["check", "--policies", str(server.policies)]) == 0

    def answers() -> list[Any]:
        """Restarted on the policy file as it is now: a call of an unknown tool, then one
        with arguments against the tool's parameters, as the cheap model answers them."""
        restarted = serve(upstream, tmp_path)
        try:
            with client(restarted) as c:
                return [
                    c.chat.completions.with_raw_response.create(
                        model="gpt-4o", messages=messages(content), tools=[SAVE]
                    )
                    for content in ("INV-2, 20 (call an unknown tool)", "INV-3, 30")
                ]
        finally:
            restarted.stop()

    def called(raw: Any) -> tuple[str, str, dict[str, Any]]:
        (call,) = raw.parse().choices[0].message.tool_calls
        model = raw.headers["x-cascade-model"]
        return model, call.function.name, json.loads(call.function.arguments)

    # In observe mode, as promoted, the strong model answers the task's requests.
    observed = answers()
    assert [r.headers["x-cascade-task"] for r in observed] == [task, task]
    assert [called(r) for r in observed] == [("gpt-4o", "save_invoice", GOOD)] * 2
    # Switched to cascade mode (as `cascade tasks` recommends): the request's own tools
    # (derive) reject both cheap answers, and the strong model answers.
    path.write_text(text.replace("\nmode: observe\n", "\nmode: cascade\n"))
    checked = answers()
    assert [called(r) for r in checked] == [("gpt-4o", "save_invoice", GOOD)] * 2
    reasons = [r.headers["x-cascade-reasons"] for r in checked]
    assert "not one of the request's tools" in reasons[0]
    assert "'save_invoice': arguments at $.total: 'ten' is not of type" in reasons[1]
    # ... which is derivation's doing: without it the cheap answers would pass unchecked.
    path.write_text(path.read_text() + "derive: false\n")
    assert [called(r) for r in answers()] == [
        ("gpt-4o-mini", "drop_db", BAD), ("gpt-4o-mini", "save_invoice", BAD)
    ]  # fmt: skip


# -- third-party clients ---------------------------------------------------------------------


def test_langchain_structured_output_escalates_on_the_requests_schema(proxy, upstream) -> None:
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(model="gpt-4o", base_url=proxy.base_url, api_key=KEY, max_retries=0)
    out = llm.with_structured_output(Invoice, method="json_schema").invoke(
        messages("Invoice INV-1 over 10 EUR")
    )
    assert out == Invoice(**GOOD)
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic on litellm's own TypedDicts
def test_litellm_escalates_on_the_requests_schema_and_tools(proxy, upstream, monkeypatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import
    litellm = pytest.importorskip("litellm")
    reply = litellm.completion(
        model="openai/gpt-4o", api_base=proxy.base_url, api_key=KEY,
        messages=messages("Invoice INV-1 over 10 EUR"), response_format=SCHEMA_FORMAT,
    )  # fmt: skip
    assert json.loads(reply.choices[0].message.content) == GOOD
    tooled = litellm.completion(
        model="openai/gpt-4o", api_base=proxy.base_url, api_key=KEY, tools=[SAVE],
        messages=messages("INV-1, 10 (call an unknown tool)"),
    )  # fmt: skip
    (call,) = tooled.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("save_invoice", GOOD)
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"] * 2
    # litellm keeps its clients (and their event loop) for the process: close them here.
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    asyncio.run(close_litellm_async_clients())
    for client in list(litellm.in_memory_llm_clients_cache.cache_dict.values()):
        close = getattr(client, "close", None)  # the sync clients it cached: an open socket
        if callable(close) and not asyncio.iscoroutinefunction(close):
            close()
    litellm.in_memory_llm_clients_cache.flush_cache()


def test_langchain_tool_calls_escalate_on_bad_arguments(proxy, upstream) -> None:
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(model="gpt-4o", base_url=proxy.base_url, api_key=KEY, max_retries=0)
    message = llm.bind_tools([SAVE["function"]], tool_choice="any").invoke(
        messages("Invoice INV-1 over 10 EUR")
    )
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("save_invoice", GOOD)]
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"]


def test_langchain_responses_api_structured_output_escalates(proxy, upstream) -> None:
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(
        model="gpt-4o", base_url=proxy.base_url, api_key=KEY, max_retries=0,
        use_responses_api=True,
    )  # fmt: skip
    out = llm.with_structured_output(Invoice, method="json_schema").invoke(
        messages("Invoice INV-1 over 10 EUR")
    )
    assert out == Invoice(**GOOD)
    assert [(r["_path"], r["model"]) for r in upstream.requests] == [
        ("/v1/chat/completions", "gpt-4o-mini"), ("/v1/chat/completions", "gpt-4o")
    ]  # fmt: skip


def agent_turn(good: bool) -> Any:
    """``answer(good)``, except that once a tool has answered the turn is a text answer."""
    first = answer(good)

    def reply(request: dict[str, Any]) -> Reply:
        if request["messages"][-1].get("role") == "tool":
            return Reply("INV-1 totals 10 EUR.")
        return first(request)

    return reply


async def test_openai_agents_sdk_escalates_an_unknown_tool_and_a_broken_output(tmp_path) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    looked_up: list[float] = []

    @agents.function_tool
    def save_invoice(number: str, total: float) -> str:
        """Save an invoice."""
        looked_up.append(total)
        return "saved"

    with ScriptedServer() as upstream:
        upstream.script("gpt-4o-mini", agent_turn(good=False))
        upstream.script("gpt-4o", agent_turn(good=True))
        server = serve(upstream, tmp_path)
        try:
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY,
                                          max_retries=0) as oc:  # fmt: skip
                model = agents.OpenAIResponsesModel(model="gpt-4o", openai_client=oc)
                clerk = agents.Agent(name="clerk", instructions=SYSTEM, tools=[save_invoice],
                                     model=model)  # fmt: skip
                done = await agents.Runner.run(clerk, "INV-1, 10 (call an unknown tool)")
                typed = agents.Agent(name="typed", instructions=SYSTEM, output_type=Invoice,
                                     model=model)  # fmt: skip
                parsed = await agents.Runner.run(typed, "Invoice INV-1 over 10 EUR")
        finally:
            server.stop()
        sent = [r["model"] for r in upstream.calls()]
    assert looked_up == [10]  # the strong model's call, not the unknown tool
    # The agent's last turn demands no tool: its text is the cheap model's, not escalated.
    assert done.final_output == "INV-1 totals 10 EUR."
    assert parsed.final_output == Invoice(**GOOD)
    assert sent == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]


def test_instructor_tools_mode_escalates_on_bad_arguments(proxy, upstream) -> None:
    instructor = pytest.importorskip("instructor")
    with client(proxy) as c:
        out = instructor.from_openai(c).chat.completions.create(
            model="gpt-4o", response_model=Invoice, max_retries=0,
            messages=messages("Invoice INV-1 over 10 EUR"),
        )  # fmt: skip
    assert out.model_dump() == Invoice(**GOOD).model_dump()
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"]


@pytest.mark.parametrize("kind", ["OpenAIChatModel", "OpenAIResponsesModel"])
async def test_pydantic_ai_output_tool_escalates_on_bad_arguments(proxy, upstream, kind) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models import openai as models
    from pydantic_ai.providers.openai import OpenAIProvider

    # Its client is closed inside the test's event loop, so no socket outlives the test.
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=KEY, max_retries=0) as oc:
        model = getattr(models, kind)("gpt-4o", provider=OpenAIProvider(openai_client=oc))
        agent = Agent(model, output_type=Invoice, system_prompt=SYSTEM, retries=0)
        result = await agent.run("Invoice INV-1 over 10 EUR")
    assert result.output == Invoice(**GOOD)
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"]


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA", "JSON"])
def test_instructor_on_a_wrapped_client_escalates_what_breaks_the_request(
    mode: str, tmp_path: Path
) -> None:
    # instructor.from_openai(cascade.wrap(OpenAI())), no policy: TOOLS mode forces a tool whose
    # parameters are the model's schema, JSON_SCHEMA sends the schema as response_format, JSON
    # asks for a JSON object (its schema is only in the prompt: an object is all it can demand).
    instructor = pytest.importorskip("instructor")
    import cascade

    with ScriptedServer() as upstream:
        prose = Reply("Sure! The invoice is INV-1, total 10.")
        upstream.script("gpt-4o-mini", prose if mode == "JSON" else answer(good=False))
        upstream.script("gpt-4o", answer(good=True))
        oc = upstream.client()
        c = cascade.Cascade(tmp_path, client=oc, store="memory://", discover={"mode": "cascade"})
        wrapped = cascade.wrap(oc, cascade=c)
        client = instructor.from_openai(wrapped, mode=instructor.Mode[mode])
        out = client.chat.completions.create(
            model="gpt-4o", response_model=Invoice, max_retries=0,
            messages=messages("Invoice INV-1 over 10 EUR"),
        )  # fmt: skip
        wrapped.close()
        c.close()
        sent = upstream.calls()
    assert out.model_dump() == Invoice(**GOOD).model_dump()
    assert [r["model"] for r in sent] == ["gpt-4o-mini", "gpt-4o"]
    if mode == "TOOLS":
        assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "Invoice"}}
    else:
        kind = "json_object" if mode == "JSON" else "json_schema"
        assert sent[0]["response_format"]["type"] == kind


BROKEN_FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}}


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_an_invalid_schema_goes_to_the_requested_model_unvalidated(
    proxy, upstream, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="cascade")
    with client(proxy) as c:
        if api == "chat":
            raw: Any = c.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=messages("x"), response_format=BROKEN_FORMAT
            )
        else:
            text = {"format": {"type": "json_schema", "name": "x", "schema": {"type": 7}}}
            raw = c.responses.with_raw_response.create(
                model="gpt-4o", instructions=SYSTEM, input="x", text=text
            )
    assert raw.http_response.status_code == 200
    assert "not a valid JSON Schema" in raw.headers["x-cascade-unvalidated" if api == "chat"
                                                    else "x-cascade-passthrough"]  # fmt: skip
    # Sent once, as it came, to the model the client asked for.
    assert [(r["_path"].rsplit("/", 1)[-1], r["model"]) for r in upstream.requests] == [
        ("completions" if api == "chat" else "responses", "gpt-4o")
    ]
    assert any("cascade.unvalidated" in r.getMessage() for r in caplog.records)


def test_n_above_one_of_a_discovered_task_goes_to_its_strongest_model(proxy, upstream) -> None:
    # A transparent proxy answers n > 1: the discovered task has no policy file, yet its
    # strongest model is known (the requested one), and the request goes there unjudged.
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("Invoice INV-1 over 10 EUR"), n=2
        )
    assert raw.http_response.status_code == 200
    assert raw.headers["x-cascade-passthrough"] == "n=2: sent to gpt-4o unjudged"
    assert [(r["model"], r["n"]) for r in upstream.calls()] == [("gpt-4o", 2)]


def _nested(levels: int) -> str:
    """The JSON text of an object schema whose properties nest ``levels`` deep."""
    return '{"type": "object", "properties": {"a": ' * levels + "{}" + "}}" * levels


def test_a_schema_too_deep_to_check_goes_unvalidated_and_a_body_too_deep_is_a_400(
    proxy, upstream
) -> None:
    # jsonschema checks a schema recursively: 150 levels exhaust Python's stack, which made
    # a 500; such a schema cannot be judged, so it goes to the requested model unvalidated.
    # A body nested deeper than json can read is refused as invalid JSON, not a 500.
    head = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    start = json.dumps({"model": "gpt-4o", "messages": messages("x")})[:-1]
    schema = ', "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
    with httpx.Client(base_url=proxy.base_url, headers=head) as h:
        deep = h.post("/chat/completions", content=start + schema + _nested(150) + "}}}")
        deeper = h.post("/chat/completions", content=start + schema + _nested(5000) + "}}}")
    assert deep.status_code == 200
    assert "nested too deeply" in deep.headers["x-cascade-unvalidated"]
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o"]
    assert deeper.status_code == 400
    assert deeper.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("model", [None, 5, "", ["gpt-4o"], {"a": 1}, "missing"])
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_discovered_request_without_a_model_name_is_a_400_naming_model(
    proxy, upstream, model, api
) -> None:
    # The requested model is part of a discovered task's fingerprint and the top of its
    # ladder: no other model may answer for one that is missing, as OpenAI refuses it.
    head = {"authorization": f"Bearer {KEY}"}
    if api == "chat":
        body: dict[str, Any] = {"messages": messages("Invoice INV-1 over 10 EUR")}
    else:
        body = {"instructions": SYSTEM, "input": "Invoice INV-1 over 10 EUR"}
    if model != "missing":
        body["model"] = model
    path = "/chat/completions" if api == "chat" else "/responses"
    with httpx.Client(base_url=proxy.base_url, headers=head) as h:
        refused = h.post(path, json=body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")
    assert "model" in error["message"]
    assert upstream.calls() == []


def test_a_body_nested_hundreds_of_levels_in_a_field_sent_upstream_is_answered(
    proxy, upstream
) -> None:
    # Every field of a request is checked for plain JSON before it is sent; that check was
    # recursive, so 300-500 levels (readable by json, past Python's stack for a recursive
    # walk) in a message's extra field or a parameter made a plain-text 500.
    head = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    deep = "[" * 450 + "]" * 450
    user = '{"role": "user", "content": "Invoice INV-1 over 10 EUR", "extra": ' + deep + "}"
    system = json.dumps({"role": "system", "content": SYSTEM})
    wide = '{"a": ' * 450 + "1" + "}" * 450
    body = f'{{"model": "gpt-4o", "messages": [{system}, {user}], "metadata_deep": {wide}}}'
    with httpx.Client(base_url=proxy.base_url, headers=head) as h:
        r = h.post("/chat/completions", content=body)
    assert r.status_code == 200, r.text
    sent = upstream.calls()[0]
    assert json.dumps(sent["messages"][1]["extra"]) == deep.replace("][", "], [")
    assert "metadata_deep" in sent


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"$ref": "#"}, "a $ref loops back to itself"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
         "a $ref loops back to itself"),
        ({"type": "object", "properties": {"total": {"$ref": "#/$defs/nope"}}},
         "its $ref '#/$defs/nope' cannot be resolved within the schema"),
        ({"$ref": "http://127.0.0.1:9/schema.json"}, "cannot be resolved within the schema"),
        ({"$ref": "file:///etc/passwd"}, "cannot be resolved within the schema"),
    ],
)  # fmt: skip
def test_a_schema_whose_ref_cannot_be_followed_goes_to_the_requested_model_unvalidated(
    proxy, upstream, schema, why, caplog
) -> None:
    # Such a schema passed the metaschema, so both rungs were paid for and every answer
    # "cannot be checked": x-cascade-ok false. A remote ref is never fetched.
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("Invoice INV-1 over 10 EUR"), response_format=rf
        )
    assert raw.status_code == 200
    assert why in raw.headers["x-cascade-unvalidated"]
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o"]
    assert any("cascade.unvalidated" in r.getMessage() for r in caplog.records)


TOOL = {"type": "function", "function": {"name": "lookup_order", "parameters": {
    "type": "object", "properties": {"number": {"type": "string"}}}}}  # fmt: skip


@pytest.mark.parametrize(
    ("tools", "choice", "why"),
    [
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}], None,
         "tool 'f': its parameters schema is not a valid JSON Schema"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#"}}}], None,
         "tool 'f': its parameters schema is not a valid JSON Schema: invalid JSON schema: a $ref"),
        ([TOOL], {"type": "function", "function": {"name": "drop_db"}},
         "tool_choice names 'drop_db', which is not one of the request's tools"),
    ],
)  # fmt: skip
def test_tools_that_cannot_be_judged_go_to_the_requested_model_unvalidated(
    proxy, upstream, tools, choice, why
) -> None:
    # Each rung failed on the request itself, not on its answer: both were paid for, and
    # the client got x-cascade-ok false with the reason twice.
    extra = {} if choice is None else {"tool_choice": choice}
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("Invoice INV-1 over 10 EUR"), tools=tools, **extra
        )
    assert raw.status_code == 200
    assert why in raw.headers["x-cascade-unvalidated"]
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o"]


@pytest.mark.parametrize("spec", [{"name": "x"}, {"name": "x", "schema": None}])
def test_a_json_schema_format_without_a_schema_demands_json_null_or_missing(
    proxy, upstream, spec
) -> None:
    # The openai SDK types schema as optional; null was read as "check nothing" while a
    # missing key demanded JSON, so prose from the cheap rung was accepted.
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("Invoice INV-1 in prose"),
            response_format={"type": "json_schema", "json_schema": spec},
        )  # fmt: skip
    assert raw.headers["x-cascade-escalated"] == "true"
    assert "the answer is not JSON" in raw.headers["x-cascade-reasons"]
    assert json.loads(raw.parse().choices[0].message.content) == GOOD


def test_an_attempt_with_a_malformed_answer_costs_unknown_not_zero(proxy, upstream) -> None:
    # A 200 whose body is no ChatCompletion may have been billed: its tokens and cost are
    # not known, so neither is the call's; they were shown as 0+0 0.00000000.
    with client(proxy) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages("Invoice INV-1 over 10 EUR, malformed"),
            response_format=SCHEMA_FORMAT,
        )  # fmt: skip
    first, second = raw.headers["x-cascade-attempts"].split(", ")
    assert first == "gpt-4o-mini answer unknown unknown"
    assert second.startswith("gpt-4o answer ") and "unknown" not in second
    assert raw.headers["x-cascade-cost-usd"] == "unknown"
    assert raw.headers["x-cascade-prompt-tokens"] == "unknown"
    summary = json.loads(raw.text)["cascade"]
    assert summary["cost_usd"] is None and summary["prompt_tokens"] is None
    assert summary["attempts"][0]["cost_usd"] is None
    assert summary["attempts"][0]["prompt_tokens"] is None
    assert summary["attempts"][1]["prompt_tokens"] > 0
