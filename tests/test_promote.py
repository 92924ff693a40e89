"""``cascade tasks promote``: validators inferred from the strong model's recorded answers."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from cascade.evals import infer_validators, promote
from cascade.exceptions import CascadeError, PolicyError
from cascade.policy import Policy
from cascade.stores import store_from_url

if TYPE_CHECKING:
    from pathlib import Path

FP = "ab" * 32


def test_json_answers_give_a_schema_with_the_keys_nearly_all_have() -> None:
    answers = [json.dumps({"label": "spam" if i % 3 else "ham", "score": i / 10, "id": i})
               for i in range(40)]  # fmt: skip
    answers[0] = json.dumps({"label": "ham", "id": 0})  # one answer without "score"
    answers[1] = json.dumps({"label": "ham", "score": 1, "id": 1, "note": "x"})
    (v,), notes = infer_validators(answers)
    schema = v["schema"]
    assert v["type"] == "json_schema"
    assert schema["required"] == ["id", "label", "score"]  # score: 39 of 40, note: 1 of 40
    assert schema["properties"]["label"] == {"type": "string", "enum": ["ham", "spam"]}
    assert schema["properties"]["score"] == {"type": "number"}
    assert "label: one of 2 values in 40 answers" in notes


def test_a_small_label_set_gives_a_match_regex_and_free_text_length_bounds() -> None:
    (v,), _ = infer_validators(["yes", "no", " yes", "maybe"] * 5)
    assert v["type"] == "structure" and v["match"] == [r"^\s*(?:maybe|no|yes)\s*$"]
    (v,), notes = infer_validators([f"A reply of some length {'x' * i}" for i in range(30)])
    assert (v["min_chars"], v["max_chars"]) == (11, 2 * (23 + 29))
    assert "30 answers of 23 to 52 characters" in notes[0]


def test_promote_needs_a_discovered_task_with_strong_answers(tmp_path: Path, make_record) -> None:
    store = store_from_url("memory://")
    store.add(make_record(task="plain"))
    with pytest.raises(CascadeError, match="no recorded call of a discovered task"):
        promote(store, "plain", tmp_path)
    with pytest.raises(CascadeError, match="not a task name"):
        promote(store, "../etc", tmp_path)
    # Counted but never kept whole (a passing call outside the sample): says why.
    store.add(make_record(task="quiet-abc123", escalated=False, sampled=False))
    with pytest.raises(CascadeError, match="no call of that name is stored whole"):
        promote(store, "quiet-abc123", tmp_path)


def test_a_promoted_policy_loads_and_one_that_would_not_is_never_written(
    tmp_path: Path, make_record
) -> None:
    store = store_from_url("memory://")
    info = {"fingerprint": FP, "models": ["gpt-4o-mini", "gpt-4o"], "prompt": "p", "tools": []}
    store.add(replace(make_record(task="t-abc123"), extra={"discovered": info}))
    done = promote(store, "t-abc123", tmp_path)
    assert Policy.load(done.path).spec.match.fingerprint == FP
    bad = replace(
        make_record(task="u-abc123"), extra={"discovered": {**info, "models": ["gpt-4o"]}}
    )
    store.add(bad)
    with pytest.raises(PolicyError, match="would not load"):
        promote(store, "u-abc123", tmp_path)
    assert not (tmp_path / "u-abc123.yaml").exists()


def test_a_tool_task_gets_no_check_learnt_from_its_text_answers(
    tmp_path: Path, make_record
) -> None:
    # Length bounds learnt from the agent's final text turns would reject its tool-call turns
    # (no text); the request's own tools judge those.
    store = store_from_url("memory://")
    info = {"fingerprint": FP, "models": ["gpt-4o-mini", "gpt-4o"], "prompt": "p",
            "tools": ["lookup"]}  # fmt: skip
    for n in range(4):
        record = make_record(task="agent-abc123")
        strong = replace(record.attempts[-1], output="" if n % 2 else "The total is 10.",
                         finish_reason="tool_calls" if n % 2 else "stop")  # fmt: skip
        store.add(replace(record, attempts=(record.attempts[0], strong),
                          extra={"discovered": info}))  # fmt: skip
    done = promote(store, "agent-abc123", tmp_path)
    assert done.answers == 4
    assert Policy.load(done.path).spec.validators == []
    assert "2 are tool calls, 2 text" in done.text
