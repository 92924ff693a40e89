"""``Cascade(transport=...)``: the seam every model call goes through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml

import cascade
from cascade.events import Completion, Failure
from cascade.transports import OpenAITransport, Transport

if TYPE_CHECKING:
    from pathlib import Path

    from cascade._engine import Call, Reply

POLICY = {
    "models": ["cheap", "strong"],
    "validators": [{"type": "json_schema", "schema": {"type": "object", "required": ["total"]}}],
    "prices": {"cheap": {"input": 1, "output": 1}, "strong": {"input": 10, "output": 10}},
}
MSGS = [{"role": "user", "content": "total?"}]


class Answers:
    """A transport of the user's own: answers from a dict, by model, with no HTTP."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str]] = []
        self.closed: list[str] = []

    def _reply(self, call: Call) -> Reply:
        self.calls.append((call.model, call.purpose))
        text = self.answers.get(call.model)
        if text is None:
            return Failure(call.model, "server_error", "down", 503)
        return Completion(call.model, text, call.request, prompt_tokens=10, completion_tokens=2)

    def call(self, call: Call) -> Reply:
        return self._reply(call)

    async def acall(self, call: Call) -> Reply:
        return self._reply(call)

    def close(self) -> None:
        self.closed.append("close")

    async def aclose(self) -> None:
        self.closed.append("aclose")


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(POLICY))
    return tmp_path


def test_a_users_transport_performs_every_call(policies: Path) -> None:
    t = Answers({"cheap": "no json", "strong": '{"total": 3}'})
    assert isinstance(t, Transport)
    with cascade.Cascade(policies, transport=t, store="memory://") as c:
        r = c.run("t", MSGS)
    assert r.model == "strong" and r.escalated and r.parsed == {"total": 3}
    assert t.calls == [("cheap", "answer"), ("strong", "answer")]
    assert r.cost_usd == pytest.approx((10 * 1 + 2 * 1 + 10 * 10 + 2 * 10) / 1e6)
    assert t.closed == ["close"]  # a Cascade closes its transport with itself


async def test_the_async_driver_uses_the_transport_too(policies: Path) -> None:
    t = Answers({"strong": '{"total": 3}'})  # the cheap model is down
    async with cascade.Cascade(policies, transport=t, store="memory://") as c:
        r = await c.arun("t", MSGS)
    assert r.model == "strong" and r.attempts[0].error == "server_error 503: down"
    assert t.closed[0] == "aclose"


def test_a_transport_and_clients_together_are_refused(policies: Path) -> None:
    import openai

    client = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError, match="transport or clients"):
        cascade.Cascade(policies, transport=Answers({}), client=client)
    client.close()


def test_the_default_transport_is_the_openai_sdk(policies: Path) -> None:
    c = cascade.Cascade(policies, store="memory://")
    assert isinstance(c.transport, OpenAITransport)
    c.close()


def test_a_call_that_raises_closes_the_engine_flow(policies: Path) -> None:
    """The driver ends the engine's generator when performing a call raises, so nothing is
    left suspended (its ``finally`` blocks run)."""

    class Broken(Answers):
        def call(self, call: Call) -> Reply:
            raise RuntimeError("transport bug")

    ended: list[bool] = []

    def flow() -> Any:
        try:
            yield "first call"
        finally:
            ended.append(True)

    c = cascade.Cascade(policies, transport=Broken({}), store="memory://")
    with pytest.raises(RuntimeError, match="transport bug"):
        c._drive(flow())
    assert ended == [True]
    c.close()
