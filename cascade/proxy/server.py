"""Running the proxy: ``build`` (everything from the environment), ``serve`` (uvicorn in the
foreground, for ``cascade serve``) and ``ProxyServer`` (uvicorn in a background thread on a
free port, for tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING, Any

import openai
import structlog
import uvicorn

from .._client import Cascade
from .app import create_app
from .config import ProxyConfig, check_exposure, load_config

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from starlette.applications import Starlette

    from ..stores import Store

_log = structlog.get_logger("cascade")


def build(
    *,
    policies: str | Path | None = None,
    store: str | Store | None = None,
    config: ProxyConfig | str | Path | None = None,
    host: str = "127.0.0.1",
) -> Starlette:
    """The app ``cascade serve`` runs: upstream clients from ``OPENAI_API_KEY`` /
    ``OPENAI_BASE_URL``, client keys from the config and ``CASCADE_PROXY_KEYS``.

    Raises ConfigError when no client key is configured and ``host`` is not loopback.
    """
    if not isinstance(config, ProxyConfig):
        config = load_config(config)
    if check_exposure(config, host):
        _log.warning(
            "cascade.proxy.open",
            host=host,
            detail="no proxy keys configured: any local process can use the upstream key",
        )
    upstream = openai.AsyncOpenAI()  # the proxy's own credentials, never the client's
    cascade = Cascade(policies, async_client=upstream, store=store)
    return create_app(cascade, config, upstream)


def from_environment() -> Starlette:
    """The app of one worker process of ``serve(workers=N)``: ``build`` from the environment
    (``CASCADE_POLICIES``, ``CASCADE_STORE``, ``CASCADE_PROXY_CONFIG``, ``CASCADE_PROXY_HOST``)."""
    env = os.environ
    return build(
        policies=env.get("CASCADE_POLICIES"),
        store=env.get("CASCADE_STORE"),
        config=env.get("CASCADE_PROXY_CONFIG"),
        host=env.get("CASCADE_PROXY_HOST", "127.0.0.1"),
    )


def serve(
    *,
    policies: str | None = None,
    store: str | None = None,
    config: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8787,
    workers: int = 1,
) -> None:
    """Serve with uvicorn until interrupted (SIGINT/SIGTERM end it cleanly).

    ``workers > 1`` runs that many processes on the port (one per core: a single process
    tops out at a few hundred requests/s, most of it the openai SDK's own per-call work).
    Each has its own Cascade, so use a shared store (``sqlite:///``, ``redis://``), and its
    own ``/metrics`` counters (each scrape sees one worker).
    """
    app = build(policies=policies, store=store, config=config, host=host)  # fail fast, once
    if workers <= 1:
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="on")
        return
    for name, value in (
        ("CASCADE_POLICIES", policies),
        ("CASCADE_STORE", store),
        ("CASCADE_PROXY_CONFIG", config),
        ("CASCADE_PROXY_HOST", host),
    ):
        if value is not None:
            os.environ[name] = value
    uvicorn.run(
        "cascade.proxy.server:from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        lifespan="on",
    )


class ProxyServer:
    """``app`` served by uvicorn in a background thread on a free loopback port.

    ::

        with ProxyServer(create_app(cascade, config, upstream)) as proxy:
            OpenAI(base_url=proxy.base_url, api_key="k").chat.completions.create(...)

    Leaving the block stops the server and runs the app's shutdown (the store is closed).
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", **uvicorn_options: Any) -> None:
        self.app = app
        self.host = host
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it every response (headers, then body) waits out a delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]
        options = {"log_level": "warning", "lifespan": "on", **uvicorn_options}
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, **options))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            daemon=True,
            name="cascade-proxy",
        )

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: what an openai client's ``base_url`` should be."""
        return self.url + "/v1"

    def start(self, timeout: float = 10.0) -> ProxyServer:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the proxy server failed to start (see its log)")
            if waited > timeout:
                raise RuntimeError(f"the proxy server did not start within {timeout}s")
            deadline.wait(0.005)
            waited += 0.005
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, run the app's shutdown, and wait for the thread to end."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["ProxyServer", "build", "from_environment", "serve"]
