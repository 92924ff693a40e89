"""A 400 on a discovered task: the cheap rung's escalates, the requested model's reaches the client.

The cheap rung of a discovered task is a model the application never chose; it may refuse a
parameter the requested model takes (``reasoning_effort``), so its 400 goes on up the ladder
(``escalate_status: [400]``). The strongest rung is the model the application asked for: its
400 is about the client's request, and reaches the client as the upstream sent it, in every
mode and through every front (``cascade serve``, ``cascade.wrap``, ``Cascade.run``).

The upstream is a ``ScriptedServer``: the cheap model breaks the request's own schema, the
strong model answers well unless a test makes it refuse.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import openai
import pytest

import cascade
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

GOOD = {"number": "INV-1", "total": 10}
BAD = {"number": "INV-1", "total": "ten"}
MESSAGES = [
    {"role": "system", "content": "Extract the invoice fields from the message as JSON."},
    {"role": "user", "content": "Invoice INV-1 over 10 EUR"},
]
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
REFUSAL = "Unsupported parameter: 'reasoning_effort' is not supported with this model."
OWN_400 = "Invalid value for 'temperature': must be at most 2."


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        s.script("gpt-4o-mini", json.dumps(BAD))
        s.script("gpt-4o", json.dumps(GOOD))
        yield s


class Front:
    """One way a client reaches the cascade: ``create`` is its chat.completions.create."""

    def __init__(self, kind: str, upstream: ScriptedServer, tmp_path: Path, mode: str) -> None:
        policies = tmp_path / "policies"
        policies.mkdir(exist_ok=True)
        self.kind = kind
        self.server: ProxyServer | None = None
        self.client: Any
        if kind == "proxy":
            config = ProxyConfig(discover={"mode": mode})
            self.cascade, up = proxy_cascade(
                policies, "memory://", config, base_url=upstream.base_url, api_key="sk",
                max_retries=0,
            )  # fmt: skip
            self.server = ProxyServer(create_app(self.cascade, config, up)).start()
            self.client = openai.OpenAI(base_url=self.server.base_url, api_key="k", max_retries=0)
        else:
            self.client = upstream.client(max_retries=0)
            self.cascade = cascade.Cascade(
                policies, client=self.client, store="memory://", discover={"mode": mode}
            )
            if kind == "wrap":
                self.client = cascade.wrap(self.client, cascade=self.cascade)

    def create(self, **params: Any) -> Any:
        if self.kind == "run":
            return self.cascade.run(None, MESSAGES, model="gpt-4o", **params)
        return self.client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, **params
        )

    def records(self) -> list[Any]:
        """The calls stored, once every observation has finished."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.cascade.close()  # waits for the observations still running
        self.client.close()
        self.cascade.store.flush()
        return list(self.cascade.store.records())

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.cascade.close()
        self.client.close()


@pytest.fixture
def front(request: pytest.FixtureRequest, upstream: ScriptedServer, tmp_path: Path) -> Any:
    def make(kind: str, mode: str) -> Front:
        made = Front(kind, upstream, tmp_path, mode)
        request.addfinalizer(made.close)
        return made

    return make


FRONTS = ["proxy", "wrap", "run"]


def _answer(front: Front, got: Any) -> tuple[Any, str]:
    """The parsed answer and the model that gave it."""
    if front.kind == "run":
        return json.loads(got.output), got.model
    return json.loads(got.parse().choices[0].message.content), got.headers["x-cascade-model"]


@pytest.mark.parametrize("kind", FRONTS)
@pytest.mark.parametrize("mode", ["cascade", "observe"])
def test_a_400_from_the_cheap_rung_goes_on_to_the_requested_model(
    front: Any, upstream: ScriptedServer, kind: str, mode: str
) -> None:
    upstream.fail("gpt-4o-mini", 400, message=REFUSAL)
    f = front(kind, mode)
    got = f.create(response_format=SCHEMA_FORMAT, reasoning_effort="low")
    assert _answer(f, got) == (GOOD, "gpt-4o")
    (record,) = f.records()
    cheap = [a for a in record.attempts if a.model == "gpt-4o-mini"]
    assert len(cheap) == 1 and cheap[0].error.startswith("client_error 400")
    assert REFUSAL in cheap[0].error


def _raised_400(f: Front, **params: Any) -> None:
    """The call raises the upstream's own 400: the SDK's BadRequestError carrying its error
    object over HTTP, ``ProviderError`` (its cause the SDK's error) from ``Cascade.run``."""
    if f.kind == "run":
        with pytest.raises(cascade.ProviderError) as provider:
            f.create(**params)
        assert (provider.value.status, provider.value.model) == (400, "gpt-4o")
        assert isinstance(provider.value.__cause__, openai.BadRequestError)
        assert OWN_400 in str(provider.value)
        return
    with pytest.raises(openai.BadRequestError) as raised:
        f.create(**params)
    assert raised.value.status_code == 400
    assert isinstance(raised.value.body, dict) and raised.value.body["message"] == OWN_400
    assert raised.value.response.headers["x-cascade-task"].startswith("extract-the-invoice-")


@pytest.mark.parametrize("kind", FRONTS)
def test_the_requested_models_400_beats_a_cheap_answer_that_failed_validation(
    front: Any, upstream: ScriptedServer, kind: str
) -> None:
    # Cascade mode: the cheap answer breaks the schema, the requested model refuses the
    # request itself. The client's request was at fault: it hears so, not the bad answer.
    upstream.fail("gpt-4o", 400, message=OWN_400)
    f = front(kind, "cascade")
    _raised_400(f, response_format=SCHEMA_FORMAT, temperature=9)
    assert [c["model"] for c in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"]
    assert f.records() == []  # a refused request is not a call the cascade answered


@pytest.mark.parametrize("kind", FRONTS)
def test_observe_mode_relays_the_requested_models_400(
    front: Any, upstream: ScriptedServer, kind: str
) -> None:
    # Observe mode: the requested model answers the client; its refusal is the client's, and
    # is no failed call of the task's (with a cost of "unknown").
    upstream.fail("gpt-4o", 400, message=OWN_400)
    f = front(kind, "observe")
    _raised_400(f, temperature=9)
    assert f.records() == []


def test_a_cheap_refusal_then_the_requested_models_own_400(
    front: Any, upstream: ScriptedServer
) -> None:
    upstream.fail("gpt-4o-mini", 400, message=REFUSAL)
    upstream.fail("gpt-4o", 400, message=OWN_400)
    _raised_400(front("proxy", "cascade"), reasoning_effort="low", temperature=9)
    assert [c["model"] for c in upstream.calls()] == ["gpt-4o-mini", "gpt-4o"]


def test_a_configured_policy_keeps_400_fatal_on_the_cheap_rung(
    upstream: ScriptedServer, tmp_path: Path
) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"models": ["gpt-4o-mini", "gpt-4o"]}))
    upstream.fail("gpt-4o-mini", 400, message=REFUSAL)
    c = cascade.Cascade(tmp_path, client=upstream.client(max_retries=0), store="memory://")
    with pytest.raises(cascade.ProviderError) as raised:
        c.run("t", MESSAGES)
    c.close()
    assert (raised.value.status, raised.value.model) == (400, "gpt-4o-mini")
    assert [r["model"] for r in upstream.calls()] == ["gpt-4o-mini"]


@pytest.mark.parametrize("mode", ["cascade", "observe"])
def test_a_streamed_request_gets_the_requested_models_400_too(
    front: Any, upstream: ScriptedServer, mode: str
) -> None:
    upstream.fail("gpt-4o", 400, message=OWN_400)
    f = front("proxy", mode)
    _raised_400(f, response_format=SCHEMA_FORMAT, stream=True)
    assert f.records() == []
