"""Benchmark ``cascade report`` over a Redis store of 1,000,000 calls: time, peak RSS, memory.

Starts its own redis-server on a free port (nothing else is touched), loads N calls of 3 tasks
over the last 10 days (20% escalated and kept whole, 80% passing and kept at 5%) through the
store's own Lua script in large pipelines (exactly what ``RedisStore.add`` writes, without the
background thread), then runs ``cascade report --format json`` in a subprocess and prints a
markdown table: wall time, the report process's peak RSS, Redis memory per stored record and
per call.

    python benchmarks/report_redis.py                  # 1,000,000 calls
    python benchmarks/report_redis.py --n 200000 --sample 5000
    python benchmarks/report_redis.py --dump /tmp/1m.rdb   # keep the loaded store
    python benchmarks/report_redis.py --from-dump /tmp/1m.rdb --n 1000000   # no loading
    python benchmarks/report_redis.py --from-dump /tmp/1m.rdb --rounds 5 --compare /tmp/old

``--compare DIR`` runs the report alternately with the ``cascade`` of another checkout (a
``git worktree`` of an older commit) and of this one, on the same store, ``--rounds`` each,
and prints each side's median, the ratio and the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from _redis import redis_server

from cascade.events import Attempt, CallRecord, Result, Verdict
from cascade.recording import build_record
from cascade.stores import RedisStore

TASKS = ("extract_invoice", "summarise_ticket", "classify_email")
VOCABULARY = (  # noqa: SIM905  (a paragraph reads better than 60 quoted words)
    "invoice total amount customer address order refund item shipping tax discount due date "
    "payment card bank transfer account number reference supplier vendor contract renewal "
    "subscription plan upgrade cancel complaint delay damaged missing package tracking return "
    "warranty repair replacement manager urgent please thanks regards hello team support ticket "
    "issue error login password reset access denied billing statement balance credit debit"
).split()
HARD = ("handwritten", "scanned", "multi-currency", "table", "attachment", "german", "pdf")
SPAN_S = 10 * 86_400


def words(rng: random.Random, n: int, hard: bool) -> str:
    out = [rng.choice(VOCABULARY) for _ in range(n)]
    if hard:  # escalated inputs over-represent a few terms, so patterns have something to find
        out[rng.randrange(n)] = rng.choice(HARD)
        out[rng.randrange(n)] = rng.choice(HARD)
    return " ".join(out)


def templates(rng: random.Random, per_kind: int = 60) -> dict[str, list[CallRecord]]:
    """Records of every kind built by ``build_record``: escalated, sampled and unsampled passes."""
    kinds: dict[str, list[CallRecord]] = {"escalated": [], "sampled": [], "unsampled": []}
    for i in range(per_kind * 3):
        kind = ("escalated", "sampled", "unsampled")[i % 3]
        escalated = kind == "escalated"
        reason = rng.choice(("missing field 'date'", "confidence 0.41 < 0.7", "not valid JSON"))
        validator = reason.split()[0] if not reason.startswith("missing") else "schema"
        cheap = Attempt(
            "gpt-4o-mini",
            "answer",
            '{"answer": "' + words(rng, 60, False) + '"}',
            (
                Verdict(
                    validator,
                    not escalated,
                    reason if escalated else "",
                    0.41 if escalated else 0.9,
                ),
            ),
            rng.randint(300, 2500),
            120,
            0,
            0.000177,
            0.6,
        )
        strong = Attempt(
            "gpt-4o", "answer", '{"answer": "' + words(rng, 80, False) + '"}',
            (Verdict(validator, True, "", 0.95),), 700, 140, 0, 0.00315, 1.4,
        )  # fmt: skip
        attempts = (cheap, strong) if escalated else (cheap,)
        task = TASKS[(i // 3) % len(TASKS)]  # every task gets every kind
        result = Result(
            task, attempts[-1].output, None, attempts[-1].model, escalated, True, attempts,
            sum(a.cost_usd or 0 for a in attempts), 0.00315,
        )  # fmt: skip
        messages = [
            {"role": "system", "content": f"Do the {task} task; answer in JSON."},
            {"role": "user", "content": words(rng, rng.randint(80, 300), escalated)},
        ]
        rate = 1.0 if kind == "sampled" else 0.0
        kinds[kind].append(build_record(result, messages, latency_s=0.7, rng=lambda r=rate: 1 - r))
    return kinds


def calls(n: int, seed: int = 1, chunk: int = 20_000) -> tuple[list[CallRecord], ...]:
    """N calls in chunks, oldest first, spread over the last 10 days."""
    rng = random.Random(seed)
    kinds = templates(rng)
    start = time.time() - SPAN_S
    out: list[CallRecord] = []
    for k in range(n):
        roll = rng.random()
        kind = "escalated" if roll < 0.2 else "sampled" if roll < 0.2 + 0.8 * 0.05 else "unsampled"
        base = rng.choice(kinds[kind])
        out.append(
            replace(base, id=f"{k:016x}{rng.getrandbits(64):016x}", time=start + k * SPAN_S / n)
        )
        if len(out) == chunk:
            yield out
            out = []
    if out:
        yield out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="calls to load")
    parser.add_argument("--sample", type=int, default=None, help="pass --sample N to the report")
    parser.add_argument(
        "--dump", type=Path, default=None, metavar="FILE",
        help="save the loaded store here (an RDB file) for --from-dump",
    )  # fmt: skip
    parser.add_argument(
        "--from-dump", type=Path, default=None, metavar="FILE",
        help="start from a store saved by --dump instead of loading (give the same --n; "
        "the memory figures are then of the whole store)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="report runs (median shown)")
    parser.add_argument(
        "--compare", type=Path, default=None, metavar="DIR",
        help="also run the report with the cascade package of this checkout, alternately",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with redis_server(args.from_dump) as server:
        client, url, tmp = server.client, server.url, server.directory
        before = 0 if args.from_dump else int(client.info("memory")["used_memory"])
        t0 = time.perf_counter()
        if args.from_dump is None:
            store = RedisStore(url, spool=tmp / "spool")
            loaded = 0
            for chunk in calls(args.n):
                store._send(chunk)  # the store's own script and pipeline, synchronously
                loaded += len(chunk)
                print(f"\rloaded {loaded:,}", end="", file=sys.stderr)
            print(file=sys.stderr)
            store.close()
        t_load = time.perf_counter() - t0
        after = int(client.info("memory")["used_memory"])
        if args.dump is not None:
            client.save()
            shutil.copyfile(tmp / "dump.rdb", args.dump)
        stored = sum(int(client.xlen(f"cascade:records:{t}")) for t in TASKS)
        streams = sum(
            int(client.memory_usage(f"cascade:records:{t}", samples=0) or 0) for t in TASKS
        )

        out = tmp / "report.json"
        argv_report = ["report", "--store", url, "--format", "json", "--out", str(out)]
        if args.sample is not None:
            argv_report += ["--sample", str(args.sample)]
        sides = {"this checkout": None} | ({"compared": args.compare} if args.compare else {})
        walls: dict[str, list[float]] = {side: [] for side in sides}
        peaks: list[int] = []  # KiB, of this checkout's report processes
        loads = []
        for r in range(args.rounds):
            order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
            for side, checkout in order:
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", _report_code(argv_report, checkout, tmp / "hwm")],
                    check=True,
                )
                walls[side].append(time.perf_counter() - t0)
                loads.append(os.getloadavg()[0])
                print(f"{side}: {walls[side][-1]:.2f} s (load {loads[-1]:.1f})", file=sys.stderr)
                if checkout is None:
                    report = json.loads(out.read_text())
                    peaks.append(int((tmp / "hwm").read_text()))
        t_report = statistics.median(walls["this checkout"])
        peak_kib = max(peaks)

    overall = report["overall"]
    assert overall["calls"] == args.n, overall["calls"]
    delta = after - before
    rows = [
        (
            "calls loaded (3 tasks, 10 days)",
            f"{args.n:,} in {t_load:.0f} s" + (" (from a dump)" if args.from_dump else ""),
        ),
        ("records kept whole (stream entries)", f"{stored:,} ({stored / args.n:.1%})"),
        ("records the patterns are based on", f"{overall['patterns']['sampled_records']:,}"),
        (
            "`cascade report --format json` wall time",
            f"{t_report:.2f} s" + (f" (median of {args.rounds})" if args.rounds > 1 else ""),
        ),
        ("report process peak RSS", f"{peak_kib / 1024:,.0f} MiB"),
        ("Redis memory per stored record (streams only)", f"{streams / stored:,.0f} B"),
        ("Redis memory per stored record (all keys / stored)", f"{delta / stored:,.0f} B"),
        ("Redis memory per call (all keys, incl. 1-day seen keys)", f"{delta / args.n:,.0f} B"),
        ("Redis memory total", f"{delta / 2**20:,.0f} MiB"),
    ]
    if args.compare:
        theirs = statistics.median(walls["compared"])
        rows.insert(4, (f"... with the cascade of {args.compare}", f"{theirs:.2f} s (this: "
                        f"x{t_report / theirs:.2f})"))  # fmt: skip
    rows.insert(4, ("load average during the report runs", " to ".join(
        f"{x:.1f}" for x in (min(loads), max(loads)))))  # fmt: skip
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


def _report_code(argv: list[str], checkout: Path | None, hwm: Path) -> str:
    """The report process's program; with ``checkout``, its ``cascade`` is imported from
    there (an editable install's import hook is taken out first: it would win).

    It writes its peak RSS (KiB) to ``hwm``, from its own ``VmHWM``: the rusage of a child
    counts the memory of the parent it was forked from (this one, large after loading)."""
    code = (
        f"from cascade.cli import main\ncode = main({argv!r})\n"
        "hwm = next(x for x in open('/proc/self/status') if x.startswith('VmHWM'))\n"
        f"open({str(hwm)!r}, 'w').write(hwm.split()[1])\nraise SystemExit(code)"
    )
    if checkout is None:
        return code
    return (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
        f"repr(f)]; sys.path.insert(0, {str(checkout)!r})\n" + code
    )


if __name__ == "__main__":
    raise SystemExit(main())
