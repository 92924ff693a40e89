"""The proxy as a faithful drop-in for chat completions: streamed logprobs, ``n`` > 1, the
tokens and cost of every attempt, through the real openai SDK."""

from __future__ import annotations

import json

import test_proxy
from test_proxy import GOOD, KEY, MSGS

from cascade.proxy import ProxyConfig
from cascade.testing import Reply

TASK = {"X-Cascade-Task": "invoice"}
upstream, policies, start = test_proxy.upstream, test_proxy.policies, test_proxy.start


def test_every_attempts_tokens_and_cost_are_in_headers_and_the_cascade_field(
    start, upstream
) -> None:
    upstream.script("gpt-4o-mini", Reply("no json", prompt_tokens=100, completion_tokens=5))
    upstream.script("gpt-4o", Reply(GOOD, prompt_tokens=100, completion_tokens=10))
    proxy = start()
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS, extra_headers=TASK
    )
    completion = raw.parse()
    # usage is the accepted answer's own; the call's totals are in the cascade field.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 10)
    assert raw.headers["x-cascade-prompt-tokens"] == "200"
    assert raw.headers["x-cascade-completion-tokens"] == "15"
    cheap = (100 * 0.15 + 5 * 0.6) / 1e6
    strong = (100 * 2.5 + 10 * 10) / 1e6
    assert raw.headers["x-cascade-attempts"] == (
        f"gpt-4o-mini answer 100+5 {cheap:.8f}, gpt-4o answer 100+10 {strong:.8f}"
    )
    field = completion.model_extra["cascade"]  # type: ignore[index]
    assert (field["prompt_tokens"], field["completion_tokens"]) == (200, 15)
    assert [(a["model"], a["passed"]) for a in field["attempts"]] == [
        ("gpt-4o-mini", False),
        ("gpt-4o", True),
    ]
    assert abs(field["cost_usd"] - (cheap + strong)) < 1e-12
    assert field["escalated"] is True and field["task"] == "invoice"


def test_streams_carry_the_cascade_field_on_their_last_chunk(start, upstream) -> None:
    upstream.script("gpt-4o-mini", GOOD)
    proxy = start()
    stream = proxy.client().chat.completions.create(
        model="gpt-4o",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=TASK,
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].model_extra["cascade"]["model"] == "gpt-4o-mini"  # type: ignore[index]


def test_streamed_answers_carry_logprobs_when_asked(start, upstream) -> None:
    upstream.script("gpt-4o-mini", Reply(GOOD, logprobs=[(GOOD[:10], -0.1), (GOOD[10:], -0.2)]))
    proxy = start()
    stream = proxy.client().chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, logprobs=True, extra_headers=TASK
    )
    with_logprobs = [
        c.choices[0].logprobs.content
        for c in stream
        if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content
    ]
    assert [[(t.token, t.logprob) for t in lp] for lp in with_logprobs] == [
        [(GOOD[:10], -0.1)],
        [(GOOD[10:], -0.2)],
    ]
    assert upstream.requests[0]["logprobs"] is True


def test_n_above_one_goes_to_the_strongest_model_unjudged(start, upstream) -> None:
    upstream.script("gpt-4o", "several answers")
    proxy = start(ProxyConfig(proxy_keys=(KEY,), default_task="invoice"))
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-3.5-turbo", messages=MSGS, n=2
    )
    assert raw.parse().choices[0].message.content == "several answers"
    assert raw.headers["x-cascade-passthrough"] == "n=2: sent to gpt-4o unjudged"
    (sent,) = upstream.requests
    assert (sent["model"], sent["n"]) == ("gpt-4o", 2)


def test_an_answer_with_a_lone_surrogate_is_relayed_as_it_came_not_a_500(start, upstream) -> None:
    # JSON may escape a lone surrogate (\ud800); UTF-8 cannot hold it, so it stays escaped.
    message = {"role": "assistant", "content": '\\ud800{"total": 10}'}
    body = (
        '{"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",'
        f' "choices": [{{"index": 0, "finish_reason": "stop", "message": {json.dumps(message)}}}],'
        ' "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}'
    ).replace("\\\\ud800", "\\ud800")
    upstream.script("gpt-4o-mini", Reply(body=body))
    raw = start().client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS, extra_headers=TASK
    )
    assert raw.status_code == 200 and raw.headers["x-cascade-model"] == "gpt-4o-mini"
    assert raw.parse().choices[0].message.content == '\ud800{"total": 10}'
