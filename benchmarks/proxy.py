"""What ``cascade serve`` adds: latency and throughput of the proxy against a zero-latency upstream.

Three processes, so that none steals the others' interpreter: a minimal upstream (raw asyncio,
a fixed ChatCompletion, ~30 us per request), the proxy (``create_app`` under uvicorn, memory
store, a json_schema + structure policy whose cheap answer passes: one upstream call per
request), and this load generator (raw HTTP/1.1 keep-alive connections, far cheaper than an
SDK client, so the proxy is what is measured).

- added latency: one client, requests sent one at a time, alternating "upstream directly" and
  "through the proxy"; the difference of medians is the proxy's own time per request.
- throughput: ``--concurrency`` clients (default 64) as fast as the proxy answers; under that
  load latency is queueing (Little's law: concurrency / throughput), so it is shown, not judged.

    python benchmarks/proxy.py                     # -n 3000, 64 clients
    python benchmarks/proxy.py --profile out.prof  # cProfile the proxy process, print its top
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the proxy -------------------------------------------------------------------------------


def worker_app() -> Any:
    """One worker of ``--workers N``: quiet logs, then the app ``cascade serve`` builds."""
    import structlog

    from cascade.proxy.server import from_environment

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return from_environment()


def serve_proxy(upstream: str, policies: str, profile: str | None, workers: int) -> None:
    import socket

    import openai
    import structlog
    import uvicorn

    import cascade
    from cascade.proxy import ProxyConfig, create_app

    # IPPROTO_TCP: asyncio sets TCP_NODELAY only when the socket says TCP (else +40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(port, flush=True)
    if workers > 1:  # as `cascade serve --workers N` does, with this module's quiet factory
        sock.close()
        os.environ.update(
            OPENAI_BASE_URL=upstream,
            OPENAI_API_KEY="upstream-key",
            CASCADE_POLICIES=policies,
            CASCADE_STORE="memory://",
            CASCADE_PROXY_KEYS=KEY,
            PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ["PYTHONPATH"]]),
        )
        uvicorn.run(
            "proxy:worker_app",
            factory=True,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
        return
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    client = openai.AsyncOpenAI(base_url=upstream, api_key="upstream-key", max_retries=0)
    c = cascade.Cascade(policies, async_client=client, store="memory://")
    app = create_app(c, ProxyConfig(proxy_keys=(KEY,)), client)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            server.run(sockets=[sock])
        finally:  # uvicorn re-raises the SIGINT it shut down on
            prof.disable()
            prof.dump_stats(profile)
    else:
        server.run(sockets=[sock])


# -- the load generator ----------------------------------------------------------------------


def request_bytes(task: str | None) -> bytes:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\nauthorization: Bearer {KEY}\r\n"
        f"content-length: {len(REQUEST)}\r\n"
    )
    if task:
        head += f"x-cascade-task: {task}\r\n"
    return head.encode() + b"\r\n" + REQUEST


class Conn:
    """One keep-alive HTTP/1.1 connection sending the same request again and again."""

    def __init__(self, port: int, payload: bytes) -> None:
        self.port, self.payload = port, payload

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def send(self) -> tuple[float, int]:
        start = time.perf_counter()
        self.writer.write(self.payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return time.perf_counter() - start, status


async def sequential(proxy: int, upstream: int, n: int) -> tuple[list[float], list[float]]:
    direct = await Conn(upstream, request_bytes(None)).open()
    via = await Conn(proxy, request_bytes("invoice")).open()
    d_s, p_s = [], []
    for i in range(n + 200):
        d, _ = await direct.send()
        p, status = await via.send()
        assert status == 200, status
        if i >= 200:  # warm-up
            d_s.append(d)
            p_s.append(p)
    return d_s, p_s


async def load(port: int, payload: bytes, clients: int, n: int) -> tuple[list[float], int, float]:
    conns = [await Conn(port, payload).open() for _ in range(clients)]
    for c in conns:  # warm-up
        await c.send()
    latencies: list[float] = []
    errors = 0
    remaining = n

    async def worker(c: Conn) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            try:
                t, status = await c.send()
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                await c.open()
                continue
            latencies.append(t)
            if status != 200:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    return latencies, errors, elapsed


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def start(args: list[str], children: list[subprocess.Popen[str]]) -> int:
    """Start this script in another role; returns the port it printed."""
    root = str(Path(__file__).resolve().parent.parent)  # the checkout, for `import cascade`
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    children.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        raise RuntimeError(f"the {args[1]} process failed to start (see its traceback above)")
    return int(line)


def wait_listening(port: int, timeout: float = 30.0) -> None:
    """Return once something accepts connections on ``port`` (uvicorn starts after the print)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000, help="requests per measurement")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--profile", help="cProfile the proxy process into this file")
    ap.add_argument(
        "--workers", type=int, default=1, help="proxy processes (cascade serve --workers)"
    )
    ap.add_argument("--role", choices=["upstream", "proxy"], help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    ap.add_argument("--policies", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role is not None:
        try:
            if args.role == "upstream":
                serve_upstream()
            else:
                serve_proxy(args.upstream, args.policies, args.profile, args.workers)
        except KeyboardInterrupt:  # how the parent stops its children
            pass
        return 0

    import yaml

    tmp = Path(tempfile.mkdtemp())
    (tmp / "invoice.yaml").write_text(yaml.safe_dump(POLICY))
    children: list[subprocess.Popen[str]] = []
    try:
        up_port = start(["--role", "upstream"], children)
        extra = ["--workers", str(args.workers)]
        if args.profile:
            extra += ["--profile", args.profile]
        upstream = f"http://127.0.0.1:{up_port}/v1"
        proxy_port = start(
            ["--role", "proxy", "--upstream", upstream, "--policies", str(tmp), *extra], children
        )
        wait_listening(proxy_port)
        direct, via = asyncio.run(sequential(proxy_port, up_port, args.n))
        d_lat, d_err, d_time = asyncio.run(
            load(up_port, request_bytes(None), args.concurrency, args.n)
        )
        p_lat, p_err, p_time = asyncio.run(
            load(proxy_port, request_bytes("invoice"), args.concurrency, args.n)
        )
    finally:
        for child in reversed(children):  # SIGINT: uvicorn shuts down (and writes the profile)
            child.send_signal(signal.SIGINT)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    added50 = statistics.median(via) - statistics.median(direct)
    added99 = pct(via, 0.99) - pct(direct, 0.99)
    rps = len(p_lat) / p_time
    print(
        f"python {sys.version.split()[0]}   cpus: {os.cpu_count()}   requests: {args.n}"
        f"   clients under load: {args.concurrency}   proxy workers: {args.workers}"
    )
    print()
    print("| measure | upstream directly | through the proxy | target |")
    print("|---|---|---|---|")
    print(
        f"| p50 latency, 1 client | {statistics.median(direct) * 1e3:.3f} ms |"
        f" {statistics.median(via) * 1e3:.3f} ms | |"
    )
    print(
        f"| **p50 added latency** | | **{added50 * 1e3:.3f} ms** | <= 2 ms"
        f" {'ok' if added50 <= 0.002 else 'MISSED'} |"
    )
    print(f"| p99 added latency | | {added99 * 1e3:.3f} ms | |")
    print(
        f"| **requests/s, {args.concurrency} clients** | {len(d_lat) / d_time:.0f} |"
        f" **{rps:.0f}** | >= 500 {'ok' if rps >= 500 else 'MISSED'} |"
    )
    print(
        f"| p50 / p99 latency, {args.concurrency} clients | {statistics.median(d_lat) * 1e3:.2f}"
        f" / {pct(d_lat, 0.99) * 1e3:.2f} ms | {statistics.median(p_lat) * 1e3:.2f} /"
        f" {pct(p_lat, 0.99) * 1e3:.2f} ms | |"
    )
    print(f"| **errors** | {d_err} | **{p_err}** | 0 {'ok' if p_err == 0 else 'MISSED'} |")
    if args.profile:
        print()
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
