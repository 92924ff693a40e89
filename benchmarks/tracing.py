"""What tracing costs per call: the library's own time with no tracer provider, before and
after the tracing hooks, and with the OpenTelemetry SDK exporting every span to memory.

Own time is measured as in ``overhead.py`` (the time inside ``cascade.run`` not spent in its
model calls; same policy, same local server, a passing cheap answer: one model call per run).
Each configuration runs in a process of its own, and the configurations take turns, round
after round, so that the machine's drift affects them alike:

- ``before``: the code at ``--before`` (a git revision; a worktree is made for it), no provider;
- ``none``: this tree, no tracer provider (the default: ``tracing.tracer()`` is None);
- ``memory``: this tree, an SDK ``TracerProvider`` with a ``SimpleSpanProcessor`` into an
  ``InMemorySpanExporter`` (two spans per call: the cascade call and its model call).

    python benchmarks/tracing.py --before ec55476 -n 1500 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child(n: int, otel: str) -> None:
    import logging

    import structlog
    import yaml
    from overhead import ANSWER, MESSAGES, POLICY

    import cascade
    from cascade.testing import ScriptedServer

    exporter = None
    if otel == "memory":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tmp = Path(tempfile.mkdtemp())
    (tmp / "invoice.yaml").write_text(yaml.safe_dump(POLICY))
    own: list[float] = []
    with ScriptedServer() as server:
        server.script("gpt-4o-mini", ANSWER)
        with cascade.Cascade(tmp, client=server.client(), store="memory://") as c:
            for i in range(n + 200):
                t0 = time.perf_counter()
                r = c.run("invoice", MESSAGES)
                t1 = time.perf_counter()
                if i >= 200:
                    own.append(t1 - t0 - sum(a.latency_s for a in r.attempts))
                if exporter is not None and i % 500 == 0:
                    exporter.clear()  # memory stays bounded; the cost per span is the same
    own.sort()
    spans = 0 if exporter is None else len(exporter.get_finished_spans())
    print(json.dumps({"p50": statistics.median(own), "p99": own[int(0.99 * len(own))],
                      "spans_left": spans}))  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=None, help="git revision without the tracing hooks")
    ap.add_argument("-n", type=int, default=1500, help="calls per run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", choices=["none", "memory"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.n, args.child)
        return 0

    sides: list[tuple[str, Path, str]] = []
    worktree = None
    if args.before:
        worktree = Path(tempfile.mkdtemp()) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(worktree), args.before],
                       cwd=ROOT, check=True)  # fmt: skip
        sides.append(("before", worktree, "none"))
    sides += [("none", ROOT, "none"), ("memory", ROOT, "memory")]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in sides}
    try:
        for _ in range(args.rounds):
            for name, tree, otel in sides:
                env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{HERE}"}
                out = subprocess.run(
                    [sys.executable, str(HERE / "tracing.py"), "--child", otel, "-n", str(args.n)],
                    env=env, check=True, capture_output=True, text=True, cwd=HERE,
                ).stdout  # fmt: skip
                results[name].append(json.loads(out.splitlines()[-1]))
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
    print(f"calls per run: {args.n}   rounds: {args.rounds}   python {sys.version.split()[0]}"
          f"   cpus: {os.cpu_count()}")  # fmt: skip
    print("| configuration | own time p50 (median of rounds) | each round's p50 | own time p99 |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        p50s = [r["p50"] * 1e3 for r in runs]
        p99 = statistics.median(r["p99"] * 1e3 for r in runs)
        each = " ".join(f"{x:.3f}" for x in p50s)
        print(f"| {name} | {statistics.median(p50s):.3f} ms | {each} | {p99:.3f} ms |")
    if "before" in results:
        diffs = [
            (a["p50"] - b["p50"]) * 1e3
            for a, b in zip(results["none"], results["before"], strict=True)
        ]
        print(f"none - before, per round (ms): {' '.join(f'{d:+.3f}' for d in diffs)}; "
              f"median {statistics.median(diffs):+.4f} ms")  # fmt: skip
    diffs = [
        (a["p50"] - b["p50"]) * 1e3 for a, b in zip(results["memory"], results["none"], strict=True)
    ]
    print(f"memory - none, per round (ms): {' '.join(f'{d:+.3f}' for d in diffs)}; "
          f"median {statistics.median(diffs):+.4f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
