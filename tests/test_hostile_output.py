"""Hostile model output and hostile patterns: non-finite numbers never pass a schema, and no
built-in parser or user regex takes more than linear time on text someone else controls.

The inputs below took Python's backtracking ``re`` from 15 s to many minutes; here they take
milliseconds. No time is measured: a guard ends a test that hangs (``hang_guard``), far
above what linear work needs, so that the old quadratic code fails instead of hanging CI.
"""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from pydantic import BaseModel

from cascade.compare import AgreementSpec, agree
from cascade.events import Completion, Request, ToolCall
from cascade.exceptions import PolicyError
from cascade.policy import Policy
from cascade.validators import build_validator
from cascade.validators.confidence import SelfRatedConfidence
from cascade.validators.structure import python_error

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REQUEST = Request(messages=[{"role": "user", "content": "total?"}], params={})
SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"minimum": 0}}}
CATASTROPHIC = r"^(\w+\s?)+$"  # exponential in Python's re on a near miss
NEAR_MISS = "a" * 40 + "!"


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """Fail a test still running after 30 s (the work here takes milliseconds)."""

    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError("still running after 30 s: not linear")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def answer(text: str, **fields: Any) -> Completion:
    return Completion(model="m", text=text, request=fields.pop("request", REQUEST), **fields)


def validator(kind: str, **options: Any) -> Any:
    return build_validator(kind, kind, options, policy_dir=None)


# -- non-finite numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(
    "template",
    ['{{"total": {}}}', 'Here:\n```json\n{{"total": {}}}\n```', 'The answer {{"total": {}}} ok'],
)
def test_a_non_finite_number_never_passes_a_schema(number: str, template: str) -> None:
    verdict = validator("json_schema", schema=SCHEMA)(answer(template.format(number)))
    assert not verdict.passed
    assert "JSON" in verdict.reason or "number" in verdict.reason


@pytest.mark.parametrize("number", ["NaN", "Infinity"])
def test_a_non_finite_number_in_tool_arguments_fails(number: str) -> None:
    tools = {"type": "function", "function": {"name": "pay", "parameters": SCHEMA}}
    request = Request(messages=REQUEST.messages, params={"tools": [tools]})
    call = ToolCall("c1", "pay", f'{{"total": {number}}}')
    verdict = validator("tool_calls")(answer("", tool_calls=(call,), request=request))
    assert not verdict.passed and "not valid JSON" in verdict.reason


def test_a_pydantic_model_refuses_nan_too() -> None:
    v = validator("pydantic", model=f"{__name__}:Total")
    assert not v(answer('{"total": NaN}')).passed
    assert v(answer('{"total": 3}')).passed


class Total(BaseModel):
    total: float


# -- built-in parsers, linear ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "```" + " " * 200_000 + "x",
        "```json" + " \t" * 100_000 + "{",
        "```\n" + "``" + "a" * 200_000,
        "```py\n" * 40_000,
    ],
)
def test_fences_are_found_in_linear_time(text: str) -> None:
    assert not validator("json_schema", schema=SCHEMA)(answer(text)).passed
    assert not validator("structure", valid_json=True)(answer(text)).passed
    assert python_error(text) is not None or python_error(text) is None  # it returns


@pytest.mark.parametrize(
    "text",
    [
        "Paris.\nconfidence" + " " * 50_000,
        " " * 50_000,
        "Paris.\n" + "Confidence: " * 20_000,
        ' ,"_confidence"' * 5_000 + " " * 50_000,
        '{"a": 1' + " " * 50_000 + ', "_confidence" ' + " " * 50_000,
    ],
)
def test_a_self_rating_is_read_in_linear_time(text: str) -> None:
    v = SelfRatedConfidence(source="self_rated", min=0.5)
    assert v.clean(answer(text)).text == text.rstrip() or v.clean(answer(text)).text == text
    assert not v(answer(text)).passed  # no rating found


def test_the_self_rating_is_still_read_and_removed() -> None:
    v = SelfRatedConfidence(source="self_rated", min=0.5)
    for text, rest in [
        ("Paris.\n**Confidence**: 0.9", "Paris."),
        ("Paris.\nconfidence = 80 %\r\nbye", "Paris.\nbye"),
        ('{"a": 1, "_confidence": 0.9}', '{"a":1}'),
        ('See {"a": 1 , "_confidence": 0.9} here', 'See {"a": 1} here'),
        ('See {"_confidence": 0.9, "a": 1} here', 'See {"a": 1} here'),
    ]:
        assert v.clean(answer(text)).text == rest
        assert v(answer(text)).passed


def test_comparing_fenced_answers_is_linear() -> None:
    hostile = "```" + " " * 200_000
    spec = AgreementSpec(comparator="json")
    assert not agree(hostile, '{"a": 1}', spec)
    assert agree('```json\n{"a": 1}\n```', '{"a": 1}', spec)


# -- user regexes: RE2 -------------------------------------------------------------------------


def test_a_policy_match_regex_is_linear() -> None:
    v = validator("structure", match=[CATASTROPHIC])
    assert not v(answer(NEAR_MISS)).passed
    assert v(answer("two words")).passed
    forbid = validator("structure", forbid=[CATASTROPHIC])
    assert forbid(answer(NEAR_MISS)).passed


def test_a_schema_pattern_is_linear() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": CATASTROPHIC}},
        "patternProperties": {r"^(k\w*\s?)+$": {"type": "number"}},
        "additionalProperties": False,
    }
    v = validator("json_schema", schema=schema)
    assert not v(answer(json.dumps({"name": NEAR_MISS}))).passed
    assert not v(answer(json.dumps({"name": "ok", "k" * 40 + "!": 1}))).passed
    assert v(answer(json.dumps({"name": "two words", "key": 1}))).passed


def test_a_schema_pattern_in_the_request_is_linear() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "x",
            "schema": {"type": "object", "properties": {"n": {"pattern": CATASTROPHIC}}},
        },
    }
    request = Request(messages=REQUEST.messages, params={"response_format": fmt})
    from cascade.validators import FromRequest

    verdict = FromRequest()(answer(json.dumps({"n": NEAR_MISS}), request=request))
    assert not verdict.passed and "does not match" in verdict.reason


def _policy(tmp_path: Path, **fields: Any) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"models": ["a", "b"], **fields}))
    return path


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"validators": [{"type": "structure", "match": [r"(a)\1"]}]}, "validators[0].match"),
        ({"validators": [{"type": "structure", "forbid": ["(?=x)"]}]}, "validators[0].forbid"),
        ({"start_at": [{"model": "b", "match": "(?<=a)b"}]}, "start_at[0]"),
        ({"match": {"system": r"(?P<x>a)(?P=x)"}}, "match.system"),
        (
            {
                "validators": [
                    {"type": "json_schema", "schema": {"properties": {"a": {"pattern": "(?!x)"}}}}
                ]
            },
            "validators[0]",
        ),
        (
            {
                "validators": [
                    {"type": "json_schema", "schema": {"patternProperties": {"(?=k)": {}}}}
                ]
            },
            "validators[0]",
        ),
    ],
)
def test_a_pattern_re2_cannot_take_is_a_policy_error(tmp_path, fields, field) -> None:
    path = _policy(tmp_path, **fields)
    with pytest.raises(PolicyError) as e:
        Policy.load(path)
    message = str(e.value)
    assert str(path) in message and field in message
    assert "RE2" in message and "invalid regex" in message
