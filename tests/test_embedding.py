"""The embedding comparator: observe mode compares answers by the cosine of their embeddings
(from the provider's ``/v1/embeddings``) where text comparison disagrees."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import cascade
from cascade.cli import main
from cascade.judge import cosine
from cascade.testing import ReplayServer, ScriptedServer
from cascade.testing.embeddings import embedding

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MSGS = [{"role": "user", "content": "Where is the Eiffel tower?"}]
EMBED = "text-embedding-3-small"


@pytest.fixture
def make(tmp_path: Path, server: ScriptedServer) -> Callable[..., cascade.Cascade]:
    def factory(**agreement: Any) -> cascade.Cascade:
        policy = {
            "models": ["gpt-4o-mini", "gpt-4o"],
            "mode": "observe",
            "agreement": {"comparator": "embedding", "model": EMBED, "min": 0.9, **agreement},
        }
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(policy))
        return cascade.Cascade(tmp_path, client=server.client(), store="memory://")

    return factory


def observed(c: cascade.Cascade) -> list[cascade.CallRecord]:
    c.close()
    return [r for r in c.store.records(task="t") if r.observation is not None]


def embeddings_asked(server: ScriptedServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["_path"].endswith("/embeddings")]


def test_the_test_server_embeds_words_deterministically(server: ScriptedServer) -> None:
    got = server.client().embeddings.create(
        model=EMBED, input=["Paris is in France", "In France is Paris", "Lyon"]
    )
    a, b, c = (d.embedding for d in got.data)
    assert a == embedding("paris is in france")
    assert cosine(a, b) == pytest.approx(1.0) and abs(cosine(a, c) or 0.0) < 0.5
    assert got.usage.prompt_tokens > 0


def test_similar_answers_agree_priced_from_the_table_and_recorded(make, server) -> None:
    server.script("gpt-4o", "The Eiffel tower is in Paris, France.")
    server.script("gpt-4o-mini", "In Paris, France, is the Eiffel tower")  # same words
    c = make()
    c.run("t", MSGS)
    (rec,) = observed(c)
    obs = rec.observation
    assert obs.verdict == "equivalent" and obs.agree is True and obs.comparator == "embedding"
    (asked,) = embeddings_asked(server)
    assert asked["model"] == EMBED and len(asked["input"]) == 2  # both answers, one call
    (attempt,) = [a for a in rec.attempts if a.purpose == "embed"]
    (similarity,) = attempt.verdicts
    assert similarity.passed and similarity.score == pytest.approx(1.0)
    # text-embedding-3-small is in prices.json: $0.02 per million input tokens.
    assert obs.judge_cost_usd == pytest.approx(attempt.prompt_tokens * 0.02 / 1e6)
    assert obs.judge_cost_usd > 0
    assert rec.cost_usd == pytest.approx(
        obs.strong_cost_usd + obs.cheap_cost_usd + obs.judge_cost_usd
    )


def test_dissimilar_answers_disagree_and_verdicts_are_cached(make, server) -> None:
    server.script("gpt-4o", "The Eiffel tower is in Paris.")
    server.script("gpt-4o-mini", "It stands in Lyon, I believe.")
    c = make()

    async def twice() -> None:  # one after the other: the first verdict is cached
        for _ in range(2):
            await c.arun("t", MSGS)
            await c.drain()
        await c.aclose()

    asyncio.run(twice())
    records = observed(c)
    assert [(r.observation.verdict, r.observation.agree) for r in records] == [
        ("different", False),
        ("different", False),
    ]
    assert len(embeddings_asked(server)) == 1
    scores = [
        v.score for r in records for a in r.attempts if a.purpose == "embed" for v in a.verdicts
    ]
    assert len(scores) == 1 and scores[0] < 0.9


def test_no_embeddings_call_where_the_cheaper_comparator_agrees(make, server) -> None:
    server.script("gpt-4o", "Paris.")
    server.script("gpt-4o-mini", "paris")
    c = make()
    c.run("t", MSGS)
    (rec,) = observed(c)
    assert rec.observation.verdict == "equivalent" and rec.observation.judge_cost_usd == 0
    assert embeddings_asked(server) == []


def test_an_unpriced_embedding_model_makes_the_cost_unknown_not_zero(make, server) -> None:
    server.script("gpt-4o", "The Eiffel tower is in Paris.")
    server.script("gpt-4o-mini", "It stands in Lyon, I believe.")
    c = make(model="my-embedder")
    with pytest.warns(UserWarning, match="no price known for model 'my-embedder'"):
        c.run("t", MSGS)
    (rec,) = observed(c)
    assert rec.observation.verdict == "different"
    assert rec.observation.judge_cost_usd is None and rec.cost_usd is None


@pytest.mark.parametrize("status", [500, 400])
def test_an_error_from_the_embeddings_endpoint_gives_unknown_never_an_exception(
    make, server, status: int
) -> None:
    server.script("gpt-4o", "One.")
    server.script("gpt-4o-mini", "Two.")
    server.fail(EMBED, status)
    c = make()
    assert c.run("t", MSGS).output == "One."
    (rec,) = observed(c)
    assert rec.observation.verdict == "unknown" and rec.observation.agree is None
    assert len(embeddings_asked(server)) == 1


def test_the_report_counts_the_unknown_verdicts(make, server, capsys) -> None:
    server.script("gpt-4o", "One.")
    server.script("gpt-4o-mini", "Two.")
    server.fail(EMBED, 500)
    c = make()
    c.run("t", MSGS)
    c.run("t", [{"role": "user", "content": "again"}])
    c.close()
    from cascade.report import build_report

    (task,) = build_report(c.store).tasks
    assert (task.observation.judged, task.observation.judge_unknown) == (2, 1)


def test_embedding_needs_a_model_and_a_min() -> None:
    for agreement, message in (
        ({"comparator": "embedding", "min": 0.9}, "needs a model"),
        ({"comparator": "embedding", "model": EMBED}, "needs min"),
    ):
        with pytest.raises(cascade.PolicyError, match=message):
            cascade.Policy.from_dict({"models": ["a", "b"], "agreement": agreement}, task="t")


def test_both_transports_make_embeddings_calls() -> None:
    from cascade.events import Call, Completion, Failure, Request
    from cascade.transports import DirectTransport, OpenAITransport

    call = Call(EMBED, Request((), {"input": ["a b", "c d"]}), "embed")
    empty = Call(EMBED, Request((), {"input": ["", "x"]}), "embed")
    with ScriptedServer() as s:
        sdk = OpenAITransport(s.client())
        got, bad = sdk.call(call), sdk.call(empty)
        sdk.close()

        async def direct() -> tuple[Any, Any]:
            transport = DirectTransport(s.async_client())
            try:
                return await transport.acall(call), await transport.acall(empty)
            finally:
                await transport.aclose()

        got_direct, bad_direct = asyncio.run(direct())
    expected = [pytest.approx(embedding("a b")), pytest.approx(embedding("c d"))]
    for answer in (got, got_direct):
        assert isinstance(answer, Completion) and list(map(list, answer.vectors)) == expected
        assert answer.prompt_tokens == 2 and answer.usage_known
    for refused in (bad, bad_direct):
        assert isinstance(refused, Failure) and refused.status == 400


def recorded(idx: int, mini: str, big: str) -> dict[str, Any]:
    def out(answer: str) -> dict[str, Any]:
        return {"answer": answer, "raw_confidence": -0.01, "correct": True,
                "tokens_in": 50, "tokens_out": 5}  # fmt: skip

    return {
        "dataset": "d", "split": "train", "idx": idx, "conf_signal": "ModelIntrinsicLogProb",
        "system_prompt": "", "user_prompt": f"question {idx}",
        "models": {"gpt-4o-mini": out(mini), "gpt-4o": out(big)},
    }  # fmt: skip


def test_calibrate_from_store_uses_the_embedding_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 300 confident observed calls whose answers never match as text: the cheap one says the
    # same in other words on 298 (alike by embedding) and something else on 2 (one of which
    # the embeddings endpoint fails on: unknown, a loss). Text agreement certifies nothing;
    # the embedding verdicts certify keeping the cheap answers.
    rows = []
    for i in range(300):
        if i < 2:
            rows.append(recorded(i, f"no idea about item {i}", f"the answer is blue {i}"))
        else:
            rows.append(recorded(i, f"blue {i} is the answer", f"the answer is blue {i}"))
    store = f"sqlite:///{tmp_path / 'obs.sqlite3'}"
    pol = tmp_path / "policies"
    pol.mkdir()
    base = {
        "models": ["gpt-4o-mini", "gpt-4o"],
        "mode": "observe",
        "validators": [{"type": "confidence", "source": "logprobs", "min": 0.5}],
    }
    for agreement, task in (
        ({"comparator": "normalized"}, "text"),
        ({"comparator": "embedding", "model": EMBED, "min": 0.95}, "embedded"),
    ):
        (pol / f"{task}.yaml").write_text(yaml.safe_dump({**base, "agreement": agreement}))
    with ReplayServer(rows) as server:
        server.fail(EMBED, 500)  # one embeddings error: an unknown verdict, a loss
        c = cascade.Cascade(pol, client=server.client(), store=store)
        for task in ("text", "embedded"):
            for r in rows:
                c.run(task, [{"role": "user", "content": r["user_prompt"]}])
        c.close()
    args = ["calibrate", "--target", "0.97", "--from-store", "--store", store]
    assert main([*args, "--task", "text", "--policies", str(pol)]) == 1
    capsys.readouterr()
    assert main([*args, "--task", "embedded", "--policies", str(pol), "--write"]) == 0
    out = capsys.readouterr().out
    assert "cheap model agrees with the strong one on 99.3%" in out
    assert "different 1" in out and "equivalent 298" in out and "unknown 1" in out
    assert "unknown verdicts count as losses" in out and "embedding cost $" in out
    assert "wrote min:" in out
