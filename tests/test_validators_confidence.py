"""The confidence validator: logprobs, self_rated, verify, and their hooks."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from cascade.events import Completion, Request, TokenLogprob, ToolCall
from cascade.validators import (
    Confidence,
    LogprobConfidence,
    SelfRatedConfidence,
    VerifyConfidence,
    build_validator,
)
from cascade.validators.confidence import CONFIDENCE_KEY, NO_LOGPROBS, VERIFY_PROMPT

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
REQUEST = Request(messages=MESSAGES, params={"temperature": 0})


def answer(text: str, **fields: Any) -> Completion:
    return Completion(model="m", text=text, request=fields.pop("request", REQUEST), **fields)


def confidence(**options: Any) -> Any:
    return build_validator("confidence", "confidence", options, policy_dir=None)


def tokens(*pairs: tuple[str, float]) -> tuple[TokenLogprob, ...]:
    return tuple(TokenLogprob(t, lp) for t, lp in pairs)


# --- one policy type, a class per source ----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "cls", "hooks"),
    [
        ("logprobs", LogprobConfidence, {"prepare"}),
        ("self_rated", SelfRatedConfidence, {"prepare", "clean"}),
        ("verify", VerifyConfidence, {"follow_up", "judge"}),
    ],
)
def test_each_source_gets_only_its_hooks(source: str, cls: type, hooks: set[str]) -> None:
    built = confidence(source=source, min=0.5)
    direct = Confidence(source=source, min=0.5)  # type: ignore[arg-type]
    for v in (built, direct, Confidence.model_validate({"source": source, "min": 0.5})):
        assert type(v) is cls
        assert isinstance(v, Confidence)
        present = {h for h in ("prepare", "clean", "follow_up", "judge") if hasattr(v, h)}
        assert present == hooks


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"source": "logprobs", "min": 1.5}, ("min",), "less than or equal to 1"),
        ({"source": "logprobs", "min": -0.1}, ("min",), "greater than or equal to 0"),
        ({"source": "logprobs"}, ("min",), "Field required"),
        ({"source": "vibes", "min": 0.5}, ("source",), "'logprobs', 'self_rated' or 'verify'"),
        ({"source": "self_rated", "min": 0.5, "aggregate": "min"}, ("aggregate",), "logprobs only"),
        ({"source": "verify", "min": 0.5, "aggregate": "mean"}, ("aggregate",), "logprobs only"),
        ({"source": "logprobs", "min": 0.5, "aggregate": "max"}, ("aggregate",), "'mean' or 'min'"),
        ({"source": "logprobs", "min": 0.5, "threshold": 1}, ("threshold",), "Extra inputs"),
    ],
)
def test_bad_options_name_the_field(
    options: dict[str, Any], field: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        confidence(**options)
    (error,) = info.value.errors()
    assert error["loc"] == field
    assert message in error["msg"]


# --- logprobs -------------------------------------------------------------------------------


def test_logprobs_prepare_asks_for_logprobs_without_touching_the_request() -> None:
    v = confidence(source="logprobs", min=0.8)
    prepared = v.prepare(REQUEST)
    assert prepared.params == {"temperature": 0, "logprobs": True}
    assert REQUEST.params == {"temperature": 0}
    assert v.prepare(prepared) is prepared


def test_mean_is_the_geometric_mean_of_token_probabilities() -> None:
    v = confidence(source="logprobs", min=0.5)
    logprobs = tokens(("Paris", math.log(0.9)), (" ", math.log(0.01)), (".", math.log(0.4)))
    verdict = v(answer("Paris .", logprobs=logprobs))
    assert verdict.passed
    assert verdict.score == pytest.approx(math.sqrt(0.9 * 0.4))


def test_mean_below_min_fails_with_the_numbers() -> None:
    v = confidence(source="logprobs", min=0.8)
    verdict = v(answer("AB", logprobs=tokens(("A", math.log(0.5)), ("B", math.log(0.8)))))
    assert not verdict.passed
    assert verdict.score == pytest.approx(math.sqrt(0.4))
    assert verdict.reason == "confidence 0.63 < 0.8 (logprobs, mean over 2 tokens)"


@pytest.mark.parametrize(
    ("p", "threshold", "shown"),
    [(0.9953, 0.999999, "confidence 0.995 < 0.999999"),
     (0.9999991, 0.9999995, "confidence 0.999999 < 0.9999995"),
     (0.62, 0.8, "confidence 0.62 < 0.8")],
)  # fmt: skip
def test_the_reason_shows_enough_digits_to_differ(p: float, threshold: float, shown: str) -> None:
    v = confidence(source="logprobs", min=threshold)
    verdict = v(answer("A", logprobs=tokens(("A", math.log(p)))))
    assert not verdict.passed
    assert verdict.reason.startswith(shown + " (")


def test_min_aggregate_is_the_least_probable_token() -> None:
    v = confidence(source="logprobs", min=0.9, aggregate="min")
    logprobs = tokens(("bill", math.log(0.99)), ("ing", math.log(0.6)))
    verdict = v(answer("billing", logprobs=logprobs))
    assert not verdict.passed
    assert verdict.score == pytest.approx(0.6)
    assert verdict.reason == "confidence 0.60 < 0.9 (logprobs, min over 2 tokens: 'ing')"
    assert confidence(source="logprobs", min=0.5, aggregate="min")(
        answer("billing", logprobs=logprobs)
    ).passed


@pytest.mark.parametrize(
    ("logprobs", "reason"),
    [
        (None, NO_LOGPROBS),
        ((), "no answer tokens with logprobs"),
        (tokens((" ", -0.1), ("\n", -0.2)), "no answer tokens with logprobs"),
        (tokens(("A", float("nan"))), "logprob of token 'A' is NaN"),
    ],
)
def test_missing_or_unusable_logprobs_fail(logprobs: Any, reason: str) -> None:
    verdict = confidence(source="logprobs", min=0.1)(answer("A", logprobs=logprobs))
    assert not verdict.passed
    assert verdict.reason == reason


def test_extreme_logprobs_give_a_bounded_score() -> None:
    v = confidence(source="logprobs", min=0.5)
    assert v(answer("A", logprobs=tokens(("A", float("-inf"))))).score == 0.0
    assert v(answer("A", logprobs=tokens(("A", 1e308), ("B", 1e308)))).score == 1.0
    assert v(answer("A", logprobs=tokens(("A", -1e308), ("B", -1e308)))).score == 0.0


# --- self_rated -----------------------------------------------------------------------------


def self_rated(min: float = 0.7) -> SelfRatedConfidence:
    v = confidence(source="self_rated", min=min)
    assert isinstance(v, SelfRatedConfidence)
    return v


def test_prose_request_gets_a_system_message_asking_for_a_rating_line() -> None:
    prepared = self_rated().prepare(REQUEST)
    assert prepared.messages[:-1] == MESSAGES
    assert len(REQUEST.messages) == 1
    assert prepared.messages[-1]["role"] == "system"
    assert "Confidence: <number between 0 and 1>" in prepared.messages[-1]["content"]


def test_json_object_request_is_asked_for_a_confidence_key() -> None:
    request = Request(messages=MESSAGES, params={"response_format": {"type": "json_object"}})
    prepared = self_rated().prepare(request)
    assert prepared.params == request.params
    assert f'"{CONFIDENCE_KEY}"' in prepared.messages[-1]["content"]


@pytest.mark.parametrize(
    ("schema", "strict", "required"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, False, None),
        (
            {"type": "object", "properties": {"a": {}}, "required": ["a"]},
            False,
            ["a", "_confidence"],
        ),
        ({"type": "object", "properties": {"a": {}}}, True, ["_confidence"]),
    ],
)
def test_json_schema_request_gets_a_confidence_property_in_a_copy(
    schema: dict[str, Any], strict: bool, required: list[str] | None
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "strict": strict, "schema": schema}}
    before = copy.deepcopy(fmt)
    request = Request(messages=MESSAGES, params={"response_format": fmt})
    prepared = self_rated().prepare(request)
    assert fmt == before  # the caller's dicts are untouched
    new = prepared.params["response_format"]["json_schema"]["schema"]
    assert new["properties"]["_confidence"]["type"] == "number"
    assert new["properties"]["a"] == schema["properties"]["a"]
    assert new.get("required") == required
    assert prepared.messages == request.messages


@pytest.mark.parametrize(
    ("text", "score", "cleaned"),
    [
        ("Paris is the capital.\nConfidence: 0.9", 0.9, "Paris is the capital."),
        ("Paris.\n**Confidence:** 85%\n\n", 0.85, "Paris."),
        ("Paris.\nconfidence = .75", 0.75, "Paris."),
        (
            "Confidence: 0.1 in the question\nParis.\nConfidence: 1",
            1.0,
            "Confidence: 0.1 in the question\nParis.",
        ),
        ("Paris.\nConfidence: 0.8\nThat is all.", 0.8, "Paris.\nThat is all."),
        ('{"city": "Paris", "_confidence": 0.95}', 0.95, '{"city":"Paris"}'),
        ('  {"_confidence": "0.9", "a": "é"}\n', 0.9, '{"a":"é"}'),
        ('Here:\n```json\n{"a": 1, "_confidence": 0.9}\n```', 0.9, 'Here:\n```json\n{"a": 1}\n```'),
        ('Here: {"_confidence": 0.9, "a": 1}', 0.9, 'Here: {"a": 1}'),
    ],
)
def test_the_rating_is_read_and_cleaned_away(text: str, score: float, cleaned: str) -> None:
    v = self_rated(min=0.7)
    completion = answer(text)
    verdict = v(completion)
    assert verdict.passed
    assert verdict.score == pytest.approx(score)
    assert v.clean(completion).text == cleaned
    assert completion.text == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Paris.", "no self-rated confidence in the answer"),
        ("Paris.\nConfidence: high", "no self-rated confidence in the answer"),
        ("Paris.\nConfidence: 1.5", "self-rated confidence 1.5 is not between 0 and 1"),
        ("Paris.\nConfidence: 150%", "self-rated confidence 1.5 is not between 0 and 1"),
        ('{"a": 1, "_confidence": "high"}', "self-rated confidence 'high' is not a number"),
        ('{"a": 1, "_confidence": true}', "self-rated confidence 'true' is not a number"),
        ("Paris.\nConfidence: 0.4", "confidence 0.40 < 0.7 (self-rated)"),
    ],
)
def test_missing_or_low_ratings_fail(text: str, reason: str) -> None:
    verdict = self_rated(min=0.7)(answer(text))
    assert not verdict.passed
    assert verdict.reason == reason


def test_clean_leaves_an_unrated_answer_alone() -> None:
    completion = answer("Paris.")
    assert self_rated().clean(completion) is completion


def test_an_unreadable_rating_is_still_cleaned_away() -> None:
    cleaned = self_rated().clean(answer('{"a": 1, "_confidence": "high"}'))
    assert json.loads(cleaned.text) == {"a": 1}


# --- verify ---------------------------------------------------------------------------------


def verify(min: float = 0.5) -> VerifyConfidence:
    v = confidence(source="verify", min=min)
    assert isinstance(v, VerifyConfidence)
    return v


def reply(text: str, first: tuple[str, float] | None = None, *top: tuple[str, float]) -> Completion:
    logprobs = None if first is None else (TokenLogprob(first[0], first[1], tuple(top)),)
    return answer(text, logprobs=logprobs)


def test_follow_up_asks_the_same_conversation_whether_the_answer_is_correct() -> None:
    original = Request(
        messages=MESSAGES,
        params={
            "tools": [{"type": "function"}],
            "response_format": {"type": "json_object"},
            "stream": False,
        },
    )
    follow = verify().follow_up(answer("Paris", request=original))
    assert follow.messages == [
        *MESSAGES,
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": VERIFY_PROMPT},
    ]
    assert dict(follow.params) == {
        "logprobs": True,
        "top_logprobs": 5,
        "max_tokens": 1,
        "temperature": 0,
    }
    assert "correct" in VERIFY_PROMPT
    assert '"Yes" or "No"' in VERIFY_PROMPT


def test_follow_up_shows_tool_calls_as_text() -> None:
    completion = answer("", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Paris"}'),))
    follow = verify().follow_up(completion)
    assert follow.messages[-2]["content"] == 'get_weather({"city": "Paris"})'


def test_p_yes_sums_the_distinct_yes_tokens() -> None:
    r = reply(
        "Yes",
        ("Yes", math.log(0.6)),
        ("Yes", math.log(0.6)),
        (" yes", math.log(0.1)),
        ("No", math.log(0.3)),
    )
    verdict = verify(min=0.5).judge(answer("Paris"), r)
    assert verdict.passed
    assert verdict.score == pytest.approx(0.7)


def test_the_single_letter_y_counts_as_yes() -> None:
    verdict = verify(min=0.8).judge(answer("Paris"), reply("Y", ("Y", -0.05)))
    assert verdict.passed
    assert verdict.score == pytest.approx(math.exp(-0.05))


def test_a_no_fails_with_the_probability() -> None:
    r = reply("No", ("No", math.log(0.7)), ("No", math.log(0.7)), ("Yes", math.log(0.2)))
    verdict = verify(min=0.5).judge(answer("Paris"), r)
    assert not verdict.passed
    assert verdict.score == pytest.approx(0.2)
    assert verdict.reason == "confidence 0.20 < 0.5 (verify, P(yes) of the reply 'No')"


@pytest.mark.parametrize(
    ("text", "score"), [("Yes.", 1.0), ("y", 1.0), ("No", 0.0), ("Yeah", 0.0), ("", 0.0)]
)
def test_without_logprobs_the_reply_text_decides(text: str, score: float) -> None:
    verdict = verify(min=0.5).judge(answer("Paris"), reply(text))
    assert verdict.score == score
    assert verdict.passed is (score == 1.0)
    if not verdict.passed:
        assert "the reply had no logprobs" in verdict.reason


def test_p_yes_is_bounded_even_with_nonsense_logprobs() -> None:
    r = reply("Yes", ("Yes", 50.0), ("yes", 3.0), ("y", float("nan")))
    assert verify().judge(answer("Paris"), r).score == 1.0


def test_calling_verify_directly_says_it_needs_a_follow_up() -> None:
    verdict = verify()(answer("Paris"))
    assert not verdict.passed
    assert "follow-up call" in verdict.reason
