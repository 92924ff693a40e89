"""``cascade batch`` (a JSONL file of requests through a task) and ``cascade replay``."""

from __future__ import annotations

import fcntl
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest
import yaml

from cascade.cli import main
from cascade.pricing import UnknownPriceWarning
from cascade.stores import Spooling, store_from_url
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator

GOOD = json.dumps({"total": 10})
SCHEMA = [{"type": "json_schema", "schema": {"type": "object", "required": ["total"]}}]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        yield s


def setup(tmp_path: Path, lines: list[Any], **policy: Any) -> tuple[str, str]:
    (tmp_path / "policies").mkdir()
    policy = {"models": ["gpt-4o-mini", "gpt-4o"], "validators": SCHEMA, **policy}
    (tmp_path / "policies" / "inv.yaml").write_text(yaml.safe_dump(policy))
    data = tmp_path / "data.jsonl"
    data.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(tmp_path / "policies"), str(data)


def request(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_batch_runs_every_line_through_the_policy_and_records_it(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o-mini", "no json here", match="hard")
    server.script("gpt-4o-mini", GOOD)
    server.script("gpt-4o", GOOD)
    policies, data = setup(
        tmp_path,
        [
            request("easy 1", id="a"),
            request("hard 2", id="b"),
            request("easy 3", params={"seed": 7}),
        ],
    )
    store = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    out = tmp_path / "out.jsonl"
    argv = ["batch", "--task", "inv", data, "--policies", policies, "--store", store]
    assert main([*argv, "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "inv (mode cascade): 3 requests" in summary and "1 escalated, 0 failed" in summary
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["model"], r["escalated"]) for r in rows] == [
        ("a", "gpt-4o-mini", False),
        ("b", "gpt-4o", True),
        ("3", "gpt-4o-mini", False),  # no id: the line number
    ]
    assert rows[1]["reasons"] == ["json_schema: no JSON found in the answer"]
    assert next(c for c in server.calls() if "easy 3" in str(c["messages"]))["seed"] == 7
    days = store_from_url(store).days(task="inv")
    assert (sum(d.calls for d in days), sum(d.escalations for d in days)) == (3, 1)


def test_batch_says_unknown_cost_for_a_model_without_a_price(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("my-own-model", GOOD)
    policies, data = setup(tmp_path, [request("easy 1")], models=["my-own-model", "gpt-4o"])
    with pytest.warns(UnknownPriceWarning, match="my-own-model"):
        assert main(["batch", "--task", "inv", data, "--policies", policies]) == 0
    summary = capsys.readouterr().out
    assert "cost unknown (a model has no known price)" in summary
    assert "$0.000000" not in summary and "saved" not in summary


def test_batch_in_observe_mode_gathers_observation_records(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o-mini", GOOD)
    server.script("gpt-4o", GOOD)
    policies, data = setup(tmp_path, [request(f"q {i}") for i in range(4)], mode="observe")
    store = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    assert main(["batch", "--task", "inv", data, "--policies", policies, "--store", store]) == 0
    assert "(mode observe)" in capsys.readouterr().out
    records = list(store_from_url(store).records(task="inv"))
    assert len(records) == 4
    assert all(r.model == "gpt-4o" and r.observation.to_dict()["agree"] is True for r in records)


def test_batch_reports_failed_requests_and_exits_1(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o-mini", Reply(status=401), match="denied")
    server.script("gpt-4o-mini", GOOD)
    policies, data = setup(tmp_path, [request("ok"), request("denied", id="x")])
    out = tmp_path / "out.jsonl"
    argv = ["batch", "--task", "inv", data, "--policies", policies, "--store", "memory://"]
    assert main([*argv, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "1 failed" in captured.out
    assert re.search(r"x: ProviderError: .*401", captured.err)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["error"] is None and rows[1]["error"].startswith("ProviderError")


def test_batch_says_when_its_records_wait_in_the_spool_and_exits_1(
    tmp_path: Path,
    server: ScriptedServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.script("gpt-4o-mini", GOOD)
    policies, data = setup(tmp_path, [request(f"q {i}") for i in range(3)])
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    (tmp_path / "blocked").write_text("a file where the store's directory should be")
    store = f"sqlite:///{tmp_path / 'blocked' / 'r.sqlite3'}"
    argv = ["batch", "--task", "inv", data, "--policies", policies, "--store", store]
    # An earlier run, another process, left its 3 records in the spool.
    earlier = subprocess.run(
        [sys.executable, "-m", "cascade.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert earlier.returncode == 1, earlier.stderr
    assert main([*argv[:3], str(_lines(tmp_path, 2)), *argv[4:]]) == 1
    captured = capsys.readouterr()
    assert f"not all recorded in {store} (below)" in captured.out
    spool = tmp_path / "home" / "spool"
    assert f"cannot write {tmp_path / 'blocked' / 'r.sqlite3'}: " in captured.err
    # This run tried the earlier run's file too, and put it back as that run's.
    said = "2 records of this run are not in the store yet: they wait in the spool "
    said += rf"{re.escape(str(spool))}/\w+ "
    assert re.search(said, captured.err), captured.err
    assert "3 records of other processes wait in the spool" in captured.err
    # Once the file can be written, the next process that opens the store writes them all.
    (tmp_path / "blocked").unlink()
    (tmp_path / "blocked").mkdir()
    later = store_from_url(store)
    later.flush(5.0)
    assert sum(d.calls for d in later.days(task="inv")) == 5
    later.close()


def _lines(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"more{n}.jsonl"
    path.write_text("".join(json.dumps(request(f"more {i}")) + "\n" for i in range(n)))
    return path


def test_batch_does_not_count_spool_files_another_process_holds(
    tmp_path: Path,
    server: ScriptedServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another process is sending its spool file to the store (it holds the file's lock):
    # those records are on their way, and this run's own reached the store.
    server.script("gpt-4o-mini", GOOD)
    policies, data = setup(tmp_path, [request(f"q {i}") for i in range(2)])
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    store = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    opened = store_from_url(store)
    waiting = opened.waiting() if isinstance(opened, Spooling) else None
    opened.close()
    assert waiting is not None
    directory = Path(waiting.directory)
    directory.mkdir(parents=True)
    held = directory / "1-other.1-abcd.replaying"
    held.write_text("{}\n" * 5000)
    with held.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        code = main(["batch", "--task", "inv", data, "--policies", policies, "--store", store])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"recorded in {store}\n" in captured.out
    assert "spool" not in captured.err


def test_batch_says_records_were_lost_when_neither_store_nor_spool_takes_them(
    tmp_path: Path,
    server: ScriptedServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.script("gpt-4o-mini", GOOD)
    policies, data = setup(tmp_path, [request(f"q {i}") for i in range(2)])
    (tmp_path / "blocked").write_text("a file where directories should be")
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "blocked" / "home"))
    store = f"sqlite:///{tmp_path / 'blocked' / 'r.sqlite3'}"
    assert main(["batch", "--task", "inv", data, "--policies", policies, "--store", store]) == 1
    captured = capsys.readouterr()
    assert f"not all recorded in {store} (below)" in captured.out
    assert "2 records were lost (see the errors above)" in captured.err


def test_batch_into_memory_says_the_records_end_with_it(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o-mini", GOOD)
    policies, data = setup(tmp_path, [request("q")])
    argv = ["batch", "--task", "inv", data, "--policies", policies, "--store", "memory://"]
    assert main(argv) == 0
    assert "memory:// keeps the records only while the command runs" in capsys.readouterr().err


def test_batch_without_an_api_key_says_so_without_a_traceback(
    tmp_path: Path,
    server: ScriptedServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    policies, data = setup(tmp_path, [request("q")])
    assert (
        main(["batch", "--task", "inv", data, "--policies", policies, "--store", "memory://"]) == 2
    )
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "OPENAI_API_KEY" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "data.jsonl:2: not JSON"),
        ('{"messages": []}', "data.jsonl:2: messages: need a non-empty list"),
        ('{"messages": [{"role": "user", "content": "x"}], "params": 3}', "data.jsonl:2: params"),
        ("[1, 2]", "data.jsonl:2: need a JSON object, got list"),
    ],
)
def test_batch_names_the_bad_line_before_any_call(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str], line: str, says: str
) -> None:
    policies, data = setup(tmp_path, [request("fine"), line])
    assert main(["batch", "--task", "inv", data, "--policies", policies]) == 2
    assert says in capsys.readouterr().err
    assert server.calls() == []


def test_batch_with_an_unknown_task_names_the_tasks_found(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, data = setup(tmp_path, [request("fine")])
    assert main(["batch", "--task", "nope", data, "--policies", policies]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "inv" in err
    assert server.calls() == []


RECORDED = {
    "dataset": "mmlu",
    "split": "train",
    "idx": 0,
    "conf_signal": "ModelIntrinsicLogProb",
    "system_prompt": "Answer with A, B, C or D.",
    "user_prompt": "Question: 2+2?\nA: 3\nB: 4\n\nAnswer: ",
    "gold": {"answer_letter": "B"},
    "models": {
        m: {"answer": "B", "raw_confidence": -0.01, "correct": True, "cost_usd": 1e-5,
            "tokens_in": 40, "tokens_out": 1}
        for m in ("gpt-4o-mini", "gpt-4o")
    },
}  # fmt: skip


def test_replay_serves_recordings_until_interrupted_and_writes_request_lines(
    tmp_path: Path,
) -> None:
    recording = tmp_path / "rec.jsonl"
    recording.write_text(json.dumps(RECORDED) + "\n")
    requests = tmp_path / "requests.jsonl"
    cmd = [sys.executable, "-m", "cascade.cli", "replay", str(recording), "--port", "0",
           "--requests", str(requests)]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert "replaying 1 recorded queries" in first and "not live" in first
            base_url = re.search(r"(http://\S+/v1)", first)
            assert base_url is not None
            (line,) = [json.loads(x) for x in requests.read_text().splitlines()]
            assert line["id"] == "mmlu/train/0" and line["params"] == {"user": "mmlu/train/0"}
            with openai.OpenAI(base_url=base_url.group(1), api_key="x", max_retries=0) as client:
                got = client.chat.completions.create(model="gpt-4o", messages=line["messages"])
            assert got.choices[0].message.content == "B"
            assert got.usage is not None and got.usage.prompt_tokens == 40
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"messages": [{"role": "user", "content": "q"}], "reference": "x"}',
         "rec.jsonl:2: user_prompt: need the query's user message"),
        ('{"user_prompt": "q", "models": {}}', "rec.jsonl:2: models: need an object"),
        ('{"user_prompt": "q", "models": {"gpt-4o": {"answer": 3}}}',
         "rec.jsonl:2: models.gpt-4o.answer: need the recorded answer"),
        ("[1]", "rec.jsonl:2: need a recorded query (a JSON object), got list"),
        ('{"user_prompt": "q", "models": {"gpt-4o": {"answer": "A", "tokens_out": 1}}}',
         "rec.jsonl:2: models.gpt-4o.tokens_in: need a number of tokens >= 0"),
        ('{"user_prompt": "q", "models": {"gpt-4o": {"answer": "A", "tokens_in": NaN, '
         '"tokens_out": 1}}}', "rec.jsonl:2: models.gpt-4o.tokens_in: need a number of tokens"),
        ('{"user_prompt": "q", "models": {"gpt-4o": {"answer": "A", "tokens_in": 1, '
         '"tokens_out": -5}}}', "rec.jsonl:2: models.gpt-4o.tokens_out: need a number of tokens"),
        ("{oops", "rec.jsonl:2: not JSON"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_recording_is_refused_naming_the_line_and_field(
    tmp_path: Path, line: str, says: str
) -> None:
    from cascade.testing import load_recorded

    recording = tmp_path / "rec.jsonl"
    recording.write_text(json.dumps(RECORDED) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=re.escape(says)):
        load_recorded(recording)


def test_batch_with_a_store_url_it_cannot_use_is_an_error_line(
    tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, data = setup(tmp_path, [request("q")])
    for url in ("bogus://x", "redis:/u:hunter2@h:1"):
        assert main(["batch", "--task", "inv", data, "--policies", policies, "--store", url]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err and "hunter2" not in err
    assert server.calls() == []


def test_a_directory_without_recordings_is_refused(tmp_path: Path) -> None:
    from cascade.testing import load_recorded

    with pytest.raises(ValueError, match=r"no \*\.jsonl recordings in this directory"):
        load_recorded(tmp_path)


def test_replay_says_what_a_record_lacks_for_a_judge_or_logprobs_call(tmp_path: Path) -> None:
    from cascade.events import Request
    from cascade.judge import judge_key, judge_request
    from cascade.testing import ReplayServer

    lacking = ("correct", "raw_confidence")
    models = {
        m: {k: v for k, v in o.items() if k not in lacking} for m, o in RECORDED["models"].items()
    }
    row = {**RECORDED, "models": models}
    messages = [
        {"role": "system", "content": row["system_prompt"]},
        {"role": "user", "content": row["user_prompt"]},
    ]
    cheap, strong = (o["answer"] for o in row["models"].values())
    request = Request(messages=tuple(messages), params={})
    ask, _ = judge_request(request, cheap, strong, None, judge_key(messages, cheap, strong))
    with ReplayServer([row]) as server, server.client() as client:
        with pytest.raises(openai.BadRequestError, match="records no 'correct' flag"):
            client.chat.completions.create(model="gpt-4o-mini", messages=list(ask.messages))
        with pytest.raises(openai.BadRequestError, match="records no raw_confidence"):
            client.chat.completions.create(model="gpt-4o", messages=messages, logprobs=True)


def test_replay_of_a_file_that_is_not_a_recording_is_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "rec.jsonl"
    recording.write_text('{"messages": [{"role": "user", "content": "q"}]}\n')
    assert main(["replay", str(recording), "--port", "0"]) == 2  # before: a KeyError
    err = capsys.readouterr().err
    assert "rec.jsonl:1: user_prompt: need the query's user message" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["learn", "--task", "inv"],
        ["calibrate", "--task", "inv", "--target", "0.9", "--from-store"],
        ["tasks"],
        ["report"],
    ],
)
def test_a_store_url_the_commands_cannot_use_is_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    confidence = [{"type": "confidence", "source": "logprobs", "min": 0.5}]
    policies, _ = setup(tmp_path, [request("q")], validators=confidence)
    code = main([*argv, "--policies", policies, "--store", "bogus://"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: unknown store scheme 'bogus' in 'bogus://'" in err and "Traceback" not in err


def test_an_earlier_process_of_the_same_pid_leaves_records_of_another_run(tmp_path: Path) -> None:
    # In a container every run is pid 1: a file an earlier run left under this pid is still
    # not this run's (the owner is the pid and the spool's own token).
    import os

    opened = store_from_url(f"sqlite:///{tmp_path / 'r.sqlite3'}", spool=str(tmp_path / "s"))
    try:
        assert isinstance(opened, Spooling)
        directory = Path(opened.waiting().directory)
        directory.mkdir(parents=True)
        (directory / f"{os.getpid()}-0123456789ab.jsonl").write_text("{}\n{}\n")
        waiting = opened.waiting()
        assert (waiting.mine, waiting.others) == (0, 2)
    finally:
        opened.close()
