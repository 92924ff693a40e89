"""The library is silent until the application configures logging; then its events arrive."""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

import cascade
from cascade._logging import get_logger
from cascade.cli import main
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    pass

PACKAGE = Path(cascade.__file__).parent
GOOD = json.dumps({"total": 10})

# One call that escalates (two INFO events) and a store that cannot open (a WARNING).
SCRIPT = """
import cascade
r = cascade.run("t", [{"role": "user", "content": "total?"}])
assert r.escalated and r.model == "gpt-4o", r
"""


def _run(
    tmp_path: Path, server: ScriptedServer, prelude: str = ""
) -> subprocess.CompletedProcess[str]:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    schema = {"type": "object", "required": ["total"]}
    (policies / "t.yaml").write_text(
        yaml.safe_dump(
            {
                "models": ["gpt-4o-mini", "gpt-4o"],
                "validators": [{"type": "json_schema", "schema": schema}],
            }
        )
    )
    server.script("gpt-4o-mini", "not json").script("gpt-4o", GOOD)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store's directory should be")
    env = {
        **os.environ,
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "CASCADE_POLICIES": str(policies),
        "CASCADE_STORE": f"sqlite:///{blocked}/calls.db",
        "CASCADE_HOME": str(tmp_path / "home"),
    }
    return subprocess.run(
        [sys.executable, "-c", prelude + SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_with_no_logging_configured_the_library_prints_nothing(tmp_path, server) -> None:
    done = _run(tmp_path, server)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_events_arrive_once_the_application_configures_logging(tmp_path, server) -> None:
    prelude = (
        "import logging\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s %(levelname)s %(message)s')\n"
    )
    done = _run(tmp_path, server, prelude)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("cascade INFO event=cascade.escalated ") for line in lines)
    call = next(line for line in lines if line.startswith("cascade INFO event=cascade.call "))
    assert "model=gpt-4o" in call and "escalated=true" in call
    assert any(line.startswith("cascade WARNING ") for line in lines)  # the store that failed
    assert done.stdout == ""
    assert "sk-test" not in done.stderr


def test_in_process_events_are_standard_library_records(tmp_path, server, caplog) -> None:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"]}))
    server.script("gpt-4o-mini", GOOD)
    caplog.set_level(logging.INFO, logger="cascade")
    with cascade.Cascade(tmp_path, client=server.client(), store="memory://") as c:
        c.run("t", [{"role": "user", "content": "hi"}])
    (record,) = [r for r in caplog.records if "event=cascade.call" in r.getMessage()]
    assert record.name == "cascade" and record.levelno == logging.INFO


def test_the_command_line_logs_to_stderr_only_when_verbose(tmp_path, capsys) -> None:
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"models": ["gpt-4o-mini", "gpt-4o"]}))
    assert main(["-v", "check", str(tmp_path)]) == 0
    log = get_logger()
    log.info("cascade.probe", n=1)
    assert "event=cascade.probe n=1" in capsys.readouterr().err
    assert main(["check", str(tmp_path)]) == 0  # configured again, not a second handler
    log.warning("cascade.probe2")
    log.info("cascade.hidden")
    err = capsys.readouterr().err
    assert err.count("cascade.probe2") == 1 and "cascade.hidden" not in err


def test_no_module_gets_a_structlog_logger_of_its_own() -> None:
    """structlog's own default logger prints to stdout: every module logs through
    ``cascade._logging.get_logger``."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "_logging.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"get_logger", "wrap_logger", "getLogger"}
                and isinstance(node.value, ast.Name)
                and node.value.id == "structlog"
            ) or (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("structlog")
                and any(a.name in {"get_logger", "wrap_logger", "getLogger"} for a in node.names)
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
