"""The HTTP transports of a wrapped client: its chat completion and Responses requests are
answered in-process by the cascade, everything else goes to the wrapped client's own HTTP
client unchanged.

Answering at the HTTP layer is what makes the wrapped client the SDK's own: ``create``,
``parse``, ``stream``, ``with_raw_response`` and ``with_streaming_response`` build the request
and read the answer exactly as against the API (``Stream``/``AsyncStream``, parsed models,
``x-cascade-*`` headers), and errors are the SDK's exception types. Cascade errors become the
OpenAI error answers the proxy sends, with ``x-should-retry: false``: a retry would climb the
same ladder and pay for it again; an upstream error status (a 429 on the last model tried)
comes back as the upstream sent it, with its ``retry-after``.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from .._answer import Answer, Plan, plan_chat, plan_responses, render, upstream_error
from .._logging import get_logger
from ..exceptions import (
    CascadeError,
    EscalationExhausted,
    InvalidRequestError,
    ProviderError,
    UnknownTaskError,
)
from ..responses import Unjudged
from ..validators import request_problem

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover - openai < 3 uses httpx
    import httpx  # type: ignore[no-redef,import-not-found,unused-ignore]

if TYPE_CHECKING:
    from .._client import Cascade
    from ..discovery import Routed

_log = get_logger()


class Router:
    """What to do with one request: forward it, or run a plan for a task."""

    def __init__(self, cascade: Cascade, task: str | None, base_url: Any) -> None:
        self.cascade = cascade
        self.task = task
        self._base = str(base_url).rstrip("/")

    def route(
        self, request: httpx.Request
    ) -> tuple[str | Routed, Plan] | tuple[None, httpx.Request | None, str | None]:
        """``(task, plan)`` to run (a task the request was routed to is its ``Routed``,
        whose policy is that of the request's own fingerprint), or ``(None, request to
        forward, passthrough reason)``; the request is None when it is to be sent as it came."""
        url = str(request.url).split("?", 1)[0]
        api = {self._base + "/chat/completions": "chat", self._base + "/responses": "responses"}
        kind = api.get(url) if request.method == "POST" else None
        if kind is None:
            return None, None, None
        try:
            body = json.loads(request.content)
        except ValueError:
            return None, None, None
        if not isinstance(body, dict):
            return None, None, None
        task: str | Routed | None = body.pop("cascade_task", None) or self.task
        plan = plan_chat(body) if kind == "chat" else plan_responses(body)
        if isinstance(plan, Unjudged):
            return None, _rebuilt(request, body), plan.reason
        strongest = None
        if task is None:  # a policy's match:, else a task discovered from the request
            routing = plan.routing
            routed = self.cascade.route(routing.get("messages"), routing, routing.get("model"))
            if routed is None:
                reason = "no task applies" if kind == "responses" else None
                return None, _rebuilt(request, body), reason
            problem = request_problem(routing)
            if problem is not None:  # to the requested model as it is, and say why
                _log.warning("cascade.unvalidated", task=routed.task, reason=problem)
                return None, _rebuilt(request, body), f"unvalidated: {problem}"
            task, strongest = routed, routed.policy.strongest
        n = body.get("n")
        if kind == "chat" and n is not None and n != 1:
            model: Any = strongest or body.get("model")
            if strongest is None:
                # An unknown task keeps the requested model, whose answer says what is wrong.
                with contextlib.suppress(CascadeError):
                    assert isinstance(task, str)  # a routed task has its strongest
                    model = self.cascade.policies.get(task).strongest
            body["model"] = model
            return None, _rebuilt(request, body), f"n={n}: sent to {model} unjudged"
        return task, plan


def _rebuilt(request: httpx.Request, body: dict[str, Any]) -> httpx.Request:
    content = json.dumps(body).encode()
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
    return httpx.Request(
        request.method,
        request.url,
        headers=headers,
        content=content,
        extensions=request.extensions,
    )


def _answered(answer: Answer, request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        headers={**answer.headers, "content-type": answer.media_type},
        content=answer.body,
        request=request,
    )


def _error(e: CascadeError, task: str, request: httpx.Request) -> httpx.Response:
    """A cascade error as the proxy answers it: an OpenAI error body and status; an upstream
    error status (``upstream_error``) with its error object and retry headers, so the SDK
    raises its own ``RateLimitError`` and honours ``retry-after``."""
    status, code, body = 500, type(e).__name__, None
    headers = {"x-should-retry": "false", "x-cascade-task": task}
    relayed = upstream_error(e)
    if relayed is not None:
        status, code, body = relayed.status, "upstream_error", relayed.error
        headers = {"x-cascade-task": task, **relayed.headers}
    elif isinstance(e, InvalidRequestError):
        status, code = 400, "invalid_request"
    elif isinstance(e, UnknownTaskError):
        status, code = 400, "unknown_task"
    elif isinstance(e, EscalationExhausted | ProviderError):
        status, code = 502, "escalation_exhausted" if isinstance(e, EscalationExhausted) else code
    error = body or {
        "message": str(e),
        "type": "invalid_request_error" if status < 500 else "server_error",
        "param": None,
        "code": code,
    }
    return httpx.Response(status, headers=headers, json={"error": error}, request=request)


def _passthrough(response: httpx.Response, reason: str | None) -> httpx.Response:
    if reason is not None:
        response.headers["x-cascade-passthrough"] = reason
    return response


class CascadeTransport(httpx.BaseTransport):
    """The sync transport: ``Cascade.run``, or the wrapped client's HTTP client."""

    def __init__(self, router: Router, inner: httpx.Client) -> None:
        self._router = router
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` (see the module docstring)."""
        request.read()
        routed = self._router.route(request)
        if routed[0] is None:
            _, forward, reason = routed
            response = self._inner.send(forward or request, stream=True)
            return _passthrough(_relayed(response), reason)
        task, plan = routed
        try:
            result = self._router.cascade.run(task, plan.messages, **plan.params)
        except CascadeError as e:
            return _error(e, task if isinstance(task, str) else task.task, request)
        return _answered(render(plan, result), request)

    def close(self) -> None:
        """Nothing to release: the wrapped client owns its HTTP client."""


class AsyncCascadeTransport(httpx.AsyncBaseTransport):
    """The async transport: ``Cascade.arun``, or the wrapped client's HTTP client."""

    def __init__(self, router: Router, inner: httpx.AsyncClient) -> None:
        self._router = router
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` (see the module docstring)."""
        await request.aread()
        routed = self._router.route(request)
        if routed[0] is None:
            _, forward, reason = routed
            response = await self._inner.send(forward or request, stream=True)
            return _passthrough(_relayed(response), reason)
        task, plan = routed
        try:
            result = await self._router.cascade.arun(task, plan.messages, **plan.params)
        except CascadeError as e:
            return _error(e, task if isinstance(task, str) else task.task, request)
        return _answered(render(plan, result), request)

    async def aclose(self) -> None:
        """Nothing to release: the wrapped client owns its HTTP client."""


def _relayed(response: httpx.Response) -> httpx.Response:
    """The wrapped client's answer as a response of this transport (raw bytes, unread)."""
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=response.stream,
        extensions=response.extensions,
        request=response.request,
    )


__all__ = ["AsyncCascadeTransport", "CascadeTransport", "Router", "httpx"]
