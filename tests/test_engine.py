"""The engine driven directly: Completion and Failure values sent into ``_engine.run``.

No HTTP and no driver: each test steps the generator, checks the ``Call`` it yields, and sends
back the reply a model would have given (httpx's ``test_auth.py`` is the model).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from decimal import Decimal
from typing import Any

import pytest

from cascade import _engine
from cascade.events import Completion, Failure, Request, Result, TokenLogprob
from cascade.exceptions import EscalationExhausted, PolicyError, ProviderError
from cascade.policy import Policy

SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}
REQUEST = Request(messages=[{"role": "user", "content": "Invoice INV-1, total 10"}])


def policy(**fields: Any) -> Policy:
    data: dict[str, Any] = {
        "models": ["gpt-4o-mini", "gpt-4o"],
        "validators": [{"type": "json_schema", "schema": SCHEMA}],
    }
    data.update(fields)
    return Policy.from_dict(data, task="t")


def answer(call: _engine.Call, text: str, **fields: Any) -> Completion:
    fields.setdefault("prompt_tokens", 100)
    fields.setdefault("completion_tokens", 10)
    return Completion(model=call.model, text=text, request=call.request, **fields)


def start(flow: Generator[_engine.Call, _engine.Reply, Any]) -> _engine.Call:
    return next(flow)


def finish(flow: Generator[_engine.Call, _engine.Reply, Any], reply: _engine.Reply) -> Any:
    """Send the last reply; the flow must end with its return value."""
    with pytest.raises(StopIteration) as done:
        flow.send(reply)
    return done.value.value


def test_a_passing_cheap_answer_is_accepted_without_calling_the_strong_model() -> None:
    flow = _engine.run(policy(), REQUEST)
    try:
        call = start(flow)
        assert (call.model, call.purpose, call.request) == ("gpt-4o-mini", "answer", REQUEST)
        result: Result = finish(flow, answer(call, '{"total": 10}'))
    finally:
        flow.close()
    assert result.model == "gpt-4o-mini" and result.ok and not result.escalated
    assert result.parsed == {"total": 10}
    assert result.cost_usd == pytest.approx((100 * 0.15 + 10 * 0.6) / 1e6)
    assert result.baseline_cost_usd == pytest.approx((100 * 2.5 + 10 * 10) / 1e6)


def test_a_failed_check_escalates_with_the_verdict_as_the_reason() -> None:
    flow = _engine.run(policy(), REQUEST)
    try:
        cheap = start(flow)
        strong = flow.send(answer(cheap, "not json"))
        assert (strong.model, strong.purpose, strong.request) == ("gpt-4o", "answer", REQUEST)
        result: Result = finish(flow, answer(strong, '{"total": 10}'))
    finally:
        flow.close()
    assert result.model == "gpt-4o" and result.escalated and result.ok
    assert [a.model for a in result.attempts] == ["gpt-4o-mini", "gpt-4o"]
    assert result.reasons[0].startswith("json_schema: ")
    assert result.attempts[0].reasons == list(result.reasons)


def test_retries_re_ask_the_same_model_quoting_the_failed_checks() -> None:
    flow = _engine.run(policy(retries=1), REQUEST)
    try:
        first = start(flow)
        again = flow.send(answer(first, "not json"))
        assert (again.model, again.purpose) == ("gpt-4o-mini", "reask")
        *_, said, asked = again.request.messages
        assert said == {"role": "assistant", "content": "not json"}
        assert (
            "json_schema: " in asked["content"] and "did not pass these checks" in asked["content"]
        )
        result: Result = finish(flow, answer(again, '{"total": 3}'))
    finally:
        flow.close()
    assert result.model == "gpt-4o-mini" and not result.escalated
    assert [a.purpose for a in result.attempts] == ["answer", "reask"]


def test_a_provider_failure_escalates_without_a_re_ask() -> None:
    flow = _engine.run(policy(retries=2), REQUEST)
    try:
        start(flow)
        strong = flow.send(Failure("gpt-4o-mini", "rate_limited", "slow down", 429))
        assert (strong.model, strong.purpose) == ("gpt-4o", "answer")
        result: Result = finish(flow, answer(strong, '{"total": 1}'))
    finally:
        flow.close()
    assert result.attempts[0].error == "rate_limited 429: slow down"
    assert result.attempts[0].cost_usd == 0.0 and result.escalated


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_fatal_status_raises_at_once(status: int) -> None:
    flow = _engine.run(policy(), REQUEST)
    try:
        start(flow)
        with pytest.raises(ProviderError) as raised:
            flow.send(Failure("gpt-4o-mini", "client_error", "no", status))
    finally:
        flow.close()
    assert raised.value.status == status and raised.value.model == "gpt-4o-mini"


def test_an_escalate_status_escalates_below_the_strongest_and_raises_on_it() -> None:
    ladder = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]
    flow = _engine.run(policy(escalate_status=[400], models=ladder), REQUEST)
    try:
        start(flow)
        middle = flow.send(Failure("gpt-4o-mini", "client_error", "no reasoning_effort", 400))
        assert middle.model == "gpt-4.1-mini"  # 400 is in fatal_status: escalate_status wins
        strong = flow.send(Failure("gpt-4.1-mini", "client_error", "nor here", 400))
        assert strong.model == "gpt-4o"
        with pytest.raises(ProviderError) as raised:
            flow.send(Failure("gpt-4o", "client_error", "bad temperature", 400))
    finally:
        flow.close()
    assert (raised.value.status, raised.value.model) == (400, "gpt-4o")


def test_an_escalate_status_escalates_on_the_cheap_rung_of_a_shadow_run() -> None:
    shadow = _engine.shadow(policy(mode="observe", escalate_status=[400]), REQUEST)
    try:
        start(shadow)
        outcome = finish(shadow, Failure("gpt-4o-mini", "client_error", "no such param", 400))
    finally:
        shadow.close()
    assert outcome.attempts[0].error == "client_error 400: no such param"  # its own failure


def test_escalate_status_does_not_make_a_status_fatal() -> None:
    flow = _engine.run(policy(fatal_status=[401], escalate_status=[400]), REQUEST)
    try:
        start(flow)
        strong = flow.send(Failure("gpt-4o-mini", "client_error", "no", 400))
        assert strong.model == "gpt-4o"
        with pytest.raises(EscalationExhausted) as raised:  # no answer: nothing to return
            flow.send(Failure("gpt-4o", "client_error", "no", 400))
    finally:
        flow.close()
    assert raised.value.failure is not None and raised.value.failure.status == 400


def test_every_rung_failing_returns_the_last_answer_not_ok() -> None:
    flow = _engine.run(policy(), REQUEST)
    try:
        strong = flow.send(answer(start(flow), "nope"))
        result: Result = finish(flow, answer(strong, "still not json"))
    finally:
        flow.close()
    assert not result.ok and result.model == "gpt-4o" and result.output == "still not json"


def test_on_exhausted_raise_carries_the_attempts_and_the_result() -> None:
    flow = _engine.run(policy(on_exhausted="raise"), REQUEST)
    try:
        strong = flow.send(answer(start(flow), "nope"))
        with pytest.raises(EscalationExhausted) as raised:
            flow.send(answer(strong, "nope"))
    finally:
        flow.close()
    assert [a.model for a in raised.value.attempts] == ["gpt-4o-mini", "gpt-4o"]
    assert raised.value.result is not None and not raised.value.result.ok


def test_no_model_answering_raises_with_the_unanswered_call_to_record() -> None:
    flow = _engine.run(policy(), REQUEST)
    try:
        start(flow)
        strong = flow.send(Failure("gpt-4o-mini", "timeout", "Request timed out."))
        with pytest.raises(EscalationExhausted) as raised:
            flow.send(Failure(strong.model, "server_error", "boom", 502))
    finally:
        flow.close()
    unanswered = raised.value.unanswered
    assert raised.value.result is None and unanswered is not None
    assert not unanswered.ok and unanswered.output == "" and len(unanswered.attempts) == 2


def test_max_attempts_stops_the_climb() -> None:
    flow = _engine.run(policy(models=["a", "b", "c"], max_attempts=2, prices=_PRICES), REQUEST)
    try:
        second = flow.send(answer(start(flow), "x"))
        assert second.model == "b"
        result: Result = finish(flow, answer(second, "y"))
    finally:
        flow.close()
    assert [a.model for a in result.attempts] == ["a", "b"] and not result.ok


def test_max_cost_stops_the_climb_once_spent() -> None:
    p = policy(models=["a", "b", "c"], max_cost_usd=0.0005, prices=_PRICES)
    flow = _engine.run(p, REQUEST)
    try:
        # 1,000 prompt tokens at $1 per million: $0.001, over the $0.0005 budget.
        result: Result = finish(flow, answer(start(flow), "x", prompt_tokens=1000))
    finally:
        flow.close()
    assert [a.model for a in result.attempts] == ["a"]


_PRICES = {m: {"input": 1.0, "output": 1.0} for m in ("a", "b", "c")}


def test_verification_runs_after_the_other_checks_and_only_below_the_strongest() -> None:
    p = policy(
        validators=[
            {"type": "json_schema", "schema": SCHEMA},
            {"type": "confidence", "source": "verify", "min": 0.9},
        ]
    )
    flow = _engine.run(p, REQUEST)
    try:
        cheap = start(flow)
        verify = flow.send(answer(cheap, '{"total": 10}'))
        assert (verify.model, verify.purpose) == ("gpt-4o-mini", "verify")
        assert verify.request.messages[-2] == {"role": "assistant", "content": '{"total": 10}'}
        unsure = answer(verify, "N", logprobs=(TokenLogprob("N", -0.05, (("Y", -3.0),)),))
        strong = flow.send(unsure)
        assert (strong.model, strong.purpose) == ("gpt-4o", "answer")  # no verify on gpt-4o
        result: Result = finish(flow, answer(strong, '{"total": 10}'))
    finally:
        flow.close()
    assert [a.purpose for a in result.attempts] == ["answer", "verify", "answer"]
    assert result.escalated and result.attempts[1].cost_usd is not None


def test_a_rejected_answer_is_never_verified() -> None:
    p = policy(
        validators=[
            {"type": "json_schema", "schema": SCHEMA},
            {"type": "confidence", "source": "verify", "min": 0.9},
        ]
    )
    flow = _engine.run(p, REQUEST)
    try:
        strong = flow.send(answer(start(flow), "not json"))
        assert (strong.model, strong.purpose) == ("gpt-4o", "answer")
    finally:
        flow.close()


def test_a_failed_verification_call_is_a_failed_verdict() -> None:
    p = policy(validators=[{"type": "confidence", "source": "verify", "min": 0.9}])
    flow = _engine.run(p, REQUEST)
    try:
        verify = flow.send(answer(start(flow), "fine"))
        strong = flow.send(Failure(verify.model, "timeout", "Request timed out."))
        assert strong.model == "gpt-4o"
        result: Result = finish(flow, answer(strong, "fine"))
    finally:
        flow.close()
    assert "verification call failed: timeout" in result.reasons[0]


@pytest.mark.parametrize(("mode", "models"), [("strong", ["gpt-4o"]), ("cheap", ["gpt-4o-mini"])])
def test_the_mode_chooses_the_ladder(mode: str, models: list[str]) -> None:
    flow = _engine.run(policy(mode=mode), REQUEST)
    try:
        call = start(flow)
        assert call.model == models[0]
        result: Result = finish(flow, answer(call, "not json"))
    finally:
        flow.close()
    assert [a.model for a in result.attempts] == models and not result.ok


def test_observation_combines_the_strong_answer_with_the_shadow_run() -> None:
    p = policy(mode="observe")
    strong_flow = _engine.run(p, REQUEST)
    shadow = _engine.shadow(p, REQUEST)
    try:
        call = start(strong_flow)
        assert call.model == "gpt-4o"
        strong: Result = finish(strong_flow, answer(call, '{"total": 10}', raw=object()))
        cheap_call = start(shadow)
        assert cheap_call.model == "gpt-4o-mini"
        outcome = finish(shadow, answer(cheap_call, '{"total": 10.0}'))
    finally:
        strong_flow.close()
        shadow.close()
    with pytest.raises(StopIteration) as done:  # no judge: nothing to call
        next(_engine.observation(p, REQUEST, strong, outcome))
    combined, seen = done.value.value
    assert combined.mode == "observe" and combined.model == "gpt-4o"
    assert [a.model for a in combined.attempts] == ["gpt-4o", "gpt-4o-mini"]
    assert seen.decision == "accept" and seen.reasons == ()
    assert seen.cheap_output == '{"total": 10.0}' and seen.strong_output == '{"total": 10}'
    assert seen.projected_cost_usd == seen.cheap_cost_usd
    assert Decimal(str(combined.cost_usd)) == Decimal(str(seen.cheap_cost_usd)) + Decimal(
        str(seen.strong_cost_usd)
    )


def test_observation_yields_the_judges_call_where_the_answers_differ() -> None:
    p = policy(mode="observe", agreement={"comparator": "judge", "model": "gpt-4o-mini"})
    strong_flow, shadow = _engine.run(p, REQUEST), _engine.shadow(p, REQUEST)
    try:
        strong: Result = finish(
            strong_flow, answer(start(strong_flow), '{"total": 10}', raw=object())
        )
        outcome = finish(shadow, answer(start(shadow), '{"total": 11}'))
    finally:
        strong_flow.close()
        shadow.close()
    flow = _engine.observation(p, REQUEST, strong, outcome)
    try:
        call = start(flow)
        assert (call.model, call.purpose) == ("gpt-4o-mini", "judge")
        first = (
            "cheap"
            if "11" in re.split(r"<answer_a-\w+>", call.request.messages[1]["content"])[1][:20]
            else "strong"
        )
        combined, seen = finish(flow, answer(call, "A" if first == "strong" else "B"))
    finally:
        flow.close()
    assert seen.verdict == "strong_better" and seen.agree is False
    assert [a.purpose for a in combined.attempts][-1] == "judge"
    assert seen.judge_cost_usd == combined.attempts[-1].cost_usd


def test_the_shadow_run_never_raises_on_a_fatal_status() -> None:
    shadow = _engine.shadow(policy(mode="observe"), REQUEST)
    try:
        start(shadow)
        outcome = finish(shadow, Failure("gpt-4o-mini", "client_error", "bad", 400))
    finally:
        shadow.close()
    assert outcome.accepted is None and outcome.attempts[0].error is not None


START_AT = [
    {"model": "gpt-4o", "prompt_tokens_over": 50},
    {"model": "gpt-4o", "match": "(?i)stack trace"},
    {"model": "gpt-4o", "tools_over": 1},
]


@pytest.mark.parametrize(
    ("text", "tools", "rule"),
    [
        ("x" * 204, 0, 0),
        ("here is a Stack Trace", 0, 1),
        ("short", 2, 2),
        ("short", 1, None),
        ("x" * 200, 0, None),
    ],
)
def test_start_at_rules_send_matching_requests_straight_up_the_ladder(
    text: str, tools: int, rule: int | None
) -> None:
    offered = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(tools)]
    request = Request([{"role": "user", "content": text}], {"tools": offered} if tools else {})
    flow = _engine.run(policy(start_at=START_AT), request)
    try:
        call = start(flow)
        assert call.model == ("gpt-4o-mini" if rule is None else "gpt-4o")
        result: Result = finish(flow, answer(call, '{"total": 10}'))
    finally:
        flow.close()
    assert result.start_rule == rule and not result.escalated


def test_a_pre_routed_call_is_never_moved_down_and_not_in_other_modes() -> None:
    rules = [{"model": "gpt-4o-mini", "match": "x"}]
    for mode, first in (("cascade", "gpt-4o-mini"), ("strong", "gpt-4o")):
        flow = _engine.run(
            policy(start_at=rules, mode=mode),
            REQUEST.replace(messages=[{"role": "user", "content": "x"}]),
        )
        try:
            assert start(flow).model == first
        finally:
            flow.close()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"model": "gpt-5", "tools_over": 1}, "is not one of the models"),
        ({"model": "gpt-4o"}, "needs a condition"),
        ({"model": "gpt-4o", "match": "(a"}, "invalid regex"),
        ({"model": "gpt-4o", "match": r"(a)\1"}, "invalid regex"),  # backreferences: not linear
    ],
)
def test_start_at_rules_fail_loudly(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy(start_at=[rule])
