"""structure and tool_calls validators."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from cascade.events import Completion, Request, ToolCall, Verdict
from cascade.validators import Structure, ToolCalls, build_validator, request_problem
from cascade.validators.structure import REFUSAL_PHRASES

REQUEST = Request(messages=[{"role": "user", "content": "Summarise the ticket"}])
WEATHER: dict[str, Any] = {
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
TOOLS_REQUEST = Request(
    messages=REQUEST.messages,
    params={"tools": [WEATHER, {"type": "function", "function": {"name": "now"}}]},
)


def answer(text: str, **fields: Any) -> Completion:
    return Completion(model="m", text=text, request=fields.pop("request", REQUEST), **fields)


def structure(**options: Any) -> Structure:
    v = build_validator("structure", "structure", options, policy_dir=None)
    assert isinstance(v, Structure)
    return v


def check(options: dict[str, Any], text: str, **fields: Any) -> Verdict:
    return structure(**options)(answer(text, **fields))


# --- structure ------------------------------------------------------------------------------


def test_defaults_pass_a_plain_answer_and_score_its_length() -> None:
    verdict = check({}, "The customer wants a refund.")
    assert verdict.passed
    assert verdict.reason == ""
    assert verdict.score == 28.0


@pytest.mark.parametrize(
    ("options", "text", "fields", "reason"),
    [
        ({}, "   \n", {}, "empty answer"),
        ({}, "partial answ", {"finish_reason": "length"}, "truncated (finish_reason=length)"),
        ({}, "I can't", {"refusal": "I must decline."}, "refused: I must decline."),
        ({"min_chars": 20}, "too short", {}, "shorter than 20 characters (9)"),
        ({"max_chars": 5}, "too long by far", {}, "longer than 5 characters (15)"),
        (
            {"match": ["^(billing|technical)$"]},
            "billing!",
            {},
            "does not match '^(billing|technical)$'",
        ),
        (
            {"forbid": ["(?i)as an ai"]},
            "Well, As an AI I think so",
            {},
            "matches forbidden '(?i)as an ai'",
        ),
        ({"required_keys": ["a", "b.c"]}, '{"a": 1, "b": {"d": 2}}', {}, "missing keys: b.c"),
        ({"required_keys": ["a"]}, "[1, 2]", {}, "required keys: the answer's JSON is a list"),
        ({"required_keys": ["a"]}, "prose", {}, "required keys: no JSON found in the answer"),
        ({"valid_json": True}, "see [1]", {}, "no JSON found in the answer"),
        ({"valid_json": True}, '{"a": 1', {}, "invalid JSON: "),
        ({"valid_python": True}, "def f(:\n    pass", {}, "invalid Python: "),
        ({"valid_python": True}, "x = 1\x00", {}, "invalid Python: "),
    ],
)
def test_each_check_fails_with_its_reason(
    options: dict[str, Any], text: str, fields: dict[str, Any], reason: str
) -> None:
    verdict = check(options, text, **fields)
    assert not verdict.passed
    assert verdict.reason.startswith(reason), verdict.reason


@pytest.mark.parametrize(
    ("options", "text", "fields"),
    [
        ({}, "", {"tool_calls": (ToolCall("c1", "now", "{}"),)}),
        ({"non_empty": False, "refusal": False}, "", {}),
        ({"truncation": False}, "partial", {"finish_reason": "length"}),
        ({"refusal": False}, "I'm sorry, but I can't help with that.", {}),
        ({"min_chars": 3, "max_chars": 5}, "abcde", {}),
        ({"match": ["^billing$"], "forbid": ["refund"]}, "billing", {}),
        ({"required_keys": ["a", "b.c"]}, 'Result: {"a": 1, "b": {"c": null}}', {}),
        ({"valid_json": True}, '```json\n{"a": 1}\n```', {}),
        ({"valid_python": True}, "x = 1\nprint(x)", {}),
        ({"valid_python": True}, 'Here:\n```python\nx = "\\d"\n```\nDone.', {}),
    ],
)
def test_passing_answers(options: dict[str, Any], text: str, fields: dict[str, Any]) -> None:
    verdict = check(options, text, **fields)
    assert verdict.passed, verdict.reason


def test_the_reason_names_every_failed_check() -> None:
    verdict = check({"max_chars": 2000}, "x" * 2431, finish_reason="length")
    assert verdict.reason == "truncated (finish_reason=length); longer than 2000 characters (2431)"


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that request.",
        "I\u2019m sorry, but I can\u2019t do this.",
        "  i cannot help with generating that content",
        "AS AN AI LANGUAGE MODEL, I do not have opinions. " + "More words. " * 40,
        "Unfortunately I am unable to summarise this ticket.",
    ],
)
def test_refusals_are_recognised(text: str) -> None:
    verdict = check({}, text)
    assert not verdict.passed
    assert verdict.reason.startswith("refusal (")


def test_a_long_answer_that_only_quotes_a_refusal_phrase_passes() -> None:
    text = "The customer wrote: 'I am unable to log in'. " + "Details follow. " * 30
    assert check({}, text).passed


def test_refusal_phrases_are_lower_case_with_straight_apostrophes() -> None:
    assert all(p == p.lower() and "\u2019" not in p for p in REFUSAL_PHRASES)


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"match": ["(unclosed"]}, ("match",), "invalid regex '(unclosed'"),
        ({"forbid": ["ok", "*bad"]}, ("forbid",), "invalid regex '*bad'"),
        ({"min_chars": -1}, ("min_chars",), "greater than or equal to 0"),
        ({"min_chars": 10, "max_chars": 5}, ("max_chars",), "less than min_chars"),
        ({"required_keys": ["a..b"]}, ("required_keys",), "invalid key 'a..b'"),
        ({"maxchars": 5}, ("maxchars",), "Extra inputs are not permitted"),
    ],
)
def test_bad_options_name_the_field(
    options: dict[str, Any], field: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        structure(**options)
    (error,) = info.value.errors()
    assert error["loc"] == field
    assert message in error["msg"]


# --- tool_calls -----------------------------------------------------------------------------


def tools_check(
    *calls: ToolCall, require: bool = False, request: Request = TOOLS_REQUEST
) -> Verdict:
    v = build_validator("tool_calls", "tool_calls", {"require": require}, policy_dir=None)
    assert isinstance(v, ToolCalls)
    return v(answer("", tool_calls=calls, request=request))


def test_well_formed_tool_calls_pass() -> None:
    verdict = tools_check(
        ToolCall("c1", "get_weather", json.dumps({"city": "Paris"})), ToolCall("c2", "now", "{}")
    )
    assert verdict.passed
    assert verdict.score == 2.0


def test_no_tool_call_passes_unless_required() -> None:
    assert tools_check().passed
    verdict = tools_check(require=True)
    assert not verdict.passed
    assert verdict.reason == "no tool call in the answer"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (
            ToolCall("c1", "get_wether", "{}"),
            "tool 'get_wether' is not one of the request's tools (get_weather, now)",
        ),
        (
            ToolCall("c1", "get_weather", '{"city": '),
            "tool 'get_weather': arguments are not valid JSON (Expecting value: line 1 column 10"
            " (char 9))",
        ),
        (
            ToolCall("c1", "get_weather", '{"city": 75001}'),
            "tool 'get_weather': arguments at $.city: 75001 is not of type 'string'",
        ),
        (
            ToolCall("c1", "get_weather", "{}"),
            "tool 'get_weather': arguments at $: 'city' is a required property",
        ),
    ],
)
def test_bad_tool_calls_are_named(call: ToolCall, reason: str) -> None:
    verdict = tools_check(call)
    assert not verdict.passed
    assert verdict.reason == reason


def test_every_bad_call_is_reported() -> None:
    verdict = tools_check(ToolCall("c1", "a", "{}"), ToolCall("c2", "get_weather", "nope"))
    assert verdict.reason.count("tool ") == 2
    assert "; " in verdict.reason


def test_a_request_without_tools_says_so() -> None:
    verdict = tools_check(ToolCall("c1", "get_weather", "{}"), request=REQUEST)
    assert verdict.reason.endswith("(the request declares no tools)")


def test_an_invalid_parameters_schema_is_the_requests_problem_not_the_answers() -> None:
    # Every rung's answer failed on it: the request is sent unvalidated instead, and says why.
    broken = {"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}
    request = Request(messages=REQUEST.messages, params={"tools": [broken]})
    assert tools_check(ToolCall("c1", "f", "{}"), request=request).passed
    assert "not valid JSON" in tools_check(ToolCall("c1", "f", "{"), request=request).reason
    problem = request_problem(request)
    assert problem is not None
    assert problem.startswith("tool 'f': its parameters schema is not a valid JSON Schema")


def test_compiled_parameter_schemas_are_reused() -> None:
    from cascade.validators._compiled import cached_schema

    tools_check(ToolCall("c1", "get_weather", '{"city": "Oslo"}'))
    compiled = cached_schema(WEATHER["function"]["parameters"])
    tools_check(ToolCall("c1", "get_weather", '{"city": "Rome"}'))
    # The same schema, written in another key order, is the same compiled validator.
    reordered = dict(reversed(list(WEATHER["function"]["parameters"].items())))
    assert cached_schema(reordered) is compiled
