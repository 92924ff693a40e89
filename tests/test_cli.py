"""The cascade command, called as main([...])."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cascade.cli import main
from cascade.cli._common import progress

REPO = Path(__file__).resolve().parent.parent


def test_demo_runs_the_whole_cascade_and_says_it_is_not_live(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert main(["demo", "--policies", str(REPO / "policies"), "--store", store]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NOTE: these answers are NOT live")
    assert out.count("ESCALATED") == 7 and out.count("cheap model accepted") == 13
    assert "20 calls:" in out and "% saved" in out
    # the report of this run, read back from the store it wrote
    assert "task invoice_extraction" in out and "escalations 2 (33.3%)" in out
    assert "calls 20   escalations 7 (35.0%)" in out


def test_demo_whose_store_cannot_be_written_says_where_its_records_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    (tmp_path / "blocked").write_text("a file where the store's directory should be")
    store = f"sqlite:///{tmp_path / 'blocked' / 'demo.sqlite3'}"
    assert main(["demo", "--policies", str(REPO / "policies"), "--store", store]) == 1
    out = capsys.readouterr().out
    assert "20 records of this run are not in the store yet: they wait in the spool" in out
    assert f"Not all records are in {store}: no report of this run." in out
    assert "Records are in" not in out and "task invoice_extraction" not in out


def test_demo_without_policies_directory_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--policies", str(tmp_path / "missing"), "--store", "memory://"]) == 2
    assert "no policies directory" in capsys.readouterr().err


def test_demo_live_needs_a_key(monkeypatch, capsys) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["demo", "--live", "--policies", str(REPO / "policies")]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_check_passes_good_policies_and_names_the_broken_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--policies", str(REPO / "policies")]) == 0
    (tmp_path / "bad.yaml").write_text("models: [gpt-4o-mini, gpt-4o]\nretrys: 2\n")
    assert main(["check", "--policies", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml: retrys: unknown field" in err


def test_check_takes_the_directory_as_an_argument_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(REPO / "policies")]) == 0
    assert "ok   " in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text("models: [gpt-4o-mini, gpt-4o]\nretrys: 2\n")
    assert main(["check", str(tmp_path)]) == 1
    assert "bad.yaml: retrys: unknown field" in capsys.readouterr().err
    assert main(["check", str(tmp_path), "--policies", str(REPO / "policies")]) == 2


def test_check_prints_each_policy_on_one_line_whatever_its_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A promoted task keeps the model its client asked for: a line break in that name
    # forged a line of its own in check's output.
    forged = "gpt-4o\n#x [structure]\nok   forged"
    policy = {"models": ["gpt-4o-mini", forged], "prices": {forged: {"input": 1, "output": 2}},
              "validators": [{"type": "structure", "name": "s\u2028t"}]}  # fmt: skip
    (tmp_path / "t.yaml").write_text(json.dumps(policy))
    assert main(["check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == "ok   t: gpt-4o-mini -> gpt-4o\\n#x [structure]\\nok   forged [s\\u2028t]\n"


def test_progress_off_a_terminal_writes_a_line_every_few_seconds_at_most() -> None:
    out = io.StringIO()  # not a terminal
    now = [0.0]
    show = progress(out, clock=lambda: now[0], every_s=5.0)
    for done in range(1, 1001):
        now[0] = done * 0.01  # 1,000 requests in 10 s
        show("cascade", done, 1000)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == ["cascade: 500/1000", "cascade: 1000/1000"]


def test_schema_prints_the_policy_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False and "validators" in schema["properties"]


def test_serve_help_says_unnamed_requests_are_discovered_not_forwarded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With discovery on by default, a request no header or route names goes through the
    # cascade too; the help said every such request was forwarded unchanged.
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "discovered from the request" in text
    assert "Responses" in text
