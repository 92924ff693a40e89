"""What ``cascade serve`` adds: latency and throughput of the proxy against a zero-latency upstream.

Three kinds of process share the machine's cores, unpinned:

- the upstream: raw asyncio, a fixed ChatCompletion for any request (~30 us of CPU each);
- the proxy: ``cascade serve`` itself, started as a user starts it (``python -m cascade.cli
  serve --workers N``, memory store unless ``--store``, a json_schema + structure policy whose
  cheap answer passes: exactly one upstream call per request, sent as ``--upstream-http``
  says, by default directly on aiohttp);
- this script, the load generator: raw HTTP/1.1 keep-alive connections, far cheaper than an
  SDK client, so the proxy is what is measured. The CPU each process used is printed.

Every measurement sends the same bytes to the upstream directly and to the proxy, under the
same load, so "added" is everything the proxy does per request, its own upstream call included:

1. one client, one request at a time, alternating direct and proxy: the proxy's own time
   per request, without queueing;
2. ``--concurrency`` clients (64) sending at ``--rate`` requests/s in total (500), Poisson
   arrivals, the same schedule for both targets: latency at the target load. A request that
   could not be sent on time because its client still waited for the previous answer is timed
   from when it should have been sent;
3. the same clients as fast as answers come: the highest rate. Latency there is queueing
   (Little's law: clients / throughput), shown, not judged.

Each ``--repeat`` starts new processes, so the runs are independent samples.

    python benchmarks/proxy.py                        # 1 worker
    python benchmarks/proxy.py --workers 2 --repeat 3
    python benchmarks/proxy.py --profile out.prof     # cProfile the proxy (1 worker)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from _requests import LONG_SYSTEM, TOOLS

if TYPE_CHECKING:
    from collections.abc import Coroutine

ROOT = Path(__file__).resolve().parent.parent  # the checkout, for `import cascade`
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
REQUEST = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Extract the invoice as JSON."},
            {
                "role": "user",
                "content": "Invoice INV-1 from ACME, total 10.50 EUR, due in 30 days.",
            },
        ],
    }
).encode()
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60},
    }
).encode()
KEY = "bench-proxy-key"
T = TypeVar("T")


# -- the upstream: a fixed answer to any request, keep-alive ----------------------------------


class _Upstream(asyncio.Protocol):
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.transport.write(self.response)


def serve_upstream() -> None:
    async def main() -> None:
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only when the socket says TCP.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        server = await asyncio.get_running_loop().create_server(_Upstream, sock=sock)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the load generator ----------------------------------------------------------------------


# The same request asking for the answer's schema (--compare-derive's second row).
SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "invoice", "schema": POLICY["validators"][0]["schema"]},  # type: ignore[index]
}
REQUEST_WITH_SCHEMA = json.dumps({**json.loads(REQUEST), "response_format": SCHEMA_FORMAT}).encode()
_LONG = json.loads(REQUEST)
_LONG["messages"][0]["content"] = LONG_SYSTEM
REQUEST_FULL = json.dumps({**_LONG, "response_format": SCHEMA_FORMAT, "tools": TOOLS}).encode()
BODIES = (
    ("no response_format", REQUEST),
    ("response_format", REQUEST_WITH_SCHEMA),
    (f"response_format + 2 tools, {len(LONG_SYSTEM)}-char system prompt", REQUEST_FULL),
)


def request_bytes(task: str | None, body: bytes = REQUEST) -> bytes:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\nauthorization: Bearer {KEY}\r\n"
        f"content-length: {len(body)}\r\n"
    )
    if task:
        head += f"x-cascade-task: {task}\r\n"
    return head.encode() + b"\r\n" + body


class Conn:
    """One keep-alive HTTP/1.1 connection sending the same request again and again."""

    def __init__(self, port: int, payload: bytes) -> None:
        self.port, self.payload = port, payload

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def send(self) -> int:
        """Send the request, read the whole answer; its status."""
        self.writer.write(self.payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return int(head[9:12])


@dataclass
class Sample:
    """Latencies (seconds) of one target under one load."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores used, by process
    split: list[int] = field(default_factory=list)  # the clients' connections, by proxy worker
    warm_up: int = 0  # requests sent before timing started
    wall: float = 0.0  # seconds the whole measurement took, warm-up included

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def p(self, q: float) -> float:
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))]


async def sequential(proxy: int, upstream: int, n: int) -> tuple[Sample, Sample]:
    """One client, alternating: a request upstream directly, then the same through the proxy."""
    direct = await Conn(upstream, request_bytes(None)).open()
    via = await Conn(proxy, request_bytes("invoice")).open()
    d, p = Sample(warm_up=200), Sample(warm_up=200)
    for i in range(n + 200):
        for conn, sample in ((direct, d), (via, p)):
            start = time.perf_counter()
            status = await conn.send()
            took = time.perf_counter() - start
            if i >= 200:  # warm-up
                sample.latencies.append(took)
                sample.elapsed += took
                sample.errors += status != 200
    direct.writer.close()
    via.writer.close()
    return d, p


async def compare_derive(proxy: int, n: int, body: bytes = REQUEST) -> tuple[Sample, Sample]:
    """One client, alternating: the named task without the request's own checks (before),
    then the same request with no header: its task discovered, its own checks run (after)."""
    named = await Conn(proxy, request_bytes("invoice", body)).open()
    found = await Conn(proxy, request_bytes(None, body)).open()
    before, after = Sample(warm_up=200), Sample(warm_up=200)
    for i in range(n + 200):
        for conn, sample in ((named, before), (found, after)):
            start = time.perf_counter()
            status = await conn.send()
            took = time.perf_counter() - start
            if i >= 200:
                sample.latencies.append(took)
                sample.elapsed += took
                sample.errors += status != 200
    named.writer.close()
    found.writer.close()
    return before, after


async def load(
    port: int, payload: bytes, clients: int, n: int, rate: float | None, server: int | None = None
) -> Sample:
    """``n`` requests from ``clients`` connections: at ``rate`` per second in total (Poisson
    arrivals, seeded, so every target gets the same schedule), or as fast as answered."""
    conns = [await Conn(port, payload).open() for _ in range(clients)]
    for c in conns:  # warm-up: every connection carried a request before timing starts
        await c.send()
    sample = Sample(split=connections(server, port) if server else [], warm_up=clients)
    per_client = n // clients
    # One Poisson process at `rate`, its arrivals dealt to the clients in turn.
    rng, t = random.Random(5), 0.0
    arrivals = []
    for _ in range(per_client * clients):
        t += rng.expovariate(rate) if rate else 0.0
        arrivals.append(t)
    schedules = [arrivals[i::clients] if rate else None for i in range(clients)]

    async def client(c: Conn, offsets: list[float] | None) -> None:
        for i in range(per_client):
            if offsets is None:
                sent = time.perf_counter()
            else:
                due = start + offsets[i]
                now = time.perf_counter()
                if now < due:
                    await asyncio.sleep(due - now)
                    sent = time.perf_counter()  # on time: the timer's own lateness is not timed
                else:
                    sent = due  # late because the previous answer was: that wait counts
            try:
                status = await c.send()
            except (OSError, asyncio.IncompleteReadError):
                sample.errors += 1
                await c.open()
                continue
            sample.latencies.append(time.perf_counter() - sent)
            sample.errors += status != 200

    start = time.perf_counter()
    await asyncio.gather(*(client(c, g) for c, g in zip(conns, schedules, strict=True)))
    sample.elapsed = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    return sample


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants (the proxy's workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):  # the process ended meanwhile
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def connections(server: int, port: int) -> list[int]:
    """How many established connections to ``port`` each process of ``server`` holds (the
    kernel hands a new connection to whichever worker accepts first)."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rpartition(":")[2], 16) == port and f[3] == "01":
            established.add(f[9])
    counts = []
    for pid in family(server):
        with contextlib.suppress(OSError):
            fds = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            n = sum(fd[8:-1] in established for fd in fds if fd.startswith("socket:["))
            if n:
                counts.append(n)
    return sorted(counts, reverse=True)


def cpu_times(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process and its descendants, by
    this process, and by everything else on the machine (other work disturbs the timings)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in pids.items():
        total = 0
        for p in family(pid):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        out[name] = total / tick
    t = os.times()
    out["load generator"] = t.user + t.system
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    machine = sum(int(busy[i]) for i in (0, 1, 2, 5, 6)) / tick  # all but idle, iowait, steal
    out["rest of the machine"] = machine - sum(out.values())
    # Time the hypervisor gave this machine's cores to other guests: on a shared host it
    # slows every process here, in proportion.
    out["stolen by the host"] = int(busy[7]) / tick
    return out


def measured(run: Coroutine[Any, Any, T], pids: dict[str, int]) -> T:
    """Run ``run`` and attach to its samples the CPU each process used meanwhile, in cores."""
    before, start = cpu_times(pids), time.perf_counter()
    result = asyncio.run(run)
    after, wall = cpu_times(pids), time.perf_counter() - start
    samples: tuple[Sample, ...] = result if isinstance(result, tuple) else (result,)  # type: ignore[assignment]
    for s in samples:
        s.cpu = {k: (after[k] - before[k]) / wall for k in after}
        s.wall = wall
    return result


def start_upstream(children: list[subprocess.Popen[str]]) -> tuple[int, int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "upstream"], stdout=subprocess.PIPE, text=True
    )
    children.append(proc)
    assert proc.stdout is not None
    return proc.pid, int(proc.stdout.readline())


def start_proxy(
    args: argparse.Namespace, upstream: str, tmp: Path, children: list[subprocess.Popen[str]]
) -> tuple[int, int]:
    """``cascade serve`` on a free port; returns once every worker has started."""
    port = free_port()
    command = [sys.executable, "-m", "cascade.cli", "serve", "--port", str(port)]
    store = f"sqlite:///{tmp / 'records.sqlite3'}" if args.store == "sqlite" else args.store
    command += ["--policies", str(tmp), "--store", store, "--workers", str(args.workers)]
    settings = dict(getattr(args, "config_extra", None) or {})
    if args.upstream_http:
        settings["upstream_http"] = args.upstream_http
    if settings:
        config = tmp / "proxy.yaml"
        config.write_text(json.dumps(settings))  # JSON is YAML too
        command += ["--config", str(config)]
    if args.profile:
        command[1:1] = ["-m", "cProfile", "-o", args.profile]
    env = {
        **os.environ,
        "OPENAI_BASE_URL": upstream,
        "OPENAI_API_KEY": "upstream-key",
        "CASCADE_PROXY_KEYS": KEY,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = tmp / "proxy.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stderr=sink, stdout=sink, text=True, env=env)
    children.append(proc)
    deadline = time.monotonic() + 60
    # With one worker uvicorn binds its port only after the application's startup: wait for
    # both, or the first request may find nothing listening yet.
    while not (
        log.read_text().count("Application startup complete") >= args.workers and _listening(port)
    ):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"cascade serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc.pid, port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop(children: list[subprocess.Popen[str]]) -> None:
    for child in reversed(children):  # SIGINT: uvicorn shuts down (cProfile writes its file)
        child.send_signal(signal.SIGINT)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- report ----------------------------------------------------------------------------------


def ms(x: float) -> str:
    return f"{x * 1e3:.2f}"


def row(label: str, d: Sample, p: Sample, added: bool = True) -> str:
    added50 = f"**{ms(p.p(0.5) - d.p(0.5))} ms**" if added else "(queueing)"
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in p.cpu.items())
    if len(p.split) > 1:
        cpu += f" (connections per worker: {'/'.join(map(str, p.split))})"
    return (
        f"| {label} | {ms(d.p(0.5))} / {ms(d.p(0.99))} ms | {ms(p.p(0.5))} / {ms(p.p(0.99))} ms"
        f" | {added50} | {p.rate:.0f} | {ms(cpu_per_request(p))} ms | {d.errors} / {p.errors}"
        f" | {cpu} |"
    )


def cpu_per_request(p: Sample) -> float:
    """CPU seconds the proxy spent per request it answered (all workers, warm-up included):
    unlike latency, this hardly depends on what else the machine's cores are doing."""
    return p.cpu["proxy"] * p.wall / (len(p.latencies) + p.errors + p.warm_up)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000, help="requests per measurement")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rate", type=float, default=500.0, help="offered requests/s, measurement 2")
    ap.add_argument("--workers", type=int, default=1, help="cascade serve --workers")
    ap.add_argument(
        "--store", default="memory://", help="cascade serve --store (sqlite: a new file)"
    )
    ap.add_argument(
        "--upstream-http",
        choices=["aiohttp", "httpx"],
        help="the proxy's upstream HTTP transport (default: the proxy's default, aiohttp)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="run every measurement this often")
    ap.add_argument("--profile", help="cProfile the proxy into this file (1 worker)")
    ap.add_argument(
        "--compare-derive", action="store_true",
        help="one client alternating a named task without the request's own checks and the "
        "same request discovered with them (fingerprint + derived checks)",
    )  # fmt: skip
    ap.add_argument("--role", choices=["upstream"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "upstream":
        with contextlib.suppress(KeyboardInterrupt):  # how the parent stops its children
            serve_upstream()
        return 0
    if args.profile and (args.workers != 1 or args.repeat != 1):
        ap.error("--profile needs --workers 1 and --repeat 1")

    import yaml

    tmp = Path(tempfile.mkdtemp())
    (tmp / "invoice.yaml").write_text(yaml.safe_dump(POLICY))
    if args.compare_derive:
        return _compare_derive(args, tmp)
    runs: list[tuple[Sample, ...]] = []
    c, n, proxied = args.concurrency, args.n, request_bytes("invoice")
    for _ in range(args.repeat):  # new processes each time: the runs are independent
        children: list[subprocess.Popen[str]] = []
        try:
            up_pid, up_port = start_upstream(children)
            upstream = f"http://127.0.0.1:{up_port}/v1"
            proxy_pid, proxy_port = start_proxy(args, upstream, tmp, children)
            pids = {"upstream": up_pid, "proxy": proxy_pid}
            d1, p1 = measured(sequential(proxy_port, up_port, n), pids)
            d2 = measured(load(up_port, request_bytes(None), c, n, args.rate), pids)
            p2 = measured(load(proxy_port, proxied, c, n, args.rate, proxy_pid), pids)
            d3 = measured(load(up_port, request_bytes(None), c, n, None), pids)
            p3 = measured(load(proxy_port, proxied, c, n, None, proxy_pid), pids)
            runs.append((d1, p1, d2, p2, d3, p3))
        finally:
            stop(children)

    import uvicorn

    extras = [m for m in ("uvloop", "httptools") if _installed(m)] or ["asyncio + h11"]
    print(
        f"python {sys.version.split()[0]}   cpus: {os.cpu_count()}   uvicorn {uvicorn.__version__}"
        f" ({', '.join(extras)})   cascade serve --workers {args.workers} --store {args.store}"
        f" (upstream: {args.upstream_http or 'default transport'})"
        f"   requests per row: {n}"
    )
    print()
    print(
        "| run | load | upstream directly p50 / p99 | through the proxy p50 / p99 | added p50"
        " | req/s through the proxy | proxy CPU per request | errors (direct / proxy)"
        " | CPU cores used, proxy phase |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (d1, p1, d2, p2, d3, p3) in enumerate(runs, 1):
        print(f"| {i} " + row("1 client, one request at a time", d1, p1))
        print(f"| {i} " + row(f"{c} clients, {args.rate:.0f} req/s offered", d2, p2))
        print(f"| {i} " + row(f"{c} clients, as fast as answered", d3, p3, added=False))
    added1 = statistics.median(r[1].p(0.5) - r[0].p(0.5) for r in runs)
    added2 = statistics.median(r[3].p(0.5) - r[2].p(0.5) for r in runs)
    rps = statistics.median(r[5].rate for r in runs)
    errors = sum(s.errors for r in runs for s in r)
    others = max(s.cpu["rest of the machine"] for r in runs for s in r)
    stolen = max(s.cpu["stolen by the host"] for r in runs for s in r)
    print()
    print(
        f"Other work used up to {others:.2f} cores of the machine during a measurement; the"
        f" host took up to {stolen:.2f} cores away (steal)."
    )
    print(
        f"Medians over {len(runs)} run(s): p50 added {ms(added2)} ms with {c} clients at"
        f" {args.rate:.0f} req/s ({_verdict(added2 <= 0.002)}, <= 2 ms), {ms(added1)} ms with one"
        f" client ({_verdict(added1 <= 0.002)}); {rps:.0f} req/s with {c} clients"
        f" ({_verdict(rps >= 500)}, >= 500); {errors} errors ({_verdict(errors == 0)});"
        f" proxy CPU per request {ms(statistics.median(cpu_per_request(r[5]) for r in runs))} ms."
    )
    if args.profile:
        print()
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    return 0


def _compare_derive(args: argparse.Namespace, tmp: Path) -> int:
    import yaml

    (tmp / "invoice.yaml").write_text(yaml.safe_dump({**POLICY, "derive": False}))
    discover = {"mode": "cascade", "models": POLICY["models"], "validators": POLICY["validators"]}
    args.config_extra = {"discover": discover}
    children: list[subprocess.Popen[str]] = []
    rows = []
    try:
        _, up_port = start_upstream(children)
        _, proxy_port = start_proxy(args, f"http://127.0.0.1:{up_port}/v1", tmp, children)
        for i in range(args.repeat):
            for label, body in BODIES:
                rows.append((i + 1, label, *asyncio.run(compare_derive(proxy_port, args.n, body))))
    finally:
        stop(children)
    print(f"python {sys.version.split()[0]}   cpus: {os.cpu_count()}   requests per side: {args.n}")
    head = "| run | request | named, derive: false p50 / p99 | discovered, derived p50 / p99 |"
    print(head + " added p50 |\n|---|---|---|---|---|")
    for i, label, b, a in rows:
        print(
            f"| {i} | {label} | {b.p(0.5) * 1e3:.3f} / {ms(b.p(0.99))} ms"
            f" | {a.p(0.5) * 1e3:.3f} / {ms(a.p(0.99))} ms | {(a.p(0.5) - b.p(0.5)) * 1e3:.3f} ms |"
        )
    errors = sum(s.errors for r in rows for s in r[2:])
    worst = max(a.p(0.5) - b.p(0.5) for *_, b, a in rows)
    print(
        f"errors: {errors}   most added p50 {worst * 1e3:.3f} ms"
        f" ({_verdict(worst <= 0.05e-3)}, <= 0.05 ms)   load average now {os.getloadavg()[0]:.2f}"
    )
    return 0


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
