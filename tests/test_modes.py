"""Policy modes: strong, cheap, and observe (the strong model answers, the cheap one is watched)."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import cascade
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MSGS = [{"role": "user", "content": "Invoice INV-1, total 10"}]
GOOD = json.dumps({"invoice_number": "INV-1", "total": 10})
VALIDATORS = [{"type": "json_schema", "schema": {"type": "object", "required": ["total"]}}]


@pytest.fixture
def make(tmp_path: Path, server: ScriptedServer) -> Callable[..., cascade.Cascade]:
    def factory(**policy: Any) -> cascade.Cascade:
        policy.setdefault("models", ["gpt-4o-mini", "gpt-4o"])
        policy.setdefault("validators", VALIDATORS)
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
        return cascade.Cascade(tmp_path, client=server.client(), store="memory://")

    return factory


def test_strong_mode_calls_only_the_strongest_model(make, server) -> None:
    server.script("gpt-4o", GOOD)
    r = make(mode="strong").run("t", MSGS)
    assert [c["model"] for c in server.calls()] == ["gpt-4o"]
    assert r.ok and r.mode == "strong" and r.cost_usd == r.baseline_cost_usd


def test_cheap_mode_never_escalates_and_records_verdicts(make, server) -> None:
    server.script("gpt-4o-mini", "not json")
    r = make(mode="cheap", on_exhausted="raise").run("t", MSGS)
    assert [c["model"] for c in server.calls()] == ["gpt-4o-mini"]
    assert not r.ok and r.attempts[0].verdicts[0].reason.startswith("no JSON")


def observed(c: cascade.Cascade) -> list[cascade.CallRecord]:
    c.close()  # waits for observation threads and flushes the store (idempotent)
    return [r for r in c.store.records(task="t") if r.observation is not None]


def test_observe_answers_with_the_strong_model_and_records_the_would_be_decision(
    make, server
) -> None:
    server.script("gpt-4o", Reply(content=GOOD, prompt_tokens=100, completion_tokens=10))
    server.script("gpt-4o-mini", Reply(content=GOOD, prompt_tokens=100, completion_tokens=10))
    c = make(mode="observe", agreement={"comparator": "json"})
    r = c.run("t", MSGS)
    assert r.model == "gpt-4o" and r.output == GOOD and not r.escalated
    (rec,) = observed(c)
    info = rec.observation.to_dict()
    assert info["decision"] == "accept" and info["agree"] is True
    assert [a.model for a in rec.attempts] == ["gpt-4o", "gpt-4o-mini"]
    assert info["strong_cost_usd"] == (100 * 2.5 + 10 * 10) / 1e6
    assert info["cheap_cost_usd"] == (100 * 0.15 + 10 * 0.6) / 1e6
    assert info["projected_cost_usd"] == info["cheap_cost_usd"]
    assert rec.cost_usd == pytest.approx(info["strong_cost_usd"] + info["cheap_cost_usd"])


def test_observe_records_an_escalation_the_cascade_would_have_made(make, server) -> None:
    server.script("gpt-4o", GOOD)
    server.script("gpt-4o-mini", "the total is ten")
    c = make(mode="observe")
    assert c.run("t", MSGS).output == GOOD
    (rec,) = observed(c)
    info = rec.observation.to_dict()
    assert info["decision"] == "escalate" and info["reasons"][0].startswith("json_schema:")
    assert info["agree"] is False


def test_observe_compares_with_the_strong_answer_even_when_it_fails_a_validator(
    make, server
) -> None:
    # Both answers fail the schema: the strong one is still what the caller got.
    server.script("gpt-4o", "the total is ten")
    server.script("gpt-4o-mini", "The total is ten.")
    c = make(mode="observe", agreement={"comparator": "normalized"})
    result = c.run("t", MSGS)
    assert result.output == "the total is ten" and not result.ok
    (rec,) = observed(c)
    assert rec.observation.to_dict()["agree"] is True


def test_observe_never_fails_the_caller_when_the_cheap_model_errors(make, server) -> None:
    server.script("gpt-4o", GOOD)
    server.script("gpt-4o-mini", Reply(status=401))
    c = make(mode="observe")
    assert c.run("t", MSGS).output == GOOD
    (rec,) = observed(c)
    assert rec.observation.to_dict()["decision"] == "escalate"


def test_observe_sample_zero_observes_nothing(make, server) -> None:
    server.script("gpt-4o", GOOD)
    c = make(mode="observe", observe_sample=0.0)
    c.run("t", MSGS)
    assert observed(c) == [] and [x["model"] for x in server.calls()] == ["gpt-4o"]


async def test_async_observe_runs_the_cheap_model_concurrently(make, server) -> None:
    cheap_arrived = threading.Event()

    def strong(body: dict[str, Any]) -> Reply:
        # Answers only once the cheap request is in flight: run one after the other,
        # the strong call would wait out the timeout and fail.
        return Reply(content=GOOD) if cheap_arrived.wait(5) else Reply(status=500)

    def cheap(body: dict[str, Any]) -> Reply:
        cheap_arrived.set()
        return Reply(content=GOOD)

    server.script("gpt-4o", strong).script("gpt-4o-mini", cheap)
    c = make(mode="observe")
    r = await c.arun("t", MSGS)
    await c.aclose()
    assert r.model == "gpt-4o" and r.ok
    (rec,) = observed(c)
    assert rec.observation.to_dict()["decision"] == "accept"
