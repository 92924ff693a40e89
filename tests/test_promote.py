"""``cascade tasks promote``: validators inferred from the strong model's recorded answers."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import openai
import pytest
import yaml

import cascade
from cascade.evals import infer_validators, promote
from cascade.exceptions import CascadeError, PolicyError
from cascade.policy import Policy
from cascade.proxy import ProxyConfig, ProxyServer, create_app
from cascade.proxy.server import proxy_cascade
from cascade.stores import store_from_url
from cascade.testing import Reply, ScriptedServer

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
    for name in ("../etc", "plain\n"):  # "$" alone would take a name ending in a newline
        with pytest.raises(CascadeError, match="not a task name"):
            promote(store, name, tmp_path)
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


def test_a_name_shared_by_two_fingerprints_is_not_promoted(tmp_path: Path, make_record) -> None:
    # Names are 24 bits of the digest and can be ground to collide: one policy learnt from
    # both fingerprints' answers would judge one task by another's.
    store = store_from_url("memory://")
    info = {"fingerprint": FP, "models": ["gpt-4o-mini", "gpt-4o"], "prompt": "p", "tools": []}
    other = {**info, "fingerprint": "cd" * 32}
    store.add(replace(make_record(task="t-abc123"), extra={"discovered": info}))
    store.add(replace(make_record(task="t-abc123"), extra={"discovered": other}))
    with pytest.raises(CascadeError, match="2 fingerprints") as raised:
        promote(store, "t-abc123", tmp_path)
    assert "abababababababab" in str(raised.value) and "cdcdcdcdcdcdcdcd" in str(raised.value)
    assert not (tmp_path / "t-abc123.yaml").exists()


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


# Every line break YAML knows, each followed by what would be a policy field of its own.
EVIL = "\nstore_outputs: full\r\u2028prices: {}\x85mode: cascade\u2029derive: false"
SHOWN = r"\nstore_outputs: full\r\u2028prices: {}\x85mode: cascade\u2029derive: false"
LONG = "k" * 1000  # stored whole (2000 characters), shown cut


def _reply(request: dict[str, Any]) -> Reply:
    """The strong model's answer, in whatever terms the request's system prompt asks for."""
    system, user = (m["content"] for m in request["messages"])
    if request.get("tools"):
        name = request["tools"][0]["function"]["name"]
        return Reply(content=None, tool_calls=[{"name": name, "arguments": {}}],
                     finish_reason="tool_calls")  # fmt: skip
    n = int(user)
    if system.startswith("Judge"):
        return Reply(json.dumps({f"verdict{EVIL}": "ham" if n % 2 else f"spam{EVIL}", LONG: n}))
    return Reply(f"yes{EVIL}" if n % 2 else "no")


def _promoted(tmp_path: Path, requests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each of ``requests`` (by system prompt; ``n`` calls, the rest its arguments) sent
    through ``cascade serve`` discovering tasks in observe mode, then each task promoted:
    by system prompt, the file's path, text, YAML and the discovered fingerprint."""
    policies, url = tmp_path / "policies", f"sqlite:///{tmp_path / 'calls.db'}"
    policies.mkdir()
    config = ProxyConfig(proxy_keys=("k",), discover={"mode": "observe"})
    names = {}
    with ScriptedServer() as upstream:
        upstream.script(None, _reply)
        c, up = proxy_cascade(policies, url, config, base_url=upstream.base_url,
                              api_key="sk-up", max_retries=0)  # fmt: skip
        server = ProxyServer(create_app(c, config, up)).start()
        try:
            with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
                for system, args in requests.items():
                    kwargs = {k: v for k, v in args.items() if k != "n"}
                    for n in range(args["n"]):
                        raw = client.chat.completions.with_raw_response.create(
                            messages=[{"role": "system", "content": system},
                                      {"role": "user", "content": str(n)}],
                            **kwargs,
                        )  # fmt: skip
                    names[system] = raw.headers["x-cascade-task"]
            c.store.flush()
        finally:
            server.stop()
            c.close()
    store = store_from_url(url)
    out = {}
    for system, task in names.items():
        (record, *_) = store.records(task=task, limit=1)
        done = promote(store, task, policies)
        fingerprint = record.extra["discovered"]["fingerprint"]
        out[system] = (done.path, done.text, yaml.safe_load(done.text), fingerprint)
    store.close()
    return out


@pytest.mark.filterwarnings("ignore:no price known for model")  # the hostile model's name
def test_no_client_controlled_text_leaves_its_comment_line(tmp_path: Path) -> None:
    model, tool = f"gpt-4o{EVIL}", f"save{EVIL}"
    save = {"type": "function", "function": {"name": tool, "parameters": {"type": "object"}}}
    tools, judge, labels = f"Route the ticket.{EVIL}", f"Judge the mail.{EVIL}", "Label it."
    done = _promoted(tmp_path, {
        tools: {"n": 1, "model": model, "tools": [save]},
        judge: {"n": 20, "model": model},
        labels: {"n": 20, "model": "gpt-4o"},
    })  # fmt: skip
    schema = {
        "type": "object",
        "properties": {LONG: {"type": "integer"},
                       f"verdict{EVIL}": {"type": "string", "enum": ["ham", f"spam{EVIL}"]}},
        "required": sorted([LONG, f"verdict{EVIL}"]),
    }  # fmt: skip
    pattern = r"^\s*(?:" + re.escape("no") + "|" + re.escape(f"yes{EVIL}") + r")\s*$"
    intended = {
        tools: ([model], []),
        judge: ([model], [{"type": "json_schema", "schema": schema}]),
        labels: (["gpt-4o"], [{"type": "structure", "match": [pattern]}]),
    }
    for system, (path, text, data, fingerprint) in done.items():
        models, validators = intended[system]
        # (a), (b): the file is exactly the intended policy, with no field of a client's.
        assert data == {
            "models": ["gpt-4o-mini", *models],
            "mode": "observe",
            "match": {"fingerprint": fingerprint},
            "escalate_status": [400],
            "validators": validators,
        }
        # Every line before the fields is a comment, by every line break YAML knows.
        header = text[: text.index("\nmodels:") + 1]
        assert header.splitlines() == header.split("\n")[:-1]
        assert all(line.startswith("# ") for line in header.splitlines())
        assert all(len(line) < 300 for line in header.splitlines())  # a long value is cut
        assert Policy.load(path).spec.derive  # "derive: false" stayed in its comment
    # (c) the comments still say what each inference rests on, the values escaped.
    text = done[tools][1]
    assert f"of gpt-4o{SHOWN}." in text and f"requested model: gpt-4o{SHOWN})" in text
    assert f"offer tools (save{SHOWN}), and every" in text
    assert "1 are tool calls, 0 text" in text
    text = done[judge][1]
    assert "json_schema: 20 of 20 answers are JSON objects" in text
    assert f"verdict{SHOWN}: one of 2 values in 20 answers" in text
    assert f"verdict{SHOWN}: required, present in 20 of 20 answers" in text
    assert f"{'k' * 100}…: required, present in 20 of 20 answers" in text
    assert "structure.match: each of 20 answers is one of 2 labels" in done[labels][1]


def test_a_promoted_policy_switched_to_cascade_lets_the_cheap_rungs_400_escalate(
    tmp_path: Path,
) -> None:
    # The first rung is still one the application never chose: as under discovery, its 400
    # (a parameter it does not take) goes on to the requested model.
    system = "Label the mail."
    (path, text, _, _) = _promoted(tmp_path, {system: {"n": 20, "model": "gpt-4o"}})[system]
    assert "escalate_status: [400], as under discovery" in text
    path.write_text(text.replace("mode: observe", "mode: cascade"), encoding="utf-8")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "1"}]
    with ScriptedServer() as upstream:
        upstream.fail("gpt-4o-mini", 400, message="Unsupported parameter: 'reasoning_effort'")
        upstream.script("gpt-4o", "no")
        with cascade.Cascade(path.parent, client=upstream.client(max_retries=0),
                             store="memory://") as c:  # fmt: skip
            result = c.run(path.stem, messages, reasoning_effort="low")
    assert (result.model, result.output, result.escalated) == ("gpt-4o", "no", True)
