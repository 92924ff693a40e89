"""``cascade eval`` scoring: the code scorer (tests run in a limited child process) and
``--judge MODEL --rubric FILE``."""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from cascade.cli import main
from cascade.evals import CodeLimits, extract_code, load_examples, run_tests
from cascade.evals.scoring import GRADE_MARK, parse_grade
from cascade.testing import Reply, ScriptedServer

if TYPE_CHECKING:
    from pathlib import Path

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
RIGHT = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
# Small limits, so that the limit tests end quickly.
LIMITS = CodeLimits(cpu_s=1, wall_s=5.0, memory_mb=256)


def test_a_correct_answer_passes_and_a_wrong_one_fails() -> None:
    assert run_tests(RIGHT, "\n".join(TESTS), LIMITS).passed
    failed = run_tests(WRONG, "\n".join(TESTS), LIMITS)
    assert not failed.passed and "AssertionError" in failed.reason


def test_an_infinite_loop_fails_on_the_cpu_limit() -> None:
    # A wall-clock limit far above the CPU second, so that a loaded machine still ends the
    # loop by its CPU time.
    patient = CodeLimits(cpu_s=1, wall_s=120.0, memory_mb=256)
    got = run_tests("while True:\n    pass\n", "assert True", patient)
    assert not got.passed and got.reason.startswith("CPU time limit")


def test_a_sleeper_fails_on_the_wall_clock_limit() -> None:
    quick = CodeLimits(cpu_s=5, wall_s=1.0, memory_mb=256)
    got = run_tests("import time\ntime.sleep(60)\n", "assert True", quick)
    assert not got.passed and got.reason.startswith("wall-clock limit")


def test_a_memory_hog_fails_on_the_memory_limit() -> None:
    got = run_tests("x = bytearray(2 * 1024 ** 3)\n", "assert x", LIMITS)
    assert not got.passed and got.reason.startswith("memory limit (256 MiB)")


def test_the_code_sees_no_secret_and_runs_in_an_empty_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    code = "import os, sys\nenv = dict(os.environ)\nhere = sorted(os.listdir('.'))\n"
    tests = (
        "assert 'OPENAI_API_KEY' not in env, env\n"
        "assert set(env) <= {'PATH', 'LANG', 'LC_CTYPE'}, env\n"
        "assert here == ['program.py'], here\n"
        f"assert os.getcwd() != {os.getcwd()!r}\n"
        "assert sys.flags.isolated == 1\n"
    )
    got = run_tests(code, tests, LIMITS)
    assert got.passed, got.reason


def test_code_is_taken_from_the_python_block() -> None:
    assert extract_code("```\nplain\n```\n```python\nx = 1\n```") == "x = 1\n"
    assert extract_code("```js\nlet a\n```") == "let a\n"
    assert extract_code("x = 2") == "x = 2"


@pytest.fixture
def project(tmp_path: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    policy = {"models": ["gpt-4o-mini", "gpt-4o"], "validators": [{"type": "structure"}]}
    (tmp_path / "code.yaml").write_text(yaml.safe_dump(policy))
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    return tmp_path


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_scores_code_by_its_tests(
    project: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o", RIGHT)
    server.script("gpt-4o-mini", WRONG)  # passes the structure check, fails the tests
    msgs = [{"role": "user", "content": "Write add(a, b)."}]
    data = write(project / "code.jsonl", [{"id": "add", "messages": msgs, "tests": TESTS}])
    argv = ["eval", "--task", "code", "--policies", str(project), str(data), "--format", "json"]
    assert main([*argv, "--scorer", "code", "--code-cpu", "2", "--code-wall", "10"]) == 1
    report = json.loads(capsys.readouterr().out)
    modes = report["modes"]
    assert (modes["strong"]["quality"], modes["cheap"]["quality"]) == (1.0, 0.0)
    assert report["scoring"]["by"] == "code tests"


def test_scorer_code_needs_tests_in_every_example(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(
        project / "mixed.jsonl",
        [{"id": "x", "messages": [{"role": "user", "content": "hi"}], "reference": "hello"}],
    )
    argv = ["eval", "--task", "code", "--policies", str(project), str(data), "--scorer", "code"]
    assert main(argv) == 2
    assert "no 'tests' in example x" in capsys.readouterr().err
    bad = write(
        project / "bad.jsonl", [{"messages": [{"role": "user", "content": "hi"}], "tests": 3}]
    )
    assert main(["eval", "--task", "code", "--policies", str(project), str(bad)]) == 2
    assert "bad.jsonl:1: tests: need Python source" in capsys.readouterr().err
    (example,) = load_examples(
        write(
            project / "ok.jsonl", [{"messages": [{"role": "user", "content": "x"}], "tests": TESTS}]
        )
    )
    assert example.tests == "\n".join(TESTS) and example.reference == ""


def test_eval_with_a_judge_and_a_rubric(
    project: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o", "Dear customer, your refund is on its way. Kind regards.")
    server.script("gpt-4o-mini", "refund sent")
    seen: list[dict[str, Any]] = []

    def grade(request: dict[str, Any]) -> Reply:
        seen.append(request)
        shown = request["messages"][1]["content"]
        answer = re.split(r"<answer-[0-9a-f]{8}>\n", shown, maxsplit=1)[1]
        return Reply("PASS" if answer.startswith("Dear") else "FAIL", prompt_tokens=200,
                     completion_tokens=1)  # fmt: skip

    server.script("grader", grade)
    rubric = project / "rubric.txt"
    rubric.write_text("Polite, and says what happens next.")
    msgs = [{"role": "user", "content": "Where is my refund?"}]
    data = write(project / "replies.jsonl", [{"id": "r", "messages": msgs}])
    argv = ["eval", "--task", "code", "--policies", str(project), str(data)]
    with pytest.warns(UserWarning, match="no price known for model 'grader'"):
        code = main([*argv, "--judge", "grader", "--rubric", str(rubric)])
    assert code == 1
    out = capsys.readouterr().out
    assert "scored by judge grader with a rubric: 2 grades, 0 unknown" in out
    assert "judge cost unknown" in out  # "grader" has no known price: unknown, never $0
    # cheap and cascade answers are the same: graded once; strong graded once.
    assert len(seen) == 2
    system = seen[0]["messages"][0]["content"]
    assert system.startswith(GRADE_MARK) and "Rubric: Polite, and says what happens next." in system
    assert main([*argv, "--rubric", str(rubric)]) == 2
    assert "--rubric needs --judge" in capsys.readouterr().err


def test_an_off_format_or_failed_grade_is_unknown_and_counted(
    project: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("gpt-4o", "yes")
    server.script("gpt-4o-mini", "no")
    server.script("grader", "I would say it is fine", match="yes")
    server.script("grader", Reply(status=500))
    data = write(project / "d.jsonl", [{"messages": [{"role": "user", "content": "?"}]}])
    argv = ["eval", "--task", "code", "--policies", str(project), str(data), "--format", "json"]
    with pytest.warns(UserWarning, match="no price known"):
        main([*argv, "--judge", "grader"])
    report = json.loads(capsys.readouterr().out)
    assert report["scoring"]["unknown"] == 2 and report["modes"]["strong"]["quality"] == 0.0
    assert parse_grade("pass.") is True and parse_grade("FAIL") is False
    assert parse_grade("Passing") is None
