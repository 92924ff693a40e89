"""A throw-away redis-server for a benchmark: its own free port and directory, nothing kept."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(frozen=True)
class RedisServer:
    url: str
    client: redis.Redis
    directory: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(dump: Path | None = None) -> Iterator[RedisServer]:
    """Start redis-server (no persistence) and stop it on exit.

    ``dump``: an RDB file (from ``SAVE``) the server starts with, copied, never written.
    Raises SystemExit with a message when redis-server is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        if dump is not None:
            shutil.copyfile(dump, Path(tmp) / "dump.rdb")
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            # No read timeout: SAVE of a million-call store takes longer than redis-py's 5 s.
            client = redis.Redis(port=port, socket_timeout=None)
            deadline = time.monotonic() + 120  # loading a large dump takes a while
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:  # also while loading a dump
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield RedisServer(f"redis://127.0.0.1:{port}/0", client, Path(tmp))
        finally:
            process.kill()
            process.wait()
