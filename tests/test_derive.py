"""Validators derived from the request itself: its response_format, tools and tool_choice."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import structlog
import yaml

import cascade
from cascade.events import Completion, Request, ToolCall
from cascade.testing import Reply, ScriptedServer
from cascade.validators import FromRequest, JsonSchema, ToolCalls, request_problem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10 EUR"}]
SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "currency": {"enum": ["EUR", "USD"]}},
    "required": ["total", "currency"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "invoice", "schema": SCHEMA, "strict": True},
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def make(tmp_path: Path, server: ScriptedServer) -> Callable[..., cascade.Cascade]:
    """A Cascade over one policy 't' (no validators unless given)."""

    def factory(**policy: Any) -> cascade.Cascade:
        policy.setdefault("models", ["gpt-4o-mini", "gpt-4o"])
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
        return cascade.Cascade(tmp_path, client=server.client(), store="memory://")

    return factory


def check(text: str = "", *calls: ToolCall, finish: str = "stop", **params: Any) -> Any:
    request = Request(messages=MSGS, params=params)
    completion = Completion("m", text, request, finish_reason=finish, tool_calls=calls)
    return FromRequest()(completion)


# -- response_format ---------------------------------------------------------------------------


def test_an_answer_breaking_the_requests_own_schema_escalates(make, server) -> None:
    server.script("gpt-4o-mini", json.dumps({"total": "ten", "currency": "EUR"}))
    server.script("gpt-4o", json.dumps({"total": 10, "currency": "EUR"}))
    r = make().run("t", MSGS, response_format=RESPONSE_FORMAT)
    assert (r.model, r.escalated, r.ok) == ("gpt-4o", True, True)
    assert r.parsed == {"total": 10, "currency": "EUR"}
    (reason,) = r.reasons
    assert reason.startswith("request: response_format: schema: at $.total")


def test_an_answer_meeting_the_schema_is_accepted_and_parsed(make, server) -> None:
    server.script("gpt-4o-mini", json.dumps({"total": 10, "currency": "USD"}))
    r = make().run("t", MSGS, response_format=RESPONSE_FORMAT)
    assert (r.model, r.escalated, r.parsed) == (
        "gpt-4o-mini",
        False,
        {"total": 10, "currency": "USD"},
    )


def test_derive_false_turns_the_requests_checks_off(make, server) -> None:
    server.script("gpt-4o-mini", "not json at all")
    r = make(derive=False).run("t", MSGS, response_format=RESPONSE_FORMAT)
    assert (r.model, r.escalated) == ("gpt-4o-mini", False)


def test_json_object_needs_a_json_object() -> None:
    assert check('{"a": 1}', response_format={"type": "json_object"}).parsed == {"a": 1}
    v = check("[1, 2]", response_format={"type": "json_object"})
    assert not v.passed and "not an object" in v.reason
    assert not check("Sure! {}", response_format={"type": "json_object"}).passed


def test_truncation_refusal_and_empty_answers_fail_as_structure_defaults_do() -> None:
    assert "truncated" in check("half an ans", finish="length").reason
    assert "refusal" in check("I'm sorry, but I can't help with that.").reason
    assert "empty answer" in check("  ").reason
    assert check("fine").passed


def test_a_policy_structure_validator_replaces_the_derived_one(make, server) -> None:
    server.script("gpt-4o-mini", "")
    r = make(validators=[{"type": "structure", "non_empty": False}]).run("t", MSGS)
    assert not r.escalated


def test_an_invalid_schema_is_not_judged_and_is_reported() -> None:
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}}
    request = Request(messages=MSGS, params={"response_format": broken})
    assert "not a valid JSON Schema" in (request_problem(request) or "")
    assert check("anything", response_format=broken).passed
    assert request_problem(Request(MSGS, {"response_format": RESPONSE_FORMAT})) is None


def test_an_invalid_schema_in_run_is_a_logged_warning_not_an_error(make, server) -> None:
    server.script("gpt-4o-mini", "anything")
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}}
    with structlog.testing.capture_logs() as logs:
        r = make().run("t", MSGS, response_format=broken)
    assert r.model == "gpt-4o-mini"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["cascade.unvalidated"]


# -- tools ---------------------------------------------------------------------------------------


def test_tool_calls_must_name_a_requested_tool_with_valid_arguments() -> None:
    good = ToolCall("c1", "get_weather", '{"city": "Oslo"}')
    assert check("", good, tools=[WEATHER]).passed
    v = check("", ToolCall("c1", "get_wether", "{}"), tools=[WEATHER])
    assert not v.passed and "not one of the request's tools" in v.reason
    v = check("", ToolCall("c1", "get_weather", "{}"), tools=[WEATHER])
    assert not v.passed and "city" in v.reason


def test_tool_choice_required_or_named_needs_that_call() -> None:
    assert "no tool call" in check("Oslo is sunny", tools=[WEATHER], tool_choice="required").reason
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert not check("text", tools=[WEATHER], tool_choice=named).passed
    assert check("text", tools=[WEATHER], tool_choice="auto").passed  # text is an answer too


def test_an_agents_bad_tool_call_escalates_through_the_cascade(make, server) -> None:
    server.script(
        "gpt-4o-mini", Reply(content=None, tool_calls=[{"name": "nope", "arguments": "{}"}])
    )
    server.script(
        "gpt-4o",
        Reply(content=None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]),
    )
    r = make().run("t", MSGS, tools=[WEATHER])
    assert (r.model, r.escalated) == ("gpt-4o", True)


def test_a_required_tool_call_is_only_required_of_turns_that_demand_one() -> None:
    require = ToolCalls(require=True)
    ask = Request(MSGS, {"tools": [WEATHER]})
    after_tool = Request(
        [*MSGS, {"role": "assistant", "content": None, "tool_calls": []},
         {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        {"tools": [WEATHER]},
    )  # fmt: skip
    assert not require(Completion("m", "it is sunny", ask)).passed
    assert require(Completion("m", "It is sunny in Oslo.", after_tool)).passed  # the final turn
    assert require(Completion("m", "hello", Request(MSGS))).passed  # no tools offered
    forced = Request(after_tool.messages, {"tools": [WEATHER], "tool_choice": "required"})
    assert not require(Completion("m", "text", forced)).passed


def test_the_json_schema_validator_reads_tool_call_arguments() -> None:
    # instructor's TOOLS mode: the structured answer is the arguments of a forced tool call.
    v = JsonSchema.model_validate({"schema": WEATHER["function"]["parameters"]})
    request = Request(MSGS, {"tools": [WEATHER]})
    ok = Completion(
        "m", "", request, tool_calls=(ToolCall("c1", "get_weather", '{"city": "Oslo"}'),)
    )
    assert v(ok).passed and v(ok).parsed == {"city": "Oslo"}
    bad = Completion("m", "", request, tool_calls=(ToolCall("c1", "get_weather", '{"town": 1}'),))
    assert not v(bad).passed and "city" in v(bad).reason
