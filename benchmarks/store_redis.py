"""Benchmark RedisStore: write throughput, Redis memory per record, time to read back.

Starts its own redis-server on a free port (nothing else is touched), writes N records of a
realistic mix (20% escalated, kept whole with their outputs; 80% passing, kept at 5%),
flushes, and prints a markdown table.

    python benchmarks/store_redis.py              # 200k records
    python benchmarks/store_redis.py --n 1000000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace

from _redis import redis_server

from cascade.events import Attempt, CallRecord, Result, Verdict
from cascade.recording import build_record
from cascade.stores import RedisStore

WORDS = ("the", "invoice", "total", "amount", "customer", "address", "order", "refund", "item")


def text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def make_records(n: int, seed: int = 1) -> list[CallRecord]:
    """N records built by build_record from a few dozen templates, each with its own id/time."""
    rng = random.Random(seed)
    templates = []
    for i in range(40):
        escalated = i % 5 == 0
        cheap = Attempt(
            "gpt-4o-mini",
            "answer",
            '{"total": ' + text(rng, 400) + "}",
            (Verdict("schema", not escalated, "" if not escalated else "missing field 'date'"),),
            700,
            120,
            0,
            0.000177,
            0.6,
        )
        strong = Attempt(
            "gpt-4o",
            "answer",
            '{"total": ' + text(rng, 500) + "}",
            (Verdict("schema", True),),
            700,
            140,
            0,
            0.00315,
            1.4,
        )
        attempts = (cheap, strong) if escalated else (cheap,)
        result = Result(
            f"task{i % 4}",
            attempts[-1].output,
            None,
            attempts[-1].model,
            escalated,
            True,
            attempts,
            sum(a.cost_usd or 0 for a in attempts),
            0.00315,
        )
        messages = [
            {"role": "system", "content": "Extract the invoice fields as JSON."},
            {"role": "user", "content": text(rng, 1500) + " contact jane@example.com"},
        ]
        # Passing templates: half sampled, half not; the mix below picks 5% sampled passes.
        templates.append(
            (escalated, build_record(result, messages, latency_s=0.7, rng=lambda i=i: i % 2 / 2))
        )
    escalated_t = [r for e, r in templates if e]
    sampled_pass = [r for e, r in templates if not e and r.sampled]
    unsampled_pass = [r for e, r in templates if not e and not r.sampled]
    start = time.time() - n / 1000
    out = []
    for k in range(n):
        roll = rng.random()
        if roll < 0.2:
            base = rng.choice(escalated_t)
        elif roll < 0.2 + 0.8 * 0.05:
            base = rng.choice(sampled_pass)
        else:
            base = rng.choice(unsampled_pass)
        out.append(replace(base, id=f"{k:016x}{rng.getrandbits(64):016x}", time=start + k / 1000))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="records to write")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"building {args.n:,} records...", file=sys.stderr)
    records = make_records(args.n)
    with redis_server() as server:
        client = server.client
        before = int(client.info("memory")["used_memory"])
        # A queue as large as the run, so the burst measures the writer, not the spool.
        store = RedisStore(
            server.url,
            spool=server.directory / "spool",
            queue_size=args.n + 1,
            batch_size=args.batch_size,
        )
        t0 = time.perf_counter()
        for r in records:
            store.add(r)
        t_add = time.perf_counter() - t0
        store.flush()
        t_write = time.perf_counter() - t0
        after = int(client.info("memory")["used_memory"])
        stored = sum(int(client.xlen(f"cascade:records:{t}")) for t in store.tasks())

        t0 = time.perf_counter()
        read = sum(1 for _ in store.records())
        t_records = time.perf_counter() - t0
        t0 = time.perf_counter()
        days = store.days()
        t_days = time.perf_counter() - t0
        t0 = time.perf_counter()
        hours = store.hours() if hasattr(store, "hours") else []  # a checkout before them
        t_hours = time.perf_counter() - t0
        script = client.info("commandstats").get("cmdstat_evalsha", {})
        store.close()
        assert read == stored == sum(r.sampled for r in records)
        assert sum(d.calls for d in days) == args.n

    delta = after - before
    rows = [
        ("records written", f"{args.n:,}"),
        ("records kept whole (stream entries)", f"{stored:,} ({stored / args.n:.1%})"),
        ("caller time per add()", f"{t_add / args.n * 1e6:.1f} µs"),
        ("write throughput (add → flushed)", f"{args.n / t_write:,.0f} records/s"),
        ("Redis memory per stored record", f"{delta / stored:,.0f} B"),
        ("Redis memory per call (incl. seen keys)", f"{delta / args.n:,.0f} B"),
        ("Redis memory total", f"{delta / 2**20:,.1f} MiB"),
        (f"read all records() ({read:,})", f"{t_records:.2f} s"),
        (f"read days() ({len(days)} task-days)", f"{t_days * 1000:.0f} ms"),
        (f"read hours() ({len(hours)} task-hours)", f"{t_hours * 1000:.0f} ms"),
        ("Redis time per record in the apply script", f"{script.get('usec_per_call', 0):.1f} µs"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
