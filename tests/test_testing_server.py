"""``cascade.testing.ScriptedServer`` through the real openai SDK (sync and async) and raw HTTP."""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import math
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import openai
import pytest

from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator

MSGS = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def ask(server: ScriptedServer, model: str = "gpt-4o-mini", **kw: Any) -> Any:
    kw.setdefault("messages", MSGS)
    return server.client().chat.completions.create(model=model, **kw)


def raw_http(
    server: ScriptedServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


# -- answers ---------------------------------------------------------------------------------


def test_plain_reply_is_a_standard_chat_completion(
    server: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o-mini", "Paris")
    r = ask(server)
    assert capfd.readouterr().err == ""  # no log line per request
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert isinstance(r.created, int)
    (choice,) = r.choices
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert choice.message.role == "assistant"
    assert choice.message.content == "Paris"
    assert choice.message.tool_calls is None
    assert choice.message.refusal is None


async def test_async_client_gets_the_same_answer(server: ScriptedServer) -> None:
    server.script("gpt-4o", Reply(content="Paris", refusal="no", finish_reason="length"))
    r = await server.async_client().chat.completions.create(model="gpt-4o", messages=MSGS)
    assert r.choices[0].message.content == "Paris"
    assert r.choices[0].message.refusal == "no"
    assert r.choices[0].finish_reason == "length"


def test_tool_calls_carry_name_raw_arguments_and_ids(server: ScriptedServer) -> None:
    calls = [
        {"name": "lookup", "arguments": '{"city": "Paris"}', "id": "call_1"},
        {"name": "book", "arguments": {"seat": 1}},  # a dict is sent as its JSON
    ]
    server.script("gpt-4o", Reply(content=None, tool_calls=calls, finish_reason="tool_calls"))
    r = ask(server, "gpt-4o")
    message = r.choices[0].message
    assert message.content is None
    assert r.choices[0].finish_reason == "tool_calls"
    first, second = message.tool_calls
    assert (first.id, first.type, first.function.name) == ("call_1", "function", "lookup")
    assert first.function.arguments == '{"city": "Paris"}'
    assert second.id
    assert second.id != first.id
    assert second.function.name == "book"
    assert json.loads(second.function.arguments) == {"seat": 1}


def test_logprobs_are_sent_only_when_asked_with_alternatives_up_to_top_logprobs(
    server: ScriptedServer,
) -> None:
    lp = [("Par", math.log(0.9), [("Par", math.log(0.9)), ("Lon", -3.0)]), ("is", -0.01)]
    server.script("gpt-4o-mini", Reply(content="Paris", logprobs=lp))
    assert ask(server).choices[0].logprobs is None
    first, second = ask(server, logprobs=True, top_logprobs=1).choices[0].logprobs.content
    assert (first.token, first.logprob, first.bytes) == ("Par", math.log(0.9), list(b"Par"))
    assert [(a.token, a.logprob) for a in first.top_logprobs] == [("Par", math.log(0.9))]
    assert (second.token, second.logprob, second.top_logprobs) == ("is", -0.01, [])
    # Like the API: no top_logprobs in the request, no alternatives in the answer.
    assert ask(server, logprobs=True).choices[0].logprobs.content[0].top_logprobs == []


def test_logprobs_are_synthesized_from_the_words_when_not_scripted(server: ScriptedServer) -> None:
    server.script("gpt-4o-mini", "It is Paris.")
    tokens = ask(server, logprobs=True).choices[0].logprobs.content
    assert [(t.token, t.logprob, t.top_logprobs) for t in tokens] == [
        ("It", 0.0, []),
        (" is", 0.0, []),
        (" Paris.", 0.0, []),
    ]


def test_scripted_usage_is_reported_exactly(server: ScriptedServer) -> None:
    server.script(
        "gpt-4o",
        Reply(content="x" * 99, prompt_tokens=1000, completion_tokens=0, cached_tokens=400),
    )
    usage = ask(server, "gpt-4o").usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 0, 1000)
    assert usage.prompt_tokens_details.cached_tokens == 400


def test_token_counts_are_estimated_at_four_characters_a_token(server: ScriptedServer) -> None:
    calls = [{"name": "f", "arguments": '{"a": 1}'}]  # 8 characters of arguments
    server.script("gpt-4o-mini", Reply(content="12345", tool_calls=calls))  # 5 + 8 = 13: 4 tokens
    messages = [
        {"role": "system", "content": "s" * 10},
        {"role": "user", "content": [{"type": "text", "text": "u" * 7}]},  # 17 in all: 5 tokens
    ]
    usage = ask(server, messages=messages).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 4, 9)
    assert usage.prompt_tokens_details.cached_tokens == 0
    server.script("gpt-4o", "")
    empty = ask(server, "gpt-4o", messages=[{"role": "user", "content": ""}]).usage
    assert (empty.prompt_tokens, empty.completion_tokens) == (1, 1)  # never below 1


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (429, openai.RateLimitError),
        (401, openai.AuthenticationError),
    ],
)
def test_error_statuses_raise_the_sdk_error_with_openai_error_json(
    server: ScriptedServer, status: int, error: type[openai.APIStatusError]
) -> None:
    server.script("gpt-4o-mini", Reply(status=status, error_message="boom"))
    with pytest.raises(error) as info:
        ask(server)
    assert info.value.status_code == status
    body = info.value.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["message"] == "boom"


async def test_async_client_gets_the_rate_limit_too(server: ScriptedServer) -> None:
    server.script("gpt-4o-mini", Reply("quota exceeded", status=429))  # content as the message
    with pytest.raises(openai.RateLimitError, match="quota exceeded"):
        await server.async_client().chat.completions.create(model="gpt-4o-mini", messages=MSGS)


def test_delay_times_the_client_out_without_blocking_other_requests(
    server: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.script("slow", Reply(content="late", delay_s=3.0)).script("fast", "now")
    client = server.client(timeout=0.1)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="slow", messages=MSGS)
    answered: list[str] = []
    waiter = threading.Thread(
        target=lambda: answered.append(ask(server, "slow").choices[0].message.content)
    )
    waiter.start()
    assert ask(server, "fast").choices[0].message.content == "now"
    assert waiter.is_alive()  # answered while the slow request still sleeps: nobody held up
    waiter.join()
    assert answered == ["late"]
    assert capfd.readouterr().err == ""  # the timed-out client's hang-up is no error


def test_stopping_during_a_delayed_reply_is_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    with ScriptedServer(default=Reply("late", delay_s=30)) as s:
        with pytest.raises(openai.APITimeoutError):
            s.client(timeout=0.05).chat.completions.create(model="m", messages=MSGS)
        started = time.perf_counter()
    assert time.perf_counter() - started < 20  # stop() did not wait out the 30 s sleeper
    time.sleep(0.3)  # it wakes up to a closed connection
    assert capfd.readouterr().err == ""


def test_malformed_body_is_sent_as_is(server: ScriptedServer) -> None:
    server.script("gpt-4o-mini", Reply(body='{"id": "x", "choices": [', status=200))
    raw = server.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSGS
    )
    assert raw.status_code == 200
    assert raw.text == '{"id": "x", "choices": ['
    with pytest.raises(ValueError, match="Expecting value"):
        raw.parse()


# -- choosing the reply ----------------------------------------------------------------------


def test_times_drops_a_rule_and_fail_goes_before_every_rule(server: ScriptedServer) -> None:
    server.script("gpt-4o-mini", "first", times=1).script("gpt-4o-mini", "then")
    server.fail("gpt-4o-mini", 500, times=2, message="down")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError, match="down"):
            ask(server)
    assert [ask(server).choices[0].message.content for _ in range(3)] == ["first", "then", "then"]


def test_fail_only_hits_its_model(server: ScriptedServer) -> None:
    server.script(None, "anyone").fail("gpt-4o", 429)
    assert ask(server).choices[0].message.content == "anyone"
    with pytest.raises(openai.RateLimitError):
        ask(server, "gpt-4o")
    assert ask(server, "gpt-4o").choices[0].message.content == "anyone"


def test_match_searches_the_last_user_message(server: ScriptedServer) -> None:
    server.script("gpt-4o", "Yes", match=r"correct\?$").script("gpt-4o", "Paris")
    follow_up = [
        *MSGS,
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "Is that correct?"},
    ]
    assert ask(server, "gpt-4o", messages=follow_up).choices[0].message.content == "Yes"
    assert ask(server, "gpt-4o").choices[0].message.content == "Paris"


def test_callable_rule_and_responder_see_the_request(server: ScriptedServer) -> None:
    seen: list[dict[str, Any]] = []

    def echo(request: dict[str, Any]) -> Reply | str | None:
        seen.append(request)
        return None if request["model"] == "pass" else f"echo {request['messages'][-1]['content']}"

    server.script(None, echo).script(None, "after")
    assert ask(server, "m").choices[0].message.content == f"echo {MSGS[-1]['content']}"
    assert ask(server, "pass").choices[0].message.content == "after"  # None passes it on
    assert seen[0]["_headers"]["authorization"] == "Bearer sk-test"

    def responder(request: dict[str, Any]) -> Reply | None:
        return Reply(content=request["model"]) if request["model"] != "none" else None

    with ScriptedServer(responder, default="fallback") as s:
        s.script("ruled", "from the rule")
        assert ask(s, "ruled").choices[0].message.content == "from the rule"
        assert ask(s, "gpt-4o").choices[0].message.content == "gpt-4o"
        assert ask(s, "none").choices[0].message.content == "fallback"


def test_a_broken_script_is_a_500_naming_the_error() -> None:
    def broken(request: dict[str, Any]) -> str:
        raise KeyError("oops")

    with ScriptedServer(broken) as s, pytest.raises(openai.InternalServerError, match="KeyError"):
        ask(s)
    no_logprob = Reply(logprobs=[("x",)])
    with ScriptedServer(default=no_logprob) as s, pytest.raises(openai.InternalServerError):
        ask(s, logprobs=True)


def test_bad_scripts_are_refused_at_once(server: ScriptedServer) -> None:
    with pytest.raises(ValueError, match="times"):
        server.script("m", "x", times=0)
    with pytest.raises(ValueError, match="times"):
        server.fail("m", times=0)
    with pytest.raises(TypeError, match="Reply or a str"):
        server.script("m", 42)  # type: ignore[arg-type]
    with pytest.raises(re.error):
        server.script("m", "x", match="(")


def test_unscripted_request_is_a_400_naming_model_and_message(server: ScriptedServer) -> None:
    server.script("gpt-4o", "only this one")
    long = [{"role": "user", "content": "word " * 100}]
    with pytest.raises(openai.BadRequestError) as info:
        ask(server, "gpt-4o-mini", messages=long)
    message = info.value.response.json()["error"]["message"]
    assert message.startswith("no scripted reply for model 'gpt-4o-mini' and message 'word word")
    assert message.endswith("...'")
    assert len(message) < 200


# -- streaming -------------------------------------------------------------------------------


def test_stream_with_usage_reassembles_to_the_content(server: ScriptedServer) -> None:
    server.script(
        "gpt-4o-mini", Reply("The capital is Paris.", prompt_tokens=7, completion_tokens=5)
    )
    chunks = list(ask(server, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital is Paris."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 12


async def test_async_stream_without_usage_has_no_usage_chunk(server: ScriptedServer) -> None:
    calls = [{"name": "f", "arguments": "{}"}]
    server.script("gpt-4o", Reply("ok", tool_calls=calls, logprobs=[("o", -0.1), ("k", -0.2)]))
    stream = await server.async_client().chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, logprobs=True
    )
    chunks = [c async for c in stream]
    assert all(c.choices and c.usage is None for c in chunks)
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join(d.content or "" for d in deltas) == "ok"
    logprobs = [
        t.logprob for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content
    ]
    assert logprobs == [-0.1, -0.2]
    (call,) = [tc for d in deltas for tc in d.tool_calls or ()]
    assert (call.index, call.function.name, call.function.arguments) == (0, "f", "{}")


def test_stream_puts_logprobs_that_do_not_spell_the_content_on_its_first_chunk(
    server: ScriptedServer,
) -> None:
    server.script("gpt-4o-mini", Reply("ab cd", refusal="partly", logprobs=[("x", -1.0)]))
    chunks = list(ask(server, stream=True, logprobs=True))
    content = [c.choices[0] for c in chunks if c.choices[0].delta.content]
    assert "".join(c.delta.content for c in content) == "ab cd"
    assert [t.token for t in content[0].logprobs.content] == ["x"]
    assert content[1].logprobs is None
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks) == "partly"


# -- other endpoints and bookkeeping ---------------------------------------------------------


def test_models_lists_every_model_named_in_rules(server: ScriptedServer) -> None:
    server.script("gpt-4o-mini", "a").script(None, "b").fail("gpt-4o").script("gpt-4o-mini", "c")
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini", "gpt-4o"]
    assert models.data[0].owned_by == "cascade-testing"
    assert models.data[0].object == "model"


def test_unknown_path_is_404_and_bad_json_is_400(server: ScriptedServer) -> None:
    status, body = raw_http(server, "POST", "/v1/audio/speech", b"{}")
    assert status == 404
    assert body["error"]["type"] == "not_found_error"
    status, body = raw_http(server, "POST", "/v1/embeddings", b"{}")
    assert status == 400
    assert "input" in body["error"]["message"]
    status, body = raw_http(server, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400
    assert "invalid JSON" in body["error"]["message"]
    status, body = raw_http(server, "POST", "/v1/chat/completions", b"[1]")
    assert status == 400
    assert "not a JSON object" in body["error"]["message"]
    assert [r["_path"] for r in server.requests] == ["/v1/audio/speech", "/v1/embeddings"] + 2 * [
        "/v1/chat/completions"
    ]
    assert raw_http(server, "GET", "/models") == (200, {"object": "list", "data": []})  # no /v1


def test_requests_record_bodies_paths_and_headers(server: ScriptedServer) -> None:
    server.script(None, "ok")
    ask(server, "gpt-4o-mini", temperature=0)
    server.client(api_key="sk-other").models.list()
    ask(server, "gpt-4o")
    chat, models, last = server.requests
    assert chat["model"] == "gpt-4o-mini"
    assert chat["temperature"] == 0
    assert chat["messages"] == MSGS
    assert chat["_path"] == "/v1/chat/completions"
    assert chat["_headers"]["authorization"] == "Bearer sk-test"
    assert models["_path"] == "/v1/models"
    assert models["_headers"]["authorization"] == "Bearer sk-other"
    assert server.calls() == [chat, last]
    assert server.calls("gpt-4o") == [last]


def test_async_clients_are_closed_when_their_loop_ends(server: ScriptedServer) -> None:
    server.script(None, "ok")

    async def main() -> openai.AsyncOpenAI:
        client = server.async_client()
        await client.chat.completions.create(model="m", messages=MSGS)
        return client

    client = asyncio.run(main())
    assert client.is_closed()
    del client
    gc.collect()  # an unclosed socket would warn here, and warnings are errors


def test_base_url_needs_a_started_server_and_stop_is_quick() -> None:
    s = ScriptedServer(default="hi")
    with pytest.raises(RuntimeError, match="not started"):
        _ = s.base_url
    client = s.start().client()
    assert s.base_url == f"http://127.0.0.1:{s.port}/v1"
    assert (
        client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content == "hi"
    )
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    conn.request("GET", "/v1/models")
    assert conn.getresponse().read()  # and the connection is kept alive
    s.stop()  # returns although a kept-alive connection is still open
    conn.request("GET", "/v1/models")
    with pytest.raises((ConnectionError, http.client.HTTPException)):  # closed by the server
        conn.getresponse()
    conn.close()
    with pytest.raises(RuntimeError, match="closed"):  # stop() closed the client it made
        client.chat.completions.create(model="m", messages=MSGS)
