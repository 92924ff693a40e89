"""``cascade eval`` and ``cascade calibrate --data``: real SDK, real engine, a scripted server."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from cascade import Cascade, Policy
from cascade.cli import main
from cascade.evals import evaluate, load_examples, with_mode
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

POLICY = {
    "models": ["gpt-4o-mini", "gpt-4o"],
    "validators": [{"type": "confidence", "source": "logprobs", "min": 0.6}],
    "agreement": {"comparator": "normalized"},
}


def cheap_reply(i: int) -> tuple[str, float]:
    """By i % 20: right and sure below 14; wrong and unsure for 14-17; wrong and sure after."""
    if i % 20 < 14:
        return f"a{i}", 0.95
    return "wrong", 0.5 if i % 20 < 18 else 0.99


def respond(body: dict[str, Any]) -> Reply:
    i = int(body["messages"][-1]["content"][1:])
    if body["model"] == "gpt-4o":
        return Reply(
            content=f"A{i}.",
            logprobs=[(f"A{i}.", -0.01, [])],
            prompt_tokens=100,
            completion_tokens=10,
        )
    text, p = cheap_reply(i)
    return Reply(
        content=text, logprobs=[(text, math.log(p), [])], prompt_tokens=100, completion_tokens=10
    )


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(respond) as s:
        yield s


@pytest.fixture
def setup(tmp_path: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "qa.yaml").write_text("# answers\n" + yaml.safe_dump(POLICY))
    lines = [
        json.dumps(
            {
                "id": f"e{i}",
                "messages": [{"role": "user", "content": f"q{i}"}],
                "reference": f"a{i}",
            }
        )
        for i in range(20)
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    return tmp_path


def cli(*argv: str) -> int:
    return main(list(argv))


def test_with_mode_round_trips_the_policy(setup: Path) -> None:
    policy = Policy.load(setup / "qa.yaml")
    copy = with_mode(policy, "cheap")
    assert copy.spec.mode == "cheap"
    assert copy.spec.model_dump(exclude={"mode"}) == policy.spec.model_dump(exclude={"mode"})


def test_evaluate_keeps_the_validators_given_to_the_cascade(
    tmp_path: Path, server: ScriptedServer
) -> None:
    """A policy using a validator type given as ``Cascade(validators=...)`` runs in every
    mode (it failed with "unknown validator type" when a mode copy was compiled without it)."""
    seen: list[str] = []

    def starts_with_a(completion: Any) -> bool:
        seen.append(completion.model)
        return completion.text.startswith("a")

    policy = {**POLICY, "validators": [{"type": "starts_with_a"}]}
    (tmp_path / "qa.yaml").write_text(yaml.safe_dump(policy))
    data = tmp_path / "data.jsonl"
    example = {"messages": [{"role": "user", "content": "q0"}], "reference": "a0"}
    data.write_text(json.dumps(example))
    c = Cascade(
        tmp_path,
        client=server.client(),
        store="memory://",
        validators={"starts_with_a": starts_with_a},
    )
    report = evaluate(c, "qa", load_examples(data))
    assert report.summaries["cascade"].quality == 1.0
    assert set(seen) == {"gpt-4o-mini", "gpt-4o"}  # the cheap, strong and cascade runs


def test_evaluate_scores_each_mode_against_references(setup: Path, server: ScriptedServer) -> None:
    c = Cascade(setup, client=server.client(), store="memory://")
    report = evaluate(c, "qa", load_examples(setup / "data.jsonl"))
    s = report.summaries
    assert (s["cheap"].quality, s["strong"].quality, s["cascade"].quality) == (0.7, 1.0, 0.9)
    assert s["cascade"].escalation_rate == pytest.approx(0.2)
    assert s["cheap"].agreement_with_strong == 0.7
    strong_call = (100 * 2.5 + 10 * 10) / 1e6
    assert s["strong"].cost_usd == pytest.approx(20 * strong_call)
    assert report.relative_quality == pytest.approx(0.9)
    assert report.verdict == "do not route"
    assert report.outcomes["cascade"][15].model == "gpt-4o"


def test_eval_cli_table_and_exit_code(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli(
            "eval",
            str(setup / "data.jsonl"),
            "--task",
            "qa",
            "--policies",
            str(setup),
            "--margin",
            "0.15",
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "verdict: route (margin 15%)" in out
    assert "90.0% of the strong model's" in out
    assert "cascade: 20/20\n" in err  # not a terminal: a line when done, no bar


def test_eval_cli_json_follows_the_documented_schema(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli(
            "eval",
            str(setup / "data.jsonl"),
            "--task",
            "qa",
            "--policies",
            str(setup),
            "--format",
            "json",
        )
        == 1
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "do not route"
    assert doc["n"] == 20
    assert set(doc["modes"]) == {"cheap", "strong", "cascade"}
    assert set(doc["modes"]["cascade"]) == {
        "quality",
        "agreement_with_strong",
        "cost_usd",
        "cost_per_1k_usd",
        "escalation_rate",
        "errors",
    }
    row = doc["examples"][18]
    assert row["id"] == "e18"
    assert row["cascade"]["output"] == "wrong"
    assert row["cascade"]["correct"] is False
    assert row["strong"]["correct"] is True


def test_eval_scorer_option_picks_a_comparator(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(
        "eval",
        str(setup / "data.jsonl"),
        "--task",
        "qa",
        "--policies",
        str(setup),
        "--format",
        "json",
        "--scorer",
        "exact",
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["modes"]["strong"]["quality"] == 0.0  # "A3." is not exactly "a3"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"messages": 1}', "d.jsonl:2: messages: need a non-empty list"),
        ('{"messages": [{"role": "user", "content": "q"}]}', "d.jsonl:2: reference: need a string"),
        ('{"messages": [{"role": "user", "content": "q"}], "reference": "a", "params": 3}',
         "d.jsonl:2: params: need an object"),
        ("not json", "d.jsonl:2: not JSON"),
    ],
)  # fmt: skip
def test_bad_example_file_names_the_line_and_field(tmp_path: Path, line: str, says: str) -> None:
    good = '{"messages": [{"role": "user", "content": "q"}], "reference": "a"}'
    (tmp_path / "d.jsonl").write_text(f"{good}\n\n{line}\n".replace("\n\n", "\n"))
    with pytest.raises(ValueError, match=re.escape(says)):
        load_examples(tmp_path / "d.jsonl")


def test_calibrate_from_data_runs_cheap_and_strong_once_and_writes(
    setup: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}], "reference": f"a{i}"})
        for i in range(400)
    ]
    (setup / "big.jsonl").write_text("\n".join(lines) + "\n")
    code = cli(
        "calibrate",
        "--task",
        "qa",
        "--target",
        "0.85",
        "--data",
        str(setup / "big.jsonl"),
        "--policies",
        str(setup),
        "--write",
    )
    out = capsys.readouterr().out
    assert len(server.calls()) == 800  # cheap and strong, once each
    assert code == 0, out
    assert "400 calibration examples; strong model accuracy 100.0%, cheap model 70.0%" in out
    assert "accuracy is >= 0.85 x the strong model's" in out
    # 0.99-sure wrong answers (10%) cost 10 points of accuracy: 0.9 >= 0.85 certifies the
    # 0.95-sure ones too, written as the shortest number between them and the 0.5-sure ones
    assert "min: 0.9 " in out
    text = (setup / "qa.yaml").read_text()
    assert text.startswith("# answers\n")
    assert "min: 0.9  # certified by cascade calibrate (target 0.85, delta 0.05" in text


def test_eval_table_says_unknown_for_a_cost_it_does_not_know() -> None:
    from cascade.cli.eval import _money

    assert _money(None) == "unknown"  # a model without a known price, never "$0.0000"
    assert _money(0.00012) == "$0.0001"


def _labelled(setup: Path, cheap: Any, strong: Any) -> Path:
    """The 20 questions with per-model labels and no reference."""
    data = setup / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"e{i}",
                    "messages": [{"role": "user", "content": f"q{i}"}],
                    "labels": {"gpt-4o-mini": cheap(i), "gpt-4o": strong(i)},
                }
            )
            + "\n"
            for i in range(20)
        )
    )
    return data


def test_eval_scores_labelled_examples_by_the_label_of_the_model_that_answered(
    setup: Path, server: ScriptedServer
) -> None:
    # Labels say gpt-4o-mini is right on q0-q9 only and gpt-4o wrong on q0; no reference
    # would agree with them. The cascade escalates q14-q17 (unsure) to gpt-4o.
    data = _labelled(setup, lambda i: i < 10, lambda i: i != 0)
    c = Cascade(setup, client=server.client(), store="memory://")
    report = evaluate(c, "qa", load_examples(data))
    s = report.summaries
    assert (s["cheap"].quality, s["strong"].quality, s["cascade"].quality) == (0.5, 0.95, 0.7)
    assert report.relative_quality == pytest.approx(0.7 / 0.95)
    assert [o.correct for o in report.outcomes["cascade"]][13:19] == [
        False, True, True, True, True, False,
    ]  # fmt: skip


def test_eval_verdict_is_unknown_when_the_strong_model_scored_nothing(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _labelled(setup, lambda i: False, lambda i: False)
    assert cli("eval", str(data), "--task", "qa", "--policies", str(setup)) == 1
    out = capsys.readouterr().out
    assert "verdict: unknown (margin 5%): the strong model scored no answer right" in out
    assert "scored by labels where given, else normalized" in out


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--target", "97", "--target: need a share in (0, 1], e.g. 0.97, got 97"),
        ("--target", "0", "--target: need a share in (0, 1]"),
        ("--target", "high", "--target: need a share in (0, 1], e.g. 0.97, got 'high'"),
        ("--delta", "1", "--delta: need a probability in (0, 1), e.g. 0.05, got 1"),
    ],
)
def test_calibrate_refuses_a_target_or_delta_out_of_range_before_any_call(
    setup: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str],
    option: str, value: str, says: str,
) -> None:  # fmt: skip
    argv = ["calibrate", "--task", "qa", "--target", "0.97", "--data", str(setup / "data.jsonl")]
    argv += ["--policies", str(setup), option, value]
    with pytest.raises(SystemExit) as stopped:
        cli(*argv)
    assert stopped.value.code == 2
    assert says in capsys.readouterr().err
    assert server.calls() == []


def test_the_cascade_command_loads_a_scorer_module_from_the_working_directory(
    setup: Path, server: ScriptedServer
) -> None:
    # The console script, as a user runs it: its sys.path starts at the venv's bin directory.
    import os
    import shutil
    import subprocess
    import sys

    command = shutil.which("cascade", path=os.path.dirname(sys.executable))
    assert command is not None
    (setup / "my_scoring.py").write_text(
        "def loose(answer, reference, spec):\n    return reference.lower() in answer.lower()\n"
    )
    argv = [command, "eval", "data.jsonl", "--task", "qa", "--policies", "."]
    done = subprocess.run(
        [*argv, "--scorer", "my_scoring:loose"], cwd=setup, capture_output=True, text=True,
        timeout=120, env={**os.environ, "OPENAI_BASE_URL": server.base_url},
    )  # fmt: skip
    assert "scored by my_scoring:loose" in done.stdout, done.stderr
    assert "strong     100.0%" in done.stdout  # "A3." contains "a3": the function scored it


@pytest.mark.parametrize(
    ("scorer", "says"),
    [
        ("no_such_module:f", "cannot load the scorer 'no_such_module:f': ModuleNotFoundError"),
        ("no_such_comparator", "unknown comparator 'no_such_comparator'; known: "),
        (":f", "cannot load the scorer ':f': ValueError"),
        (".rel:f", "cannot load the scorer '.rel:f': TypeError"),
        ("broken_scoring:f", "cannot load the scorer 'broken_scoring:f': SyntaxError"),
        ("value_scoring:x", "the scorer 'value_scoring:x' is not a function: int"),
    ],
)
def test_a_scorer_that_does_not_load_is_an_error_before_any_call(
    setup: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, scorer: str, says: str,
) -> None:  # fmt: skip
    (setup / "broken_scoring.py").write_text("def f(:\n")
    (setup / "value_scoring.py").write_text("x = 3\n")
    monkeypatch.syspath_prepend(str(setup))
    data = str(setup / "data.jsonl")
    for argv in (
        ["eval", data, "--task", "qa"],
        ["calibrate", "--task", "qa", "--target", "0.9", "--data", data],
    ):
        assert cli(*argv, "--policies", str(setup), "--scorer", scorer) == 2
        err = capsys.readouterr().err
        assert f"error: {says}" in err and "Traceback" not in err
    assert server.calls() == []


@pytest.mark.parametrize(
    ("more", "says"),
    [
        (["--store", "bogus://"], "error: unknown store scheme 'bogus'"),
        (["--data", "/no/such/file.jsonl"], "error: [Errno 2] No such file or directory"),
    ],
)
def test_calibrate_data_with_a_bad_store_or_file_is_an_error_before_any_call(
    setup: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str],
    more: list[str], says: str,
) -> None:  # fmt: skip
    argv = ["calibrate", "--task", "qa", "--target", "0.9", "--policies", str(setup)]
    data = [] if "--data" in more else ["--data", str(setup / "data.jsonl")]
    assert cli(*argv, *data, *more) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert server.calls() == []


@pytest.mark.parametrize("value", ["5", "-0.1", "1"])
def test_eval_refuses_a_margin_out_of_range_before_any_call(
    setup: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    argv = ["eval", str(setup / "data.jsonl"), "--task", "qa", "--policies", str(setup)]
    with pytest.raises(SystemExit) as stopped:
        cli(*argv, "--margin", value)
    assert stopped.value.code == 2
    assert f"--margin: need a share in [0, 1), e.g. 0.05, got {value}" in capsys.readouterr().err
    assert server.calls() == []


def test_an_answer_of_a_model_no_label_names_is_not_right_by_an_empty_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Labels for gpt-4o-mini only, and gpt-4o answers nothing: an empty answer "agrees" with
    # the empty reference a labels-only line has, and was scored right.
    def empty_strong(body: dict[str, Any]) -> Reply:
        if body["model"] == "gpt-4o":
            return Reply(content="", logprobs=[("", -0.01, [])])
        return respond(body)

    (tmp_path / "qa.yaml").write_text(yaml.safe_dump(POLICY))
    data = tmp_path / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [{"role": "user", "content": f"q{i}"}],
                    "labels": {"gpt-4o-mini": i % 2 == 0},
                }
            )
            + "\n"
            for i in range(20)
        )
    )
    with ScriptedServer(empty_strong) as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        code = cli(
            "eval", str(data), "--task", "qa", "--policies", str(tmp_path), "--format", "json"
        )
    doc = json.loads(capsys.readouterr().out)
    assert doc["modes"]["strong"]["quality"] == 0.0 and doc["modes"]["cheap"]["quality"] == 0.5
    assert doc["verdict"] == "unknown" and code == 1
    assert doc["scoring"]["by"] == "labels where given, else normalized (tests where given)"


def test_a_judge_grades_the_answers_of_models_a_labels_only_line_does_not_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cascade.evals.scoring import GRADE_MARK

    def graded(body: dict[str, Any]) -> Reply:
        if str(body["messages"][0].get("content", "")).startswith(GRADE_MARK):
            return Reply(content="PASS")
        return respond(body)

    (tmp_path / "qa.yaml").write_text(yaml.safe_dump(POLICY))
    data = tmp_path / "labelled.jsonl"
    line = {"messages": [{"role": "user", "content": "q1"}], "labels": {"gpt-4o-mini": True}}
    data.write_text(json.dumps(line) + "\n")
    with ScriptedServer(graded) as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        argv = ["eval", str(data), "--task", "qa", "--policies", str(tmp_path)]
        cli(*argv, "--judge", "gpt-4o-mini", "--format", "json")
    doc = json.loads(capsys.readouterr().out)
    assert doc["scoring"]["graded"] == 1  # the strong answer, which no label names
    assert doc["modes"]["strong"]["quality"] == 1.0 and doc["modes"]["cheap"]["quality"] == 1.0


def test_a_scorer_module_that_exits_on_import_is_an_error_line(
    setup: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (setup / "exiting_scoring.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(setup))
    argv = ["eval", str(setup / "data.jsonl"), "--task", "qa", "--policies", str(setup)]
    assert cli(*argv, "--scorer", "exiting_scoring:f") == 2
    assert "cannot load the scorer 'exiting_scoring:f': SystemExit" in capsys.readouterr().err
    assert server.calls() == []
