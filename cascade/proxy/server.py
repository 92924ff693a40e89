"""Running the proxy: ``build`` (everything from the environment), ``serve`` (uvicorn in the
foreground, for ``cascade serve``) and ``ProxyServer`` (uvicorn in a background thread on a
free port, for tests and benchmarks).

uvicorn runs on uvloop and parses HTTP with httptools when they are installed, else on asyncio
and h11: the same behaviour, at about twice the server's own cost per request.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import openai
import uvicorn
from uvicorn.supervisors import Multiprocess

from .._client import Cascade
from .._logging import get_logger
from ..policy import PolicySet
from ..transports import OpenAITransport, attempt_timeout
from .app import create_app
from .config import ConfigError, ProxyConfig, check_exposure, load_config
from .http import uvicorn_options as http_limits

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from starlette.applications import Starlette

    from ..stores import Store
    from ..transports import Transport

_log = get_logger()


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
    cascade, upstream = proxy_cascade(policies, store, config)
    return create_app(cascade, config, upstream)


def proxy_cascade(
    policies: str | Path | None,
    store: str | Store | None,
    config: ProxyConfig,
    **client_options: Any,
) -> tuple[Cascade, openai.AsyncOpenAI]:
    """The proxy's Cascade and upstream client, calling upstream as ``config.upstream_http``
    says. The client is made from the environment (the proxy's own credentials, never the
    client's) and ``client_options`` (``openai.AsyncOpenAI``'s arguments); rungs that name
    an endpoint (``config.providers`` among them) get clients of their own."""
    choice = upstream_choice(config.upstream_http)
    # Pass-through calls too: no upstream request waits the SDK's 600 s by default.
    client_options.setdefault("timeout", config.upstream_timeout or attempt_timeout())
    upstream = openai.AsyncOpenAI(
        http_client=openai.DefaultAioHttpClient() if choice != "httpx" else None,
        **client_options,
    )
    if choice == "direct":
        from ..transports import DirectTransport

        transport: Transport = DirectTransport(upstream)  # the app closes upstream
    else:
        # The rungs that name an endpoint get clients on the same HTTP transport as upstream.
        endpoint_http = openai.DefaultAioHttpClient if choice == "aiohttp" else None
        transport = OpenAITransport(async_client=upstream, endpoint_http_client=endpoint_http)
    where = policies or os.environ.get("CASCADE_POLICIES") or "policies"
    named = PolicySet(where, providers=config.providers)
    cascade = Cascade(named, store=store, transport=transport, discover=config.discover)
    cascade.router()  # fails fast: a discover rung naming a provider that neither file names
    return cascade, upstream


def upstream_choice(choice: str | None) -> str:
    """How the proxy calls upstream: ``choice``, or by default ``direct`` when aiohttp is
    installed (the ``proxy`` extra) and ``httpx`` (the SDK's default transport) when not.

    Raises ConfigError when ``choice`` needs aiohttp and it is not installed.
    """
    if choice == "httpx":
        return choice
    if find_spec("aiohttp") is None or not hasattr(openai, "DefaultAioHttpClient"):
        if choice is None:
            return "httpx"
        raise ConfigError(
            f"upstream_http: {choice} needs the aiohttp package: pip install 'llmcascade[proxy]'"
        )
    return choice or "direct"


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


def worker_app() -> Starlette:
    """``from_environment`` in a worker process of ``serve(workers=N)``.

    A worker is a new interpreter: it does not inherit the logging configuration of the
    command that started it, so ``serve`` passes its verbosity on in ``CASCADE_PROXY_VERBOSE``
    (``1``: per-call events at INFO; ``0``: warnings only) and it is applied here again.
    """
    verbose = os.environ.get("CASCADE_PROXY_VERBOSE")
    if verbose is not None:
        from .._logging import configure_logging

        configure_logging(verbose == "1")
    return from_environment()


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), inheritable by worker processes.

    Created with ``IPPROTO_TCP`` explicitly: asyncio sets ``TCP_NODELAY`` on accepted
    connections only when the listening socket says TCP, and without it a response written
    in two parts (headers, then body) waits out the client's delayed ACK (40 ms on Linux).
    ``reuse_port``: ``SO_REUSEPORT``, so that other sockets may bind the same address.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _SocketPerWorker(socket.socket):
    """The socket ``serve`` hands to uvicorn's worker processes: each worker unpickles it as a
    socket of its own, bound to the same address with ``SO_REUSEPORT`` (Linux).

    The kernel then spreads new connections evenly over the workers' sockets. With one shared
    socket a connection goes to whichever worker accepts first, and the connections of a
    client pool opened at once can all land on the same worker while the others idle.
    """

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return (_worker_socket, (host, port))


def _worker_socket(host: str, port: int) -> socket.socket:
    return listening_socket(host, port, reuse_port=True)


def workers_socket(host: str, port: int) -> socket.socket:
    """The socket ``serve(workers=N)`` binds and hands to its workers: on Linux, each worker
    unpickles it as a socket of its own on the same address (``SO_REUSEPORT``, which lets
    only processes of the same user join); elsewhere all workers share this one."""
    sock = listening_socket(host, port, reuse_port=sys.platform == "linux")
    if sys.platform != "linux":
        return sock
    per_worker = _SocketPerWorker(sock.family, sock.type, sock.proto, fileno=sock.detach())
    per_worker.set_inheritable(True)
    return per_worker


def serve(
    *,
    policies: str | None = None,
    store: str | None = None,
    config: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8787,
    workers: int = 1,
    verbose: bool | None = None,
) -> None:
    """Serve with uvicorn until interrupted (SIGINT/SIGTERM end it cleanly).

    ``workers > 1`` runs that many processes on the port (one per core: a single process
    tops out at one or two thousand requests/s on one core), each
    listening on a socket of its own (``workers_socket``). Each has its own Cascade, so use a
    shared store (``sqlite:///``, ``redis://``), and its own ``/metrics`` counters (each scrape
    sees one worker).

    ``verbose`` turns on the per-request logs, uvicorn's access log and (in worker processes)
    the cascade's per-call events; ``cascade serve`` passes its ``--verbose``. ``None`` leaves
    the workers' cascade events silent (no logging configured) and keeps the access log.
    """
    app = build(policies=policies, store=store, config=config, host=host)  # fail fast, once
    access_log = verbose is not False
    heads = http_limits(app.state.proxy.config.max_header_bytes)
    if workers <= 1:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=access_log,
            lifespan="on",
            **heads,
        )
        return
    # As uvicorn.run(workers=N) does, with a socket per worker whose connections get TCP_NODELAY.
    try:
        sock = workers_socket(host, port)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    for name, value in (
        ("CASCADE_POLICIES", policies),
        ("CASCADE_STORE", store),
        ("CASCADE_PROXY_CONFIG", config),
        ("CASCADE_PROXY_HOST", host),
        ("CASCADE_PROXY_VERBOSE", None if verbose is None else str(int(verbose))),
    ):
        if value is not None:
            os.environ[name] = value
    options = uvicorn.Config(
        "cascade.proxy.server:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
        lifespan="on",
        # uvicorn restarts a worker that misses its 5 s health check; a loaded machine (a
        # worker still importing, or busy) should not be a restart loop.
        timeout_worker_healthcheck=30,
        **heads,
    )
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", url)
    try:
        Multiprocess(options, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


class ProxyServer:
    """``app`` served by uvicorn in a background thread on a free loopback port, request heads
    bounded as ``cascade serve`` bounds them (``cascade.proxy.http``; 64 KiB unless
    ``h11_max_incomplete_event_size=`` says otherwise).

    ::

        with ProxyServer(create_app(cascade, config, upstream)) as proxy:
            OpenAI(base_url=proxy.base_url, api_key="k").chat.completions.create(...)

    Leaving the block stops the server and runs the app's shutdown (the store is closed).
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", **uvicorn_options: Any) -> None:
        self.app = app
        self.host = host
        self._sock = listening_socket(host, 0)
        self.port: int = self._sock.getsockname()[1]
        options = {"log_level": "warning", "lifespan": "on", **http_limits(), **uvicorn_options}
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


__all__ = [
    "ProxyServer",
    "build",
    "from_environment",
    "listening_socket",
    "serve",
    "worker_app",
    "workers_socket",
]
