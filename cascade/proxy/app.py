"""The proxy's ASGI application: ``create_app(cascade, config, upstream) -> Starlette``.

Routes: ``POST /v1/chat/completions`` (the cascade, or pass-through when no task applies),
anything else under ``/v1`` (pass-through), ``GET /healthz``, ``GET /metrics``, the
dashboard under ``/dashboard/`` (over the cascade's store, behind ``dashboard_keys`` or
else the proxy keys, see ``cascade.dashboard``); any other
path is a 404 in OpenAI's error format. Client keys are checked on every ``/v1`` request.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from .._answer import Plan, header_safe, plan_chat, render
from .._logging import get_logger
from ..dashboard import create_app as create_dashboard
from ..discovery import Routed, name_of
from ..exceptions import CascadeError, EscalationExhausted, UnknownTaskError
from ..telemetry import tracing
from ..validators import request_problem
from .errors import error_response, from_exception
from .forward import Forwarder, passthrough
from .metrics import CONTENT_TYPE, UNKNOWN, Metrics
from .responses import responses

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    import openai
    from starlette.requests import Request

    from .._client import Cascade
    from .config import ProxyConfig

_log = get_logger()

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
        read = await self._json(request)
        if isinstance(read, Response):
            return read
        raw, body = read
        header_task = request.headers.get("x-cascade-task")
        task = self.task_of(header_task, body)
        refused = self.unnamed_model(task, body.get("model"))
        if refused is not None:
            return refused
        unjudgeable = request_problem(body) if task is not None else None
        if task is None or unjudgeable is not None:
            self.metrics.passthrough += 1
            response = await self.forward(request, raw)
            if unjudgeable is not None:  # to the requested model as it is, and say why
                _log.warning("cascade.unvalidated", task=name_of(task), reason=unjudgeable)
                response.headers["x-cascade-unvalidated"] = header_safe(unjudgeable, 512)
            return response
        n = body.get("n")
        if n is not None and n != 1:
            return await self._strongest(request, task, body, f"n={n}")
        with tracing.continued(request.headers):  # the caller's traceparent, when tracing
            return await self.run(task, plan_chat(body), from_header=bool(header_task))

    def task_of(self, header_task: str | None, body: Mapping[str, Any]) -> str | Routed | None:
        """The task of a chat body: the header's or a route's name, else where a policy's
        ``match:`` or discovery routes it (a ``Routed``: its policy is that of the request's
        own fingerprint, which a name may not tell apart); None: pass through."""
        task = header_task or self.config.task_for(body)
        if task is None:  # a policy's match:, else a task discovered from the request
            return self.cascade.route(body.get("messages"), body, body.get("model"))
        return task

    def unnamed_model(self, task: str | Routed | None, model: Any) -> Response | None:
        """The 400 OpenAI answers a request with no ``model`` (or one that is not a
        non-empty string) with, when the request was discovered: its requested model is part
        of its fingerprint and the top of its ladder, so no model may stand in for it. A
        named or ``match:``ed task's policy chooses its models: None."""
        if not isinstance(task, Routed) or task.fingerprint is None:
            return None
        if isinstance(model, str) and model:
            return None
        if model is None:
            message = "you must provide a model parameter"
        else:
            got = "an empty string" if model == "" else f"a JSON {_JSON_TYPES.get(type(model))}"
            message = f"invalid 'model': expected a model's name (a non-empty string), got {got}"
        return error_response(400, message, code="invalid_request", param="model")

    # -- the cascade call ----------------------------------------------------------------

    async def run(self, task: str | Routed, plan: Plan, *, from_header: bool) -> Response:
        """Run ``plan`` for ``task``; the rendered answer, or the error as OpenAI words it."""
        start = time.perf_counter()
        try:
            # Not checked here: the cascade checks messages and names the field at fault.
            result = await self.cascade.arun(task, plan.messages, **plan.params)
        except CascadeError as e:
            return self._error(name_of(task), e, from_header)
        self.metrics.observe(result, time.perf_counter() - start)
        answer = render(plan, result, self.config.reasons_header_chars)
        return Response(answer.body, headers=answer.headers, media_type=answer.media_type)

    def _error(self, task: str, e: CascadeError, from_header: bool) -> Response:
        status, response = from_exception(e, task_from_header=from_header)
        # Any client may name any task: a label per unknown name would grow without bound.
        self.metrics.error(UNKNOWN if isinstance(e, UnknownTaskError) else task, status)
        response.headers["x-cascade-task"] = header_safe(task, 200)
        if isinstance(e, EscalationExhausted):
            reasons = [r for a in e.attempts for r in a.reasons]
            response.headers["x-cascade-reasons"] = header_safe(
                "; ".join(reasons), self.config.reasons_header_chars
            )
            if status == 502:  # not an upstream status relayed with its own retry advice
                # Asking again would climb the same ladder and pay for it again.
                response.headers["x-should-retry"] = "false"
        return response

    async def _strongest(
        self, request: Request, task: str | Routed, body: dict[str, Any], why: str
    ) -> Response:
        """A request the cascade does not judge, sent to the task's strongest model."""
        try:
            # A discovered task has no policy file: its policy is the one it was routed to.
            policy = task.policy if isinstance(task, Routed) else self.cascade.policies.get(task)
        except CascadeError as e:
            return self._error(name_of(task), e, from_header=True)
        model = policy.strongest
        self.metrics.passthrough += 1
        raw = json.dumps({**body, "model": model}).encode()
        return passthrough(await self.forward(request, raw), f"{why}: sent to {model} unjudged")

    async def _json(self, request: Request) -> tuple[bytes, dict[str, Any]] | Response:
        """The request's body and its JSON object, or the refusal to answer."""
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
        except RecursionError:
            return error_response(
                400, "the request body is JSON nested too deeply to be read", code="invalid_json"
            )
        if not isinstance(body, dict):
            return error_response(
                400, "the request body must be a JSON object", code="invalid_json"
            )
        return raw, body

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


_JSON_TYPES = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}


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
            Route("/v1/responses", partial(responses, proxy), methods=["POST"]),
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
