"""Benchmark the dashboard's pages over a Redis store of 1,000,000 calls: time per page load.

Loads the workload of ``report_redis.py`` (3 tasks over the last 10 days, 20% escalated and
kept whole, passing calls kept at 5%) into a redis-server the script starts, serves
``cascade.dashboard.create_app`` with uvicorn on a free port with the counter cache off
(``cache_s=0``: every load reads the counters again), and times complete HTTP GETs of each
page, in turn, ``--repeat`` times. The Task page is timed twice: its first load (the
patterns not built yet: counters only, the build starts in the background) and its loads
once the background build is done; the build's own time is printed too. Prints a markdown
table: median and slowest load per page.

    python benchmarks/dashboard_redis.py              # 1,000,000 calls
    python benchmarks/dashboard_redis.py --n 100000 --repeat 5
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import time

from _redis import redis_server
from report_redis import TASKS, calls

from cascade.dashboard import create_app
from cascade.proxy import ProxyServer
from cascade.stores import RedisStore

TASK = f"/task?task={TASKS[0]}"
PAGES = (
    ("Overview, all time", "/"),
    ("Overview, last 24 h", "/?since=24h"),
    (f"Task {TASKS[0]}, patterns built", TASK),
    (f"Calls of {TASKS[0]}", f"/calls?task={TASKS[0]}"),
    ("Calls, escalated", f"/calls?task={TASKS[0]}&escalated=yes"),
    ("Calls, by validator", f"/calls?task={TASKS[0]}&validator=confidence"),
    ("Calls, by model", f"/calls?task={TASKS[0]}&model=gpt-4o"),
)


def load(server: ProxyServer, path: str) -> tuple[float, int, int]:
    """Seconds for one complete GET, its status and its size."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return time.perf_counter() - t0, r.status, len(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="calls to load")
    parser.add_argument("--repeat", type=int, default=5, help="loads per page")
    args = parser.parse_args(argv)
    with redis_server() as redis:
        store = RedisStore(redis.url, spool=redis.directory / "spool")
        t0 = time.perf_counter()
        loaded = 0
        for chunk in calls(args.n):
            store._send(chunk)  # the store's own script and pipeline, synchronously
            loaded += len(chunk)
            print(f"\rloaded {loaded:,}", end="", file=sys.stderr)
        print(f" in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        times: dict[str, list[float]] = {name: [] for name, _ in PAGES}
        sizes: dict[str, int] = {}
        app = create_app(store, cache_s=0, patterns_s=86_400)
        figures = app.state.dashboard.figures
        with ProxyServer(app) as server:
            load(server, "/")  # the first request warms imports and the connection pool
            first, status, _ = load(server, TASK)
            assert status == 200
            t0 = time.perf_counter()
            while figures._building:  # the patterns' build, started by that first load
                time.sleep(0.05)
            build = time.perf_counter() - t0 + first
            for _ in range(args.repeat):
                for name, path in PAGES:
                    seconds, status, size = load(server, path)
                    assert status == 200, (path, status)
                    times[name].append(seconds)
                    sizes[name] = size
        store.close()
    print(f"| page ({args.n:,} calls) | median load | slowest load | page size |")
    print("|---|---|---|---|")
    print(
        f"| Task {TASKS[0]}, first load (counters; patterns pending) | {first * 1000:,.0f} ms "
        "| (one load) | |"
    )
    for name, _ in PAGES:
        ts = times[name]
        print(
            f"| {name} | {statistics.median(ts) * 1000:,.0f} ms | {max(ts) * 1000:,.0f} ms "
            f"| {sizes[name] / 1024:,.0f} KiB |"
        )
    print(
        f"\nbackground build of the Task page's patterns ({figures.sample:,} records): "
        f"{build:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
