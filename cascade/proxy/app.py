"""The proxy's ASGI application: ``create_app(cascade, config, upstream) -> Starlette``.

Routes: ``POST /v1/chat/completions`` (the cascade, or pass-through when no task applies),
anything else under ``/v1`` (pass-through), ``GET /healthz``, ``GET /metrics``, the
dashboard under ``/dashboard/`` (over the cascade's store, behind ``dashboard_keys`` or
else the proxy keys, see ``cascade.dashboard``); any other
path is a 404 in OpenAI's error format. Client keys are checked on every ``/v1`` request.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog
from openai.resources.chat.completions import AsyncCompletions
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from ..dashboard import create_app as create_dashboard
from ..exceptions import CascadeError, EscalationExhausted
from ..telemetry import tracing
from ..validators import request_problem
from . import sse
from .errors import error_response, from_exception
from .forward import Forwarder
from .metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    import openai
    from starlette.requests import Request

    from .._client import Cascade
    from ..events import Result
    from .config import ProxyConfig

_log = structlog.get_logger("cascade")

# Arguments the SDK's create() names; anything else the client sent (its own `extra_body`
# fields arrive as top-level keys) goes back into `extra_body` so the SDK does not reject it.
# The SDK-only options (extra_headers, timeout...) are not body fields: a body key with such a
# name is an unknown field like any other, so a client cannot set the upstream call's headers.
_SDK_ARGS = frozenset(inspect.signature(AsyncCompletions.create).parameters) - {
    "self",
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
}
# Decided by the proxy itself, never forwarded to a rung.
_OWNED = frozenset({"model", "messages", "stream", "stream_options"})
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class _TooLarge(Exception):
    pass


class Proxy:
    """The handlers, sharing the cascade, the configuration, the forwarder and the metrics."""

    def __init__(self, cascade: Cascade, config: ProxyConfig, upstream: openai.AsyncOpenAI) -> None:
        self.cascade = cascade
        self.config = config
        self.metrics = Metrics()
        self.upstream = upstream
        self.forward = Forwarder(upstream)
        self._keys = config.key_checker()

    # -- endpoints -----------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        """Liveness: 200 ``{"status": "ok"}``."""
        return JSONResponse({"status": "ok"})

    async def metrics_text(self, request: Request) -> Response:
        """The Prometheus exposition of the proxy's counters."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def not_found(self, request: Request) -> Response:
        """A 404 worded as OpenAI words it."""
        return error_response(
            404, f"Unknown request URL: {request.method} {request.url.path}.", code="unknown_url"
        )

    async def passthrough(self, request: Request) -> Response:
        """Any ``/v1`` request but chat completions: forwarded upstream unchanged."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            body = await self._read(request)
        except _TooLarge:
            return self._too_large()
        self.metrics.passthrough += 1
        return await self.forward(request, body)

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: through the cascade when a task applies."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            raw = await self._read(request)
        except _TooLarge:
            return self._too_large()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return error_response(
                400, f"the request body is not valid JSON: {e}", code="invalid_json"
            )
        if not isinstance(body, dict):
            return error_response(
                400, "the request body must be a JSON object", code="invalid_json"
            )
        header_task = request.headers.get("x-cascade-task")
        task = header_task or self.config.task_for(body)
        if task is None:  # a policy's match:, else a task discovered from the request
            routed = self.cascade.route(body.get("messages"), body, body.get("model"))
            task = None if routed is None else routed.task
        unjudgeable = (
            request_problem(body) if task is not None and "response_format" in body else None
        )
        if task is None or unjudgeable is not None:
            self.metrics.passthrough += 1
            response = await self.forward(request, raw)
            if unjudgeable is not None:  # to the requested model as it is, and say why
                _log.warning("cascade.unvalidated", task=task, reason=unjudgeable)
                response.headers["x-cascade-unvalidated"] = _header_safe(unjudgeable, 512)
            return response
        with tracing.continued(request.headers):  # the caller's traceparent, when tracing
            return await self._cascade(task, body, from_header=bool(header_task))

    # -- the cascade call ----------------------------------------------------------------

    async def _cascade(self, task: str, body: dict[str, Any], *, from_header: bool) -> Response:
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        params: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in body.items():
            if k in _OWNED:
                continue
            (params if k in _SDK_ARGS else extra)[k] = v
        if extra:
            params["extra_body"] = extra
        start = time.perf_counter()
        try:
            # Not checked here: the cascade checks messages and names the field at fault.
            messages: Any = body.get("messages")
            result = await self.cascade.arun(task, messages, **params)
        except CascadeError as e:
            status, response = from_exception(e, task_from_header=from_header)
            self.metrics.error(task, status)
            response.headers["x-cascade-task"] = _header_safe(task, 200)
            if isinstance(e, EscalationExhausted):
                reasons = [r for a in e.attempts for r in a.reasons]
                response.headers["x-cascade-reasons"] = self._reasons(reasons)
            return response
        self.metrics.observe(result, time.perf_counter() - start)
        headers = self._headers(result)
        if stream:
            payload = sse.sse(_as_dict(result), include_usage=include_usage)
            headers["cache-control"] = "no-cache"
            return Response(payload, headers=headers, media_type="text/event-stream")
        completion = result.completion
        data = (
            completion.model_dump_json(exclude_unset=True).encode()
            if completion is not None
            else json.dumps(_as_dict(result)).encode()
        )
        return Response(data, headers=headers, media_type="application/json")

    def _headers(self, result: Result) -> dict[str, str]:
        cost = result.cost_usd
        return {
            "x-cascade-task": _header_safe(result.task, 200),
            "x-cascade-model": _header_safe(result.model, 200),
            "x-cascade-escalated": "true" if result.escalated else "false",
            "x-cascade-ok": "true" if result.ok else "false",
            "x-cascade-reasons": self._reasons(result.reasons),
            "x-cascade-cost-usd": "unknown" if cost is None else f"{cost:.8f}",
        }

    def _reasons(self, reasons: Any) -> str:
        return _header_safe("; ".join(reasons), self.config.reasons_header_chars)

    # -- shared checks -------------------------------------------------------------------

    def _refuse(self, request: Request) -> Response | None:
        if self._keys is None:
            return None
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return error_response(
                401,
                "missing proxy key: send `Authorization: Bearer <proxy key>`",
                code="invalid_api_key",
            )
        if not self._keys(key.strip()):
            return error_response(401, "incorrect proxy key provided", code="invalid_api_key")
        return None

    async def _read(self, request: Request) -> bytes:
        """The body, refused as soon as it is known to exceed the limit (not after)."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        parts: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise _TooLarge
            parts.append(part)
        return b"".join(parts)

    def _too_large(self) -> Response:
        return error_response(
            413,
            f"the request body exceeds {self.config.max_body_bytes} bytes",
            code="request_too_large",
            headers={"connection": "close"},
        )

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """On shutdown: finish running observations, close the pass-through pool and the
        upstream client, then flush and close the store."""
        try:
            yield
        finally:
            await self.cascade.drain()
            await self.forward.aclose()
            await self.cascade.transport.aclose()  # the direct upstream's pool
            await self.upstream.close()
            # Closing flushes the store, which may block on a server: not on the event loop.
            await anyio.to_thread.run_sync(self.cascade.close)


def _as_dict(result: Result) -> dict[str, Any]:
    """The accepted ChatCompletion as a dict (built from the Result if the SDK gave none)."""
    if result.completion is not None:
        data: dict[str, Any] = result.completion.model_dump(exclude_unset=True)
        return data
    return {
        "id": "chatcmpl-cascade",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": result.output},
            }
        ],
    }


def _header_safe(text: str, limit: int) -> str:
    """``text`` as one line of printable ASCII, at most ``limit`` characters."""
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text  # the usual case: a task or model name
    clean = "".join(
        c if " " <= c < "\x7f" else (f"\\u{ord(c):04x}" if c > "\x7f" else " ") for c in text
    )
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse(str(request.url.path) + "/", status_code=307)


def create_app(cascade: Cascade, config: ProxyConfig, upstream: openai.AsyncOpenAI) -> Starlette:
    """The proxy as an ASGI application.

    Args:
        cascade: answers the requests a task applies to (its store records them).
        config: routes, default task, client keys, body limit.
        upstream: whose base URL and key pass-through requests are sent with; the app owns
            it and closes it at shutdown (usually it is also the cascade's async client).
    Returns:
        A Starlette app; ``app.state.proxy`` is the ``Proxy`` (metrics, config).
    """
    proxy = Proxy(cascade, config, upstream)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", proxy.chat, methods=["POST"]),
            Route("/v1/{path:path}", proxy.passthrough, methods=_ALL_METHODS),
            Route("/healthz", proxy.healthz, methods=["GET"]),
            Route("/metrics", proxy.metrics_text, methods=["GET"]),
            Route("/dashboard", _to_dashboard, methods=["GET"]),
            Mount("/dashboard", create_dashboard(cascade.store, keys=config.dashboard_access())),
            Route("/{path:path}", proxy.not_found, methods=_ALL_METHODS),
        ],
        lifespan=proxy.lifespan,
    )
    app.state.proxy = proxy
    return app


__all__ = ["Proxy", "create_app"]
