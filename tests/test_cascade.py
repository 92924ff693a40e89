"""The cascade end to end: real openai SDK over HTTP to a local scripted server."""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import openai
import pytest
import structlog
import yaml
from conftest import REQUEST_OPTIONS, assert_request_options_applied, wire

import cascade
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10 EUR"}]
GOOD = json.dumps({"invoice_number": "INV-1", "total": 10})
SCHEMA = {
    "type": "object",
    "required": ["invoice_number", "total"],
    "properties": {"total": {"type": "number"}},
}


@pytest.fixture
def make(tmp_path: Path, server: ScriptedServer) -> Callable[..., cascade.Cascade]:
    """Write a policy file for task 't' and return a Cascade over it."""

    def factory(client_kwargs: dict[str, Any] | None = None, **policy: Any) -> cascade.Cascade:
        policy.setdefault("models", ["gpt-4o-mini", "gpt-4o"])
        policy.setdefault("validators", [{"type": "json_schema", "schema": SCHEMA}])
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
        return cascade.Cascade(
            tmp_path, client=server.client(**(client_kwargs or {})), store="memory://"
        )

    return factory


def test_good_cheap_answer_is_accepted_without_escalation(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    r = make().run("t", MSGS)
    assert (r.model, r.escalated, r.ok) == ("gpt-4o-mini", False, True)
    assert r.output == GOOD
    assert r.parsed == {"invoice_number": "INV-1", "total": 10}
    assert [c["model"] for c in server.calls()] == ["gpt-4o-mini"]
    assert r.completion.choices[0].message.content == GOOD


def test_failed_validator_escalates_and_records_why(make, server) -> None:
    server.script("gpt-4o-mini", '{"invoice_number": "INV-1", "total": "ten"}')
    server.script("gpt-4o", GOOD)
    r = make().run("t", MSGS)
    assert (r.model, r.escalated, r.ok) == ("gpt-4o", True, True)
    first, second = r.attempts
    assert first.model == "gpt-4o-mini" and not first.passed
    v, derived = first.verdicts  # the policy's validator, then the request's own checks
    assert v.validator == "json_schema" and not v.passed and "total" in v.reason
    assert derived.validator == "request" and derived.passed
    assert second.model == "gpt-4o" and second.passed
    assert r.reasons == (f"json_schema: {v.reason}",)


def test_escalation_climbs_a_three_model_ladder(make, server) -> None:
    server.script("gpt-4o-mini", "not json at all")
    server.script("gpt-4.1-mini", '{"invoice_number": "INV-1"}')
    server.script("gpt-4o", GOOD)
    r = make(models=["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]).run("t", MSGS)
    assert [a.model for a in r.attempts] == ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]
    assert r.model == "gpt-4o" and r.ok


def test_inputs_answered_well_do_not_escalate_while_bad_ones_do(make, server) -> None:
    server.script("gpt-4o-mini", "I think the total is ten", match="hard")
    server.script("gpt-4o-mini", GOOD)
    server.script("gpt-4o", GOOD)
    c = make()
    assert not c.run("t", MSGS).escalated
    assert c.run("t", [{"role": "user", "content": "a hard one"}]).escalated


def test_exact_cost_is_tokens_times_prices(make, server) -> None:
    server.script("gpt-4o-mini", Reply(content="nope", prompt_tokens=800, completion_tokens=400))
    server.script("gpt-4o", Reply(content=GOOD, prompt_tokens=800, completion_tokens=400))
    r = make().run("t", MSGS)
    mini = 800 * 0.15 / 1e6 + 400 * 0.60 / 1e6
    strong = 800 * 2.50 / 1e6 + 400 * 10.00 / 1e6
    assert [a.cost_usd for a in r.attempts] == [pytest.approx(mini, abs=0), strong]
    assert r.attempts[0].cost_usd == 0.00036
    assert r.attempts[1].cost_usd == 0.006
    assert r.cost_usd == 0.00636
    assert r.baseline_cost_usd == 0.006  # the strong model was called: its exact cost


def test_baseline_is_estimated_from_cheap_tokens_when_strong_was_not_called(make, server) -> None:
    server.script("gpt-4o-mini", Reply(content=GOOD, prompt_tokens=1000, completion_tokens=100))
    r = make().run("t", MSGS)
    assert r.cost_usd == 0.00021
    assert r.baseline_cost_usd == 0.0035  # 1000 * 2.50 + 100 * 10.00 per million


def test_cached_prompt_tokens_are_billed_at_the_cached_price(make, server) -> None:
    server.script(
        "gpt-4o-mini",
        Reply(content=GOOD, prompt_tokens=1000, completion_tokens=0, cached_tokens=400),
    )
    r = make().run("t", MSGS)
    assert r.cost_usd == 0.00012  # 600 * 0.15 + 400 * 0.075 per million


def test_policy_prices_override_the_table(make, server) -> None:
    server.script("gpt-4o-mini", Reply(content=GOOD, prompt_tokens=1000, completion_tokens=1000))
    r = make(prices={"gpt-4o-mini": {"input": 1, "output": 2}}).run("t", MSGS)
    assert r.cost_usd == 0.003


def test_unknown_price_warns_and_gives_none_not_zero(make, server) -> None:
    server.script("my-local-model", GOOD)
    c = make(models=["my-local-model", "gpt-4o"])
    with pytest.warns(cascade.UnknownPriceWarning, match="my-local-model"):
        r = c.run("t", MSGS)  # policies load on first use
    assert r.attempts[0].cost_usd is None
    assert r.cost_usd is None


def test_reask_quotes_the_failed_checks_before_escalating(make, server) -> None:
    server.script("gpt-4o-mini", "no json", times=1)
    server.script("gpt-4o-mini", GOOD)
    r = make(retries=1).run("t", MSGS)
    assert [(a.model, a.purpose) for a in r.attempts] == [
        ("gpt-4o-mini", "answer"),
        ("gpt-4o-mini", "reask"),
    ]
    assert not r.escalated and r.ok
    reask = server.calls()[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "no json"}
    assert "json_schema" in reask[-1]["content"] and "no JSON" in reask[-1]["content"]


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (Reply(status=500), "server_error 500"),
        (Reply(status=429), "rate_limited 429"),
        (Reply(status=503), "server_error 503"),
        (Reply(content=GOOD, delay_s=1.0), "timeout"),
        (
            Reply(status=200, body='{"id": "x", "object": "chat.completion", "choices": []}'),
            "malformed_response",
        ),
    ],
)
@pytest.mark.parametrize("rung", [0, 1])
def test_provider_faults_escalate_from_each_rung(make, server, reply, kind, rung) -> None:
    models = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]
    for m in models[:rung]:
        server.script(m, "not json")  # fails validation, so the faulty rung is reached
    server.script(models[rung], reply)
    for m in models[rung + 1 :]:
        server.script(m, GOOD)
    r = make({"timeout": 0.3}, models=models).run("t", MSGS)
    assert r.ok and r.model == models[rung + 1]
    failed = r.attempts[rung]
    assert failed.error is not None and failed.error.startswith(kind)
    # An error status costs nothing; a 200 answer that cannot be read may have been billed.
    malformed = kind == "malformed_response"
    assert failed.cost_usd == (None if malformed else 0.0)
    assert (r.cost_usd is None) is malformed


def test_connection_refused_on_every_rung_raises_exhausted(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"]}))
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    c = cascade.Cascade(tmp_path, client=client, store="memory://")
    with pytest.raises(cascade.EscalationExhausted) as info:
        c.run("t", MSGS)
    assert [a.error.split(":")[0] for a in info.value.attempts] == ["connection_error"] * 2
    assert info.value.result is None
    assert "every model failed validation or errored" in str(info.value)
    c.store.flush()
    (record,) = c.store.records(task="t")  # a call no model answered is still counted
    assert (record.ok, record.escalated, record.model) == (False, True, "gpt-4o")
    assert [a.error.split(":")[0] for a in record.attempts] == ["connection_error"] * 2
    assert record.cost_usd == 0.0


async def test_aiohttp_transport_connection_refused_is_a_connection_error(tmp_path) -> None:
    # The SDK's aiohttp transport raises a connect *timeout* for a refused connection.
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"]}))
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        max_retries=0,
        http_client=openai.DefaultAioHttpClient(),
    )
    c = cascade.Cascade(tmp_path, async_client=client, store="memory://")
    with pytest.raises(cascade.EscalationExhausted) as info:
        await c.arun("t", MSGS)
    await client.close()
    assert [a.error.split(":")[0] for a in info.value.attempts] == ["connection_error"] * 2


async def test_aiohttp_transport_timeout_is_a_timeout(tmp_path, server) -> None:
    server.script("gpt-4o-mini", Reply(content=GOOD, delay_s=1.0)).script("gpt-4o", GOOD)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"]}))
    client = server.async_client(timeout=0.3, http_client=openai.DefaultAioHttpClient())
    c = cascade.Cascade(tmp_path, async_client=client, store="memory://")
    r = await c.arun("t", MSGS)
    await client.close()
    assert r.model == "gpt-4o" and r.attempts[0].error.startswith("timeout")


@pytest.mark.parametrize("status", [400, 401, 403])
def test_errors_a_stronger_model_cannot_fix_raise_at_once(make, server, status) -> None:
    server.script("gpt-4o-mini", Reply(status=status, error_message="bad key sk-secret"))
    with pytest.raises(cascade.ProviderError) as info:
        make().run("t", MSGS)
    assert info.value.status == status and info.value.model == "gpt-4o-mini"
    assert isinstance(info.value.__cause__, openai.APIStatusError)
    assert [c["model"] for c in server.calls()] == ["gpt-4o-mini"]


def test_fatal_statuses_are_configurable(make, server) -> None:
    server.script("gpt-4o-mini", Reply(status=400))
    server.script("gpt-4o", GOOD)
    r = make(fatal_status=[401]).run("t", MSGS)
    assert r.model == "gpt-4o" and r.attempts[0].error.startswith("client_error 400")


def test_exhausted_returns_the_last_answer_not_ok(make, server) -> None:
    server.script("gpt-4o-mini", "nope")
    server.script("gpt-4o", "still nope")
    r = make().run("t", MSGS)
    assert (r.ok, r.model, r.output, r.escalated) == (False, "gpt-4o", "still nope", True)


def test_exhausted_raises_when_the_policy_says_so(make, server) -> None:
    server.script("gpt-4o-mini", "nope")
    server.script("gpt-4o", "still nope")
    with pytest.raises(cascade.EscalationExhausted) as info:
        make(on_exhausted="raise").run("t", MSGS)
    assert len(info.value.attempts) == 2
    assert info.value.result is not None and info.value.result.output == "still nope"


def test_max_attempts_stops_the_climb(make, server) -> None:
    server.script("gpt-4o-mini", "nope")
    r = make(max_attempts=1, models=["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]).run("t", MSGS)
    assert len(server.calls()) == 1 and not r.ok


def test_max_cost_stops_the_climb(make, server) -> None:
    server.script("gpt-4o-mini", Reply(content="nope", prompt_tokens=1000, completion_tokens=0))
    r = make(max_cost_usd=0.0001).run("t", MSGS)  # the first call spends 0.00015
    assert [c["model"] for c in server.calls()] == ["gpt-4o-mini"] and not r.ok


def test_params_pass_through_and_policy_defaults_apply(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    make(params={"temperature": 0, "max_tokens": 50}).run(
        "t", MSGS, temperature=0.5, user="u-1", response_format={"type": "json_object"}
    )
    (body,) = server.calls()
    assert body["temperature"] == 0.5 and body["max_tokens"] == 50 and body["user"] == "u-1"
    assert body["response_format"] == {"type": "json_object"}


def test_calls_send_exactly_what_the_sdks_create_sends(make, server) -> None:
    server.script("gpt-4o-mini", GOOD)
    params: dict[str, Any] = {
        "temperature": 0.2,
        "user": "u-1",
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
        "metadata": {"team": "billing"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    make().run("t", MSGS, **params)
    server.client().chat.completions.create(model="gpt-4o-mini", messages=MSGS, **params)
    through_cascade, direct = server.calls()
    assert wire(through_cascade) == wire(direct)


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_request_options_reach_the_server_as_create_sends_them(
    make, server, asynchronous
) -> None:
    server.script("gpt-4o-mini", GOOD)
    c = make()
    options = REQUEST_OPTIONS
    r = await c.arun("t", MSGS, **options) if asynchronous else c.run("t", MSGS, **options)
    await c.aclose()
    assert r.ok
    (request,) = server.calls()
    assert_request_options_applied(request)


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_options_given_as_none_mean_none_as_create_takes_them(
    make, server, asynchronous
) -> None:
    server.script("gpt-4o-mini", GOOD)
    options = {"extra_headers": None, "extra_query": None, "extra_body": None}
    c = make()
    r = await c.arun("t", MSGS, **options) if asynchronous else c.run("t", MSGS, **options)
    await c.aclose()
    assert r.ok
    assert r.completion._request_id is None  # as create() sets it: no x-request-id sent
    (request,) = server.calls()
    assert request["_path"].endswith("/chat/completions")


def test_a_wrapped_create_sees_every_call(make, server, monkeypatch) -> None:
    # Tracing and instrumentation libraries wrap create() to see calls.
    seen: list[str] = []
    original = openai.resources.chat.completions.Completions.create

    def traced(self: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["model"])
        return original(self, **kwargs)

    monkeypatch.setattr(openai.resources.chat.completions.Completions, "create", traced)
    server.script("gpt-4o-mini", "no json").script("gpt-4o", GOOD)
    r = make().run("t", MSGS)
    assert r.ok and seen == ["gpt-4o-mini", "gpt-4o"]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_arguments_that_are_not_plain_json_are_converted_by_the_sdk(
    make, server, asynchronous
) -> None:
    server.script("gpt-4o-mini", GOOD)
    args: dict[str, Any] = {"temperature": openai.omit, "stop": ("END",)}
    c = make()
    r = await c.arun("t", MSGS, **args) if asynchronous else c.run("t", MSGS, **args)
    await c.aclose()
    assert r.ok
    (request,) = server.calls()
    assert "temperature" not in request  # omitted, as create() omits it
    assert request["stop"] == ["END"]


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<html>bad gateway</html>", "the response is not JSON"),
        ('["not", "an", "object"]', "the response is not a ChatCompletion"),
    ],
)
async def test_a_body_that_is_no_completion_escalates_as_malformed(
    make, server, asynchronous, body, reason
) -> None:
    server.script("gpt-4o-mini", Reply(status=200, body=body))
    server.script("gpt-4o", GOOD)
    c = make()
    r = await c.arun("t", MSGS) if asynchronous else c.run("t", MSGS)
    await c.aclose()
    assert r.model == "gpt-4o" and r.ok
    assert r.attempts[0].error.startswith(f"malformed_response: {reason}")


# A server that leaves out fields OpenAI always sends (id, created, object).
SPARSE = json.dumps(
    {"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": GOOD}}]}
)


def test_a_completion_with_missing_fields_is_read_as_leniently_as_the_sdk_reads_it(
    make, server
) -> None:
    server.script("gpt-4o-mini", Reply(status=200, body=SPARSE))
    r = make().run("t", MSGS)
    assert (r.model, r.escalated, r.output) == ("gpt-4o-mini", False, GOOD)
    assert r.completion.choices[0].message.content == GOOD


def test_a_strict_client_refuses_a_completion_with_missing_fields(make, server) -> None:
    server.script("gpt-4o-mini", Reply(status=200, body=SPARSE))
    server.script("gpt-4o", GOOD)
    r = make({"_strict_response_validation": True}).run("t", MSGS)
    assert r.model == "gpt-4o"
    assert r.attempts[0].error.startswith("malformed_response: the response is not a Chat")


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ("hello", "non-empty list"),
        ([], "non-empty list"),
        ([{"content": "hi"}], r"messages\[0\]\.role"),
        ([{"role": "user"}], r"messages\[0\]\.content is missing"),
        ([{"role": "user", "content": 3}], r"messages\[0\]\.content must be"),
        ([{"role": "user", "content": "a"}, "b"], r"messages\[1\] must be a dict"),
    ],
)
def test_malformed_messages_fail_before_any_api_call(make, server, messages, match) -> None:
    with pytest.raises(cascade.InvalidRequestError, match=match):
        make().run("t", messages)
    assert server.requests == []


def test_model_and_stream_arguments_are_refused(make, server) -> None:
    c = make()
    with pytest.raises(cascade.InvalidRequestError, match="policy chooses the model"):
        c.run("t", MSGS, model="gpt-4o")
    with pytest.raises(cascade.InvalidRequestError, match="stream"):
        c.run("t", MSGS, stream=True)
    assert server.requests == []


def test_unknown_task_names_the_directory_and_the_tasks(make, tmp_path) -> None:
    c = make()
    with pytest.raises(cascade.UnknownTaskError) as info:
        c.run("nope", MSGS)
    assert str(tmp_path) in str(info.value) and "tasks found: t" in str(info.value)
    with pytest.raises(cascade.UnknownTaskError):
        c.run("../t", MSGS)


def test_logprob_confidence_asks_for_logprobs_and_escalates_below_min(make, server) -> None:
    server.script("gpt-4o-mini", Reply(content="A", logprobs=[("A", math.log(0.5))]))
    server.script("gpt-4o", Reply(content="A", logprobs=[("A", math.log(0.95))]))
    r = make(validators=[{"type": "confidence", "source": "logprobs", "min": 0.8}]).run("t", MSGS)
    assert all(c["logprobs"] is True for c in server.calls())
    assert r.model == "gpt-4o"
    assert r.attempts[0].verdicts[0].score == pytest.approx(0.5)
    assert r.attempts[1].verdicts[0].score == pytest.approx(0.95)


def test_self_rating_is_asked_for_read_and_stripped(make, server) -> None:
    server.script("gpt-4o-mini", "Paris is the capital.\nConfidence: 0.4")
    server.script("gpt-4o", "Paris.\nConfidence: 0.95")
    r = make(validators=[{"type": "confidence", "source": "self_rated", "min": 0.7}]).run("t", MSGS)
    asked = server.calls()[0]["messages"]
    assert any("Confidence" in m["content"] for m in asked if m["role"] == "system")
    assert r.model == "gpt-4o" and r.output == "Paris."
    assert r.completion.choices[0].message.content == "Paris."
    assert r.attempts[0].verdicts[0].score == pytest.approx(0.4)


def test_verify_makes_a_second_call_and_counts_its_cost(make, server) -> None:
    server.script(
        "gpt-4o-mini",
        Reply(
            content="No",
            logprobs=[
                ("No", math.log(0.7)),
            ],
            prompt_tokens=100,
            completion_tokens=1,
        ),
        match="correct",
    )
    server.script("gpt-4o-mini", Reply(content="42", prompt_tokens=100, completion_tokens=10))
    server.script("gpt-4o", Reply(content="41", prompt_tokens=100, completion_tokens=10))
    policy = {
        "validators": [{"type": "confidence", "source": "verify", "min": 0.5}],
        "models": ["gpt-4o-mini", "gpt-4o"],
    }
    r = make(**policy).run("t", MSGS)
    purposes = [(a.model, a.purpose) for a in r.attempts]
    assert purposes[:2] == [("gpt-4o-mini", "answer"), ("gpt-4o-mini", "verify")]
    assert r.model == "gpt-4o"
    assert r.cost_usd == pytest.approx(sum(a.cost_usd for a in r.attempts))
    assert r.attempts[1].cost_usd == (100 * 0.15 + 1 * 0.60) / 1e6


def test_the_verification_call_keeps_who_and_how_but_not_the_answer_format(make, server) -> None:
    server.script("gpt-4o-mini", Reply(content="Yes", logprobs=[("Yes", 0.0)]), match="correct")
    server.script("gpt-4o-mini", '{"answer": 42}')
    policy = {"validators": [{"type": "confidence", "source": "verify", "min": 0.5}]}
    r = make(**policy).run(
        "t",
        MSGS,
        user="u-1",
        metadata={"team": "a"},
        extra_headers={"x-trace": "t-1"},
        response_format={"type": "json_object"},
        temperature=0.9,
        max_tokens=300,
    )
    assert r.model == "gpt-4o-mini" and not r.escalated
    answer, verify = server.calls()
    assert answer["response_format"] == {"type": "json_object"}
    assert verify["user"] == "u-1"
    assert "metadata" not in verify  # the API refuses metadata without store
    assert verify["_headers"]["x-trace"] == "t-1"
    assert "response_format" not in verify
    assert (verify["temperature"], verify["max_tokens"], verify["logprobs"]) == (0, 1, True)


def test_no_verification_call_is_made_for_an_already_rejected_answer(make, server) -> None:
    server.script("gpt-4o-mini", "")
    server.script("gpt-4o", "fine")
    policy = {
        "validators": [
            {"type": "structure"},
            {"type": "confidence", "source": "verify", "min": 0.5},
        ]
    }
    r = make(**policy).run("t", MSGS)
    # and none for the strongest model's answer, which nothing could replace
    assert [(a.model, a.purpose) for a in r.attempts] == [
        ("gpt-4o-mini", "answer"),
        ("gpt-4o", "answer"),
    ]
    assert [c["model"] for c in server.calls()] == ["gpt-4o-mini", "gpt-4o"]


def test_custom_validator_registered_on_the_cascade(tmp_path, server) -> None:
    def shouty(c: cascade.Completion) -> cascade.Verdict:
        return cascade.Verdict("shouty", c.text.isupper(), "" if c.text.isupper() else "not caps")

    (tmp_path / "t.yaml").write_text(
        yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"], "validators": [{"type": "shouty"}]})
    )
    server.script("gpt-4o-mini", "quiet").script("gpt-4o", "LOUD")
    c = cascade.Cascade(
        tmp_path, client=server.client(), store="memory://", validators={"shouty": shouty}
    )
    r = c.run("t", MSGS)
    assert r.output == "LOUD" and r.attempts[0].verdicts[0].reason == "not caps"


async def test_arun_agrees_with_run(make, server) -> None:
    server.script("gpt-4o-mini", Reply(content="nope", prompt_tokens=50, completion_tokens=5))
    server.script("gpt-4o", Reply(content=GOOD, prompt_tokens=50, completion_tokens=20))
    c = make()
    sync = c.run("t", MSGS)
    asynchronous = await c.arun("t", MSGS)
    await c.aclose()
    fields = ("output", "parsed", "model", "escalated", "ok", "cost_usd", "baseline_cost_usd")
    assert [getattr(sync, f) for f in fields] == [getattr(asynchronous, f) for f in fields]
    assert [(a.model, a.verdicts, a.cost_usd) for a in sync.attempts] == [
        (a.model, a.verdicts, a.cost_usd) for a in asynchronous.attempts
    ]


async def test_arun_escalates_on_provider_errors(make, server) -> None:
    server.fail("gpt-4o-mini", 500)
    server.script("gpt-4o", GOOD)
    c = make()
    r = await c.arun("t", MSGS)
    await c.aclose()
    assert r.model == "gpt-4o" and r.attempts[0].error.startswith("server_error 500")


def test_logs_one_event_per_call_and_per_escalation_without_the_key(make, server, caplog) -> None:
    server.script("gpt-4o-mini", "nope").script("gpt-4o", GOOD)
    c = make()
    caplog.set_level(logging.INFO, logger="cascade")  # INFO events only when asked for
    with structlog.testing.capture_logs() as logs:
        c.run("t", MSGS)
    events = [e["event"] for e in logs]
    assert events == ["cascade.escalated", "cascade.call"]
    assert logs[0]["from_model"] == "gpt-4o-mini" and logs[0]["to_model"] == "gpt-4o"
    assert logs[1]["cost_usd"] is not None and logs[1]["escalated"] is True
    assert "sk-test" not in repr(logs)


def test_every_call_is_recorded_in_the_store(make, server) -> None:
    server.script("gpt-4o-mini", "nope").script("gpt-4o", GOOD)
    c = make()
    c.run("t", MSGS)
    c.store.flush()
    (day,) = c.store.days(task="t")
    assert (day.calls, day.escalations) == (1, 1)
    (record,) = list(c.store.records(task="t"))
    assert record.escalated and record.models == ("gpt-4o-mini", "gpt-4o")
