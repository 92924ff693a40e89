"""Property-based: whatever a model sends back, every built-in validator answers a Verdict."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.events import Completion, Request, TokenLogprob, ToolCall, Verdict
from cascade.validators import build_validator
from cascade.validators._json import extract_json

FAST = settings(max_examples=200, deadline=None)

SCHEMA = {
    "type": "object",
    "required": ["a"],
    "properties": {"a": {"type": "number"}, "b": {"type": "array", "items": {"type": "string"}}},
}
OPTION_SETS: list[tuple[str, dict[str, Any]]] = [
    ("json_schema", {"schema": SCHEMA}),
    (
        "json_schema",
        {
            "schema": {
                "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
                "$ref": "#/$defs/n",
            }
        },
    ),  # recursive: a linked list
    ("pydantic", {"model": "cascade.policy:PriceSpec"}),
    ("structure", {}),
    (
        "structure",
        {
            "non_empty": False,
            "min_chars": 3,
            "max_chars": 50,
            "required_keys": ["a", "b.c"],
            "match": [r"\d"],
            "forbid": ["(?i)sorry"],
            "valid_json": True,
            "valid_python": True,
        },
    ),
    ("tool_calls", {}),
    ("tool_calls", {"require": True}),
    ("confidence", {"source": "logprobs", "min": 0.5}),
    ("confidence", {"source": "logprobs", "min": 0.9, "aggregate": "min"}),
    ("confidence", {"source": "self_rated", "min": 0.7}),
    ("confidence", {"source": "verify", "min": 0.5}),
]
VALIDATORS: list[Any] = [
    build_validator(f"v{i}", k, o, policy_dir=None) for i, (k, o) in enumerate(OPTION_SETS)
]
VERIFY = VALIDATORS[-1]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
fragments = st.one_of(
    st.text(max_size=40),
    json_values.map(json.dumps),
    st.sampled_from(
        [
            "```json\n",
            "```python\n",
            "```\n",
            "{",
            "}",
            "[",
            "]",
            '"',
            ",",
            ":",
            "\n",
            "Confidence: 0.8",
            "\nconfidence = 85%",
            "**Confidence:** .3",
            '"_confidence": 2',
            '"_confidence": 0.9,',
            "I'm sorry, but I can't",
            "As an AI language model",
            "def f(:",
            "x = 1",
            "NaN",
            "Infinity",
            "[[[[[[",
            "\x00",
            "\u2019",
        ]
    ),
)
texts = st.lists(fragments, max_size=8).map("".join)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [float("-inf"), float("nan"), 1e308, -1e308, 0.0, -0.0]
)
token_logprobs = st.builds(
    TokenLogprob,
    token=st.text(max_size=6) | st.sampled_from(["Yes", "Y", " yes", "No", " ", ""]),
    logprob=floats,
    top=st.lists(
        st.tuples(st.sampled_from(["Yes", "y", "No", "n", " "]) | st.text(max_size=4), floats),
        max_size=5,
    ).map(tuple),
)
tool_calls = st.builds(
    ToolCall,
    id=st.text(max_size=5),
    name=st.sampled_from(["get_weather", "now", "broken"]) | st.text(max_size=8),
    arguments=texts | json_values.map(json.dumps),
)
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "now"}},
    {"type": "function", "function": {"name": "broken", "parameters": {"type": 7}}},
    {"type": "custom"},
    "not even a mapping",
]
requests = st.builds(
    Request,
    messages=st.just([{"role": "user", "content": "q"}]),
    params=st.fixed_dictionaries(
        {},
        optional={
            "tools": st.just(tools),
            "response_format": st.sampled_from(
                [
                    {"type": "json_object"},
                    {"type": "text"},
                    {
                        "type": "json_schema",
                        "json_schema": {"name": "x", "schema": SCHEMA, "strict": True},
                    },
                    {
                        "type": "json_schema",
                        "json_schema": {"name": "x", "schema": {"type": "array"}},
                    },
                    {"type": "json_schema", "json_schema": "nonsense"},
                    {"type": "json_schema"},
                ]
            ),
            "logprobs": st.booleans(),
        },
    ),
)
completions = st.builds(
    Completion,
    model=st.just("m"),
    text=texts,
    request=requests,
    finish_reason=st.sampled_from(["stop", "length", "tool_calls", "content_filter", None]),
    tool_calls=st.lists(tool_calls, max_size=3).map(tuple),
    logprobs=st.none() | st.lists(token_logprobs, max_size=6).map(tuple),
    refusal=st.none() | st.text(max_size=10),
)


def assert_sound(verdict: Verdict, name: str) -> None:
    assert isinstance(verdict, Verdict)
    assert verdict.validator == name
    assert isinstance(verdict.passed, bool)
    assert isinstance(verdict.reason, str)
    assert verdict.passed or verdict.reason  # a failure always says why
    assert verdict.score is None or isinstance(verdict.score, float)


@FAST
@given(completions)
def test_every_validator_returns_a_verdict_and_never_raises(completion: Completion) -> None:
    for i, v in enumerate(VALIDATORS):
        assert_sound(v(completion), f"v{i}")
        if hasattr(v, "prepare"):
            assert isinstance(v.prepare(completion.request), Request)
        if hasattr(v, "clean"):
            cleaned = v.clean(completion)
            assert isinstance(cleaned, Completion)
            assert cleaned.request is completion.request
        if hasattr(v, "follow_up"):
            assert isinstance(v.follow_up(completion), Request)


@FAST
@given(completions, completions)
def test_verify_judges_any_reply(completion: Completion, reply: Completion) -> None:
    verdict = VERIFY.judge(completion, reply)
    assert_sound(verdict, VERIFY.name)
    assert verdict.score is not None
    assert 0.0 <= verdict.score <= 1.0


@FAST
@given(completions)
def test_confidence_scores_stay_in_the_unit_interval(completion: Completion) -> None:
    for v in VALIDATORS[7:10]:
        score = v(completion).score
        assert score is None or 0.0 <= score <= 1.0


@FAST
@given(json_values, st.sampled_from(["{}", "", "  \n", "Here you go:\n```json\n{}\n```"]))
def test_extracted_json_round_trips(value: Any, wrapper: str) -> None:
    text = json.dumps(value)
    if wrapper == "{}":
        wrapped = text
    elif "```" in wrapper:
        wrapped = wrapper.replace("{}", text)
    else:
        wrapped = wrapper + text + wrapper
    assert extract_json(wrapped) == value


@FAST
@given(
    st.text(max_size=80).filter(lambda t: "confidence" not in t.lower() and "_confidence" not in t),
    st.floats(min_value=0, max_value=1),
)
def test_a_rating_line_is_read_and_removed(prose: str, rating: float) -> None:
    rated = VALIDATORS[9]
    completion = Completion(
        model="m", text=f"{prose}\nConfidence: {rating:.3f}", request=Request(messages=[])
    )
    verdict = rated(completion)
    assert verdict.score is not None
    assert math.isclose(verdict.score, round(rating, 3))
    assert rated.clean(completion).text == prose.rstrip()
