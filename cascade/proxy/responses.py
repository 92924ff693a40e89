"""``POST /v1/responses``: the Responses API through the cascade.

The request is translated into the chat request every rung is asked (``cascade.responses``),
so the upstream is called on ``/chat/completions`` whether or not it serves the Responses API
(vLLM, Ollama...); the accepted answer goes back as a Response, or its events when streamed.
What the cascade cannot judge (upstream state such as ``previous_response_id``, built-in
tools, background mode) and requests no task applies to are forwarded to the upstream's
``/responses`` unchanged, with ``x-cascade-passthrough`` saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from .._answer import plan_responses
from .._logging import get_logger
from ..discovery import name_of
from ..responses import Unjudged
from ..telemetry import tracing
from ..validators import request_problem
from .forward import passthrough

if TYPE_CHECKING:
    from starlette.requests import Request

    from .app import Proxy

_log = get_logger()


async def responses(proxy: Proxy, request: Request) -> Response:
    """Answer one Responses API request through ``proxy``'s cascade (see the module)."""
    read = await proxy._json(request)
    if isinstance(read, Response):
        return read
    raw, body = read
    plan = plan_responses(body)
    if isinstance(plan, Unjudged):
        proxy.metrics.passthrough += 1
        return passthrough(await proxy.forward(request, raw), plan.reason)
    header_task = request.headers.get("x-cascade-task")
    task = proxy.task_of(header_task, plan.routing)
    refused = proxy.unnamed_model(task, body.get("model"))
    if refused is not None:
        return refused
    if task is None:
        proxy.metrics.passthrough += 1
        return passthrough(await proxy.forward(request, raw), "no task applies")
    routing = plan.routing
    problem = request_problem(routing)
    if problem is not None:  # to the requested model as it is, and say why
        _log.warning("cascade.unvalidated", task=name_of(task), reason=problem)
        proxy.metrics.passthrough += 1
        return passthrough(await proxy.forward(request, raw), problem)
    with tracing.continued(request.headers):  # the caller's traceparent, when tracing
        return await proxy.run(task, plan, from_header=bool(header_task))
