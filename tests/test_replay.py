"""The replay server answers from recorded outputs, through the real openai SDK."""

from __future__ import annotations

import csv
import json
import math
from typing import TYPE_CHECKING, Any

import openai
import pytest

from cascade.testing.replay import ReplayServer, load_recorded, load_routellm

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SYSTEM = "Answer with A, B, C or D."


def model(
    answer: str, conf: float, correct: bool = True, tin: int = 117, tout: int = 1
) -> dict[str, Any]:
    return {
        "answer": answer,
        "raw_confidence": conf,
        "correct": correct,
        "cost_usd": 1e-5,
        "tokens_in": tin,
        "tokens_out": tout,
        "latency_ms": 300.0,
        "judge": None,
    }


MMLU = {
    "dataset": "mmlu",
    "split": "test",
    "chain": "qwen_oai",
    "idx": 0,
    "conf_signal": "ModelIntrinsicLogProb",
    "system_prompt": SYSTEM,
    "user_prompt": "Question: 2+2?\nA: 3\nB: 4\n\nAnswer: ",
    "gold": {"answer_letter": "B"},
    "models": {"gpt-4o-mini": model("B", -0.25), "gpt-4o": model("B", -0.01)},
}
TRIVIA = {
    "dataset": "triviaqa",
    "split": "train",
    "chain": "qwen_oai",
    "idx": 3,
    "conf_signal": "AskModelConfidence",
    "system_prompt": "Answer directly.",
    "user_prompt": "Question: Which island has Goat Fell?\n\nAnswer: ",
    "gold": None,
    "models": {
        "gpt-4o-mini": model("Arran", math.log(0.8), tin=75, tout=2),
        "gpt-4o": model("Arran", float("-inf"), tin=75, tout=2),
    },
}


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer([MMLU, TRIVIA]) as s:
        yield s


def ask(server: ReplayServer, record: dict[str, Any], name: str, **kw: Any) -> Any:
    with server.client() as client:  # closed: no socket left for the garbage collector
        return create(client, record, name, **kw)


def create(client: openai.OpenAI, record: dict[str, Any], name: str, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=name,
        messages=[
            {"role": "system", "content": record["system_prompt"]},
            {"role": "user", "content": record["user_prompt"]},
            *kw.pop("more", []),
        ],
        **kw,
    )


def test_answer_carries_the_recorded_answer_tokens_and_logprob(server: ReplayServer) -> None:
    r = ask(server, MMLU, "gpt-4o-mini", logprobs=True, top_logprobs=5)
    assert r.choices[0].message.content == "B"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (117, 1)
    (tok,) = r.choices[0].logprobs.content
    assert tok.token == "B"
    assert tok.logprob == pytest.approx(-0.25)


def test_each_model_gets_its_own_recording(server: ReplayServer) -> None:
    r = ask(server, MMLU, "gpt-4o", logprobs=True)
    assert r.choices[0].logprobs.content[0].logprob == pytest.approx(-0.01)


def test_verification_follow_up_answers_yes_with_the_recorded_probability(
    server: ReplayServer,
) -> None:
    more = [
        {"role": "assistant", "content": "Arran"},
        {"role": "user", "content": "Is the proposed answer correct? Answer Yes or No."},
    ]
    r = ask(
        server,
        TRIVIA,
        "gpt-4o-mini",
        more=more,
        logprobs=True,
        top_logprobs=5,
        max_tokens=1,
    )
    (tok,) = r.choices[0].logprobs.content
    top = {a.token: a.logprob for a in tok.top_logprobs}
    assert math.exp(top["Y"]) == pytest.approx(0.8)
    assert math.exp(top["N"]) == pytest.approx(0.2)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (75 + 2 + 20, 1)


def test_a_certain_no_is_sent_as_a_finite_logprob(server: ReplayServer) -> None:
    more = [{"role": "assistant", "content": "Arran"}, {"role": "user", "content": "Correct?"}]
    r = ask(server, TRIVIA, "gpt-4o", more=more, logprobs=True, top_logprobs=5)
    assert math.exp(r.choices[0].logprobs.content[0].logprob) == 0.0


def test_a_reask_gets_the_recorded_answer_again(server: ReplayServer) -> None:
    more = [
        {"role": "assistant", "content": "Arran"},
        {
            "role": "user",
            "content": "Your previous answer did not pass these checks:\n- x: y\nAnswer again.",
        },
    ]
    r = ask(server, TRIVIA, "gpt-4o-mini", more=more)
    assert r.choices[0].message.content == "Arran"


def test_unknown_query_or_model_is_a_400_saying_what_is_missing(server: ReplayServer) -> None:
    with server.client() as client, pytest.raises(openai.BadRequestError, match="no recorded"):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "unheard of"}]
        )
    with pytest.raises(openai.BadRequestError, match="was not recorded"):
        ask(server, MMLU, "gpt-5")


def test_duplicate_prompts_are_told_apart_by_the_user_field() -> None:
    twin = {**MMLU, "idx": 9, "models": {"gpt-4o-mini": model("C", -1.0), "gpt-4o": model("B", 0)}}
    with ReplayServer([MMLU, twin]) as s:
        assert ask(s, MMLU, "gpt-4o-mini").choices[0].message.content == "B"
        r = ask(s, MMLU, "gpt-4o-mini", user="mmlu/test/9")
        assert r.choices[0].message.content == "C"


async def test_async_client_works_too(server: ReplayServer) -> None:
    async with server.async_client() as client:
        r = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": MMLU["user_prompt"]},
            ],
        )
    assert r.choices[0].message.content == "B"


def test_loads_jsonl_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps(MMLU) + "\n\n" + json.dumps(TRIVIA) + "\n")
    assert [r["idx"] for r in load_recorded(tmp_path)] == [0, 3]
    with ReplayServer(tmp_path / "a.jsonl") as s:
        assert ask(s, TRIVIA, "gpt-4o").choices[0].message.content == "Arran"


def test_routellm_loader_drops_contaminated_prompts_and_estimates_tokens(tmp_path: Path) -> None:
    cheap, strong = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    with (tmp_path / "gsm8k_responses.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", cheap, strong, f"{cheap}_response", f"{strong}_response"])
        w.writerow(["How many? " * 4, "True", "False", " 2 + 2 = 4\n#### 4", "It is 5."])
        w.writerow(["Leaked prompt", "True", "True", "#### 1", "#### 1"])
    (tmp_path / "gsm8k_contaminated_prompts.jsonl").write_text(
        json.dumps({"train_prompt": "x", "eval_prompt": "Leaked prompt"}) + "\n"
    )
    (rec,) = load_routellm(tmp_path)
    assert rec["models"][cheap]["correct"]
    assert not rec["models"][strong]["correct"]
    assert rec["models"][cheap]["answer"] == "2 + 2 = 4\n#### 4"
    assert rec["models"][cheap]["tokens_in"] == len("How many? " * 4) // 4
    with ReplayServer([rec]) as s, s.client() as client:
        r = client.chat.completions.create(
            model=strong, messages=[{"role": "user", "content": "How many? " * 4}]
        )
        assert r.choices[0].message.content == "It is 5."


def test_the_replay_module_imports_on_its_own() -> None:
    """``cascade.testing.replay`` builds on ``cascade.testing.scripted``; the package
    re-exports both: either can be imported first, in a fresh interpreter."""
    import subprocess
    import sys

    for first in ("cascade.testing.replay", "cascade.testing"):
        code = f"import {first}; from cascade.testing import ReplayServer; print(ReplayServer)"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "cascade.testing.replay.ReplayServer" in done.stdout
