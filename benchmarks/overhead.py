"""The middleware's own cost per call: ``cascade.run`` against the bare openai SDK call.

Both talk to the same local ``cascade.testing`` server, interleaved call by call so that
drift affects both alike. "Own time" is the
time inside ``cascade.run`` not spent in the SDK call itself (the run's latency minus its
attempts' call latencies): the library's work measured directly, without the difference
of two noisy medians. The cascade runs a typical policy (json_schema + structure
validators) whose cheap answer passes, so each cascade call makes exactly one HTTP call,
as the bare one does: the difference is the library's own work (request checks, engine,
validators, costing, the record handed to the store, the log event).

    python benchmarks/overhead.py                 # memory store
    python benchmarks/overhead.py --store redis   # a redis-server started for the run
    python benchmarks/overhead.py --store sqlite
    python benchmarks/overhead.py --compare-language --text-chars 600

``--compare-language`` alternates, call by call, the per-call language detection (CLD2) with
the stop-word guess it replaced (``_stopword_language.py``) and prints both sides' own time.

Logging is configured as a production application would (structlog at WARNING), so the
per-call INFO event is built and filtered, not printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog
import yaml
from _redis import redis_server
from _requests import LONG_SYSTEM, TOOLS

import cascade
from cascade.testing import ScriptedServer

ANSWER = json.dumps({"invoice_number": "INV-1", "total": 10.5, "currency": "EUR"})
POLICY = {
    "models": ["gpt-4o-mini", "gpt-4o"],
    "validators": [
        {
            "type": "json_schema",
            "schema": {
                "type": "object",
                "required": ["invoice_number", "total", "currency"],
                "properties": {"total": {"type": "number"}, "currency": {"type": "string"}},
            },
        },
        {"type": "structure", "max_chars": 2000},
    ],
}
MESSAGES = [
    {"role": "system", "content": "Extract the invoice as JSON."},
    {"role": "user", "content": "Invoice INV-1 from ACME, total 10.50 EUR, due in 30 days."},
]


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def compare_language(n: int, messages: list[dict[str, str]]) -> int:
    """Own time per call with each language guess, alternating call by call."""
    import _stopword_language

    import cascade.recording as recording

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tmp = Path(tempfile.mkdtemp())
    (tmp / "invoice.yaml").write_text(yaml.safe_dump(POLICY))
    guesses = {"cld2": recording.language, "stop words": _stopword_language.language}
    own: dict[str, list[float]] = {name: [] for name in guesses}
    alone: dict[str, list[float]] = {name: [] for name in guesses}
    text = messages[-1]["content"]
    with ScriptedServer() as server:
        server.script("gpt-4o-mini", ANSWER)
        c = cascade.Cascade(tmp, client=server.client(), store="memory://")
        for i in range(2 * (n + 200)):
            name = "cld2" if i % 2 else "stop words"
            recording.language = guesses[name]  # type: ignore[assignment]  # benchmark only
            t1 = time.perf_counter()
            r = c.run("invoice", messages)
            t2 = time.perf_counter()
            guesses[name](text)
            t3 = time.perf_counter()
            if i >= 400:
                own[name].append(t2 - t1 - sum(a.latency_s for a in r.attempts))
                alone[name].append(t3 - t2)
        c.close()
    print(f"calls per side: {n}   user message: {len(text)} chars   python {sys.version[:6]}")
    print("| language guess | own time p50 | own time p99 | the guess alone p50 |")
    print("|---|---|---|---|")
    for name in guesses:
        print(
            f"| {name} | {statistics.median(own[name]) * 1e3:.3f} ms"
            f" | {pct(own[name], 0.99) * 1e3:.3f} ms"
            f" | {statistics.median(alone[name]) * 1e6:.1f} µs |"
        )
    ratio = statistics.median(own["cld2"]) / statistics.median(own["stop words"])
    print(f"own time p50, cld2 / stop words: {ratio:.3f}")
    return 0


def compare_derive(n: int, messages: list[dict[str, str]]) -> int:
    """Own time per call before (a named task, ``derive: false``) and after (no task: the
    fingerprint names it; the request's own checks run), alternating call by call, for a
    request without and with a ``response_format`` schema, and with a schema, tools and a
    longer system prompt (sync only)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tmp = Path(tempfile.mkdtemp())
    (tmp / "invoice.yaml").write_text(yaml.safe_dump({**POLICY, "derive": False}))
    schema = POLICY["validators"][0]["schema"]  # type: ignore[index]
    fmt = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": schema}}
    rows = []
    with ScriptedServer() as server:
        server.script("gpt-4o-mini", ANSWER)
        discover = {"mode": "cascade", "validators": POLICY["validators"]}
        c = cascade.Cascade(tmp, client=server.client(), store="memory://", discover=discover)
        long = [{"role": "system", "content": LONG_SYSTEM}, *messages[1:]]
        for label, msgs, params in (
            ("no response_format", messages, {}),
            ("response_format", messages, {"response_format": fmt}),
            (
                f"response_format + 2 tools, {len(LONG_SYSTEM)}-char system prompt",
                long,
                {"response_format": fmt, "tools": TOOLS},
            ),
        ):
            own: dict[str, list[float]] = {"before": [], "after": []}
            for i in range(2 * (n + 200)):
                side = "after" if i % 2 else "before"
                t1 = time.perf_counter()
                if side == "before":
                    r = c.run("invoice", msgs, **params)
                else:
                    r = c.run(None, msgs, model="gpt-4o", **params)
                t2 = time.perf_counter()
                assert r.ok and not r.escalated, r.reasons
                if i >= 400:
                    own[side].append(t2 - t1 - sum(a.latency_s for a in r.attempts))
            rows.append((label, own))
        c.close()
    print(f"calls per side: {n}   python {sys.version.split()[0]}   cpus: {os.cpu_count()}")
    print("| request | before p50 | after p50 | added p50 | before p99 | after p99 |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for label, own in rows:
        b, a = statistics.median(own["before"]), statistics.median(own["after"])
        worst = max(worst, a - b)
        print(
            f"| {label} | {b * 1e3:.3f} ms | {a * 1e3:.3f} ms | {(a - b) * 1e3:.3f} ms"
            f" | {pct(own['before'], 0.99) * 1e3:.3f} ms | {pct(own['after'], 0.99) * 1e3:.3f} ms |"
        )
    verdict = "met" if worst <= 0.05e-3 else "MISSED"
    print(
        f"most added p50 {worst * 1e3:.3f} ms ({verdict}, <= 0.05 ms)"
        f"   load average now {os.getloadavg()[0]:.2f}"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000, help="calls per side and mode")
    ap.add_argument("--store", choices=["memory", "sqlite", "redis"], default="memory")
    ap.add_argument(
        "--compare-language", action="store_true",
        help="alternate CLD2 and the old stop-word language guess, call by call (sync only)",
    )  # fmt: skip
    ap.add_argument(
        "--compare-derive", action="store_true",
        help="alternate a named task without the request's own checks and a discovered one "
        "with them, call by call (sync only)",
    )  # fmt: skip
    ap.add_argument("--text-chars", type=int, default=0, help="pad the user message to N chars")
    args = ap.parse_args()
    messages = MESSAGES
    if args.text_chars:
        pad = " Please check the line items against the purchase order before you answer."
        text = MESSAGES[1]["content"]
        text = (text + pad * (args.text_chars // len(pad) + 1))[: args.text_chars]
        messages = [MESSAGES[0], {"role": "user", "content": text}]
    if args.compare_language:
        return compare_language(args.n, messages)
    if args.compare_derive:
        return compare_derive(args.n, messages)

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tmp = Path(tempfile.mkdtemp())
    (tmp / "invoice.yaml").write_text(yaml.safe_dump(POLICY))
    stack = contextlib.ExitStack()
    if args.store == "redis":
        store_url = stack.enter_context(redis_server()).url + "?prefix=bench"
    elif args.store == "sqlite":
        store_url = f"sqlite:///{tmp / 'records.sqlite3'}"
    else:
        store_url = "memory://"

    rows = []
    with stack, ScriptedServer() as server:
        server.script("gpt-4o-mini", ANSWER)
        client = server.client()
        c = cascade.Cascade(tmp, client=client, store=store_url)

        bare_s, casc_s, own_s = [], [], []
        for i in range(args.n + 200):
            t0 = time.perf_counter()
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            t1 = time.perf_counter()
            r = c.run("invoice", messages)
            t2 = time.perf_counter()
            assert r.ok and not r.escalated
            if i >= 200:  # warm-up: connections, caches, first-use imports
                bare_s.append(t1 - t0)
                casc_s.append(t2 - t1)
                own_s.append(t2 - t1 - sum(a.latency_s for a in r.attempts))
        rows.append(("sync", bare_s, casc_s, own_s))

        async def amain() -> tuple[list[float], list[float], list[float]]:
            aclient = server.async_client()
            ac = cascade.Cascade(tmp, async_client=aclient, store=c.store)
            bare, casc, own = [], [], []
            for i in range(args.n + 200):
                t0 = time.perf_counter()
                await aclient.chat.completions.create(model="gpt-4o-mini", messages=messages)
                t1 = time.perf_counter()
                r = await ac.arun("invoice", messages)
                t2 = time.perf_counter()
                assert r.ok
                if i >= 200:
                    bare.append(t1 - t0)
                    casc.append(t2 - t1)
                    own.append(t2 - t1 - sum(a.latency_s for a in r.attempts))
            return bare, casc, own

        rows.append(("async", *asyncio.run(amain())))
        c.store.flush()
        c.close()

    print(
        f"store: {args.store}   calls per row: {args.n}   python {sys.version.split()[0]}"
        f"   cpus: {os.cpu_count()}"
    )
    print(
        "| mode | bare SDK p50 | cascade p50 | overhead p50 | bare p99 | cascade p99 |"
        " overhead p99 | own time p50 | own time p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, bare, casc, own in rows:
        b50, c50 = statistics.median(bare), statistics.median(casc)
        b99, c99 = pct(bare, 0.99), pct(casc, 0.99)
        print(
            f"| {mode} | {b50 * 1e3:.3f} ms | {c50 * 1e3:.3f} ms | {(c50 - b50) * 1e3:.3f} ms"
            f" | {b99 * 1e3:.3f} ms | {c99 * 1e3:.3f} ms | {(c99 - b99) * 1e3:.3f} ms"
            f" | {statistics.median(own) * 1e3:.3f} ms | {pct(own, 0.99) * 1e3:.3f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
