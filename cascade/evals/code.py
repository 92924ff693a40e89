"""The functional scorer for code: an example's ``tests`` run against the answer.

An example for ``cascade eval --scorer code`` carries ``"tests"``: Python source with asserts
(a string, or a list of strings joined by newlines) that exercises what the answer defines::

    {"messages": [{"role": "user", "content": "Write add(a, b) in Python."}],
     "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]}

The answer's code is the first fenced block of the answer (a ```python block first, else any
```block), or the whole answer when it has none. The code, then the tests, run as one file
in a child ``python -I`` (isolated: no user site, no ``PYTHON*`` variables, no current
directory on the path) in a new empty temporary directory, with an environment of ``PATH``
and ``LANG`` only (none of our keys or secrets), no stdin, in a session of its own, under
``RLIMIT_CPU`` (``cpu_s``), ``RLIMIT_AS`` (``memory_mb``), ``RLIMIT_FSIZE`` and
``RLIMIT_CORE`` = 0, and a wall-clock limit (``wall_s``) after which the whole session is
killed. The answer passes when the file exits 0.

The limits are set in the child before the answer's code runs, by a one-line launcher that
calls ``resource.setrlimit`` and then ``exec``s the program (not ``preexec_fn``, which is
unsafe in a process with threads, and ``cascade eval`` scores from worker threads).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CodeLimits", "CodeRun", "extract_code", "run_tests"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
_OUTPUT = 64 * 1024  # bytes of the child's stderr kept for the reason
_LAUNCH = (
    "import os, resource, sys\n"
    "cpu, mem, size = (int(x) for x in sys.argv[1:4])\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))\n"
    "resource.setrlimit(resource.RLIMIT_AS, (mem, mem))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
    "os.execv(sys.executable, [sys.executable, '-I', sys.argv[4]])\n"
)


@dataclass(frozen=True, slots=True)
class CodeLimits:
    """What the tests may use: CPU seconds, wall-clock seconds, address space (MiB) and the
    size of any file written (MiB)."""

    cpu_s: int = 10
    wall_s: float = 30.0
    memory_mb: int = 512
    file_mb: int = 16


@dataclass(frozen=True, slots=True)
class CodeRun:
    """Whether the answer passed its tests, and why not (the exception's last line, or the
    limit it hit)."""

    passed: bool
    reason: str = ""


def extract_code(answer: str) -> str:
    """The code in an answer: its first ```python block, else its first fenced block, else
    the whole answer."""
    blocks = _FENCE.findall(answer)
    for lang, body in blocks:
        if lang.lower() in ("python", "py", "python3"):
            return str(body)
    return str(blocks[0][1]) if blocks else answer


def run_tests(answer: str, tests: str, limits: CodeLimits | None = None) -> CodeRun:
    """Run ``tests`` against the code of ``answer`` in a limited child process (see the
    module docstring). Never raises for what the code does."""
    limits = limits or CodeLimits()
    program = f"{extract_code(answer)}\n\n# -- tests --\n{tests}\n"
    with tempfile.TemporaryDirectory(prefix="cascade-code-") as work:
        path = Path(work) / "program.py"
        path.write_text(program, encoding="utf-8")
        argv = [
            sys.executable, "-I", "-c", _LAUNCH, str(limits.cpu_s),
            str(limits.memory_mb * 2**20), str(limits.file_mb * 2**20), str(path),
        ]  # fmt: skip
        env = {"PATH": os.defpath, "LANG": "C.UTF-8"}
        child = subprocess.Popen(
            argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            _, err = child.communicate(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            _kill(child)
            child.communicate()  # reads what is left and closes the pipe
            return CodeRun(False, f"wall-clock limit: still running after {limits.wall_s:g} s")
        finally:
            _kill(child)  # whatever the program left running in its session
    code = child.returncode
    if code == 0:
        return CodeRun(True)
    text = err[-_OUTPUT:].decode("utf-8", "replace").strip()
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and not text):
        return CodeRun(False, f"CPU time limit: more than {limits.cpu_s} s")
    last = text.splitlines()[-1] if text else f"exit status {code}"
    if "MemoryError" in last:
        return CodeRun(False, f"memory limit ({limits.memory_mb} MiB): {last}")
    return CodeRun(False, last[:300])


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole session (and whatever it started) and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the session has ended
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
