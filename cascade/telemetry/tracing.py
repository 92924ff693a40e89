"""OpenTelemetry traces: a span per cascade call and a child span per model call.

The attempt spans follow the GenAI semantic conventions (``chat {model}``, kind CLIENT,
``gen_ai.operation.name``, ``gen_ai.provider.name`` and the older ``gen_ai.system``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.response.id``,
``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
``server.address`` / ``server.port`` for a rung served elsewhere, ``error.type``); the call
span (``cascade {task}``, INTERNAL) carries ``cascade.task``, ``cascade.mode``,
``cascade.model``, ``cascade.escalated``, ``cascade.ok``, ``cascade.reasons``,
``cascade.cost_usd`` and ``cascade.baseline_cost_usd``. The caller's current span is the
parent. No message content is recorded.

Only ``opentelemetry-api`` is needed (the ``otel`` extra); the application sets the tracer
provider. Until it does (or without the package) ``tracer()`` is None and the drivers do
exactly what they did before: no span, no attribute, nothing to pay but one test.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..events import Completion
from ..exceptions import EscalationExhausted
from ..transports.endpoints import provider_name

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

    from .._engine import Call, Reply
    from ..events import Result

try:
    from opentelemetry import context as _context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the otel extra is not installed: no tracing at all
    _trace = None  # type: ignore[assignment]

__all__ = ["call_span", "continued", "traced", "traced_async", "tracer"]

_SCOPE = "cascade"
_cached: tuple[Any, Any] = (None, None)  # (provider, its tracer)
# ``get_tracer_provider()`` looks the environment up on every call while no provider is set
# (2 µs on a slow host, most of this module's cost per call); the global it returns once one
# is set is read directly instead, unless the provider comes from the environment.
_FAST = (
    _trace is not None
    and hasattr(_trace, "_TRACER_PROVIDER")
    and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ
)


def tracer() -> Any:
    """The tracer of the application's tracer provider, or None when none is set (or the
    ``otel`` extra is not installed)."""
    global _cached
    if _trace is None:
        return None
    if _FAST:
        provider = _trace._TRACER_PROVIDER
        if provider is None:
            return None
    else:
        provider = _trace.get_tracer_provider()
        if isinstance(provider, _trace.ProxyTracerProvider):
            return None
    if isinstance(provider, _trace.NoOpTracerProvider):
        return None
    known, its = _cached
    if provider is not known:
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version("llmcascade")
        except PackageNotFoundError:  # pragma: no cover - a source tree never installed
            release = None
        its = provider.get_tracer(_SCOPE, release)
        _cached = (provider, its)
    return its


@contextlib.contextmanager
def call_span(tracer: Any, task: str | None) -> Iterator[Any]:
    """The span of one cascade call, current while its attempts run; an exception (a
    ProviderError, EscalationExhausted) is recorded on it and re-raised. A task left to be
    discovered (None) is named when the call has found it."""
    attributes = {} if task is None else {"cascade.task": task}
    with tracer.start_as_current_span(
        f"cascade {task or 'call'}", kind=SpanKind.INTERNAL, attributes=attributes
    ) as span:
        try:
            yield span
        except EscalationExhausted as e:
            result = e.result or e.unanswered
            if result is not None:
                finished(span, result)
            raise


def finished(span: Any, result: Result) -> None:
    """Put the Result's decision and cost on the call's span."""
    span.update_name(f"cascade {result.task}")
    span.set_attributes(
        {
            "cascade.task": result.task,
            "cascade.mode": result.mode,
            "cascade.model": result.model,
            "cascade.escalated": result.escalated,
            "cascade.ok": result.ok,
            "cascade.reasons": list(result.reasons),
            "cascade.attempts": len(result.attempts),
        }
    )
    if result.cost_usd is not None:
        span.set_attribute("cascade.cost_usd", result.cost_usd)
    if result.baseline_cost_usd is not None:
        span.set_attribute("cascade.baseline_cost_usd", result.baseline_cost_usd)


def _start(tracer: Any, call: Call) -> Any:
    provider = provider_name(call.endpoint)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the name before semantic conventions 1.37
        "gen_ai.request.model": call.model,
        "cascade.purpose": call.purpose,
    }
    params = call.request.params
    for key in ("temperature", "top_p", "max_tokens", "seed"):
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[f"gen_ai.request.{key}"] = value
    endpoint = call.endpoint
    if endpoint is not None:
        url = endpoint.azure.endpoint if endpoint.azure is not None else endpoint.base_url
        if url:
            parts = urlsplit(url)
            if parts.hostname:
                attributes["server.address"] = parts.hostname
            if parts.port:
                attributes["server.port"] = parts.port
    return tracer.start_as_current_span(
        f"chat {call.model}", kind=SpanKind.CLIENT, attributes=attributes
    )


def _answered(span: Any, reply: Reply) -> None:
    if isinstance(reply, Completion):
        raw = reply.raw
        attributes: dict[str, Any] = {
            "gen_ai.response.model": getattr(raw, "model", None) or reply.model
        }
        response_id = getattr(raw, "id", None)
        if response_id:
            attributes["gen_ai.response.id"] = response_id
        if reply.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [reply.finish_reason]
        if reply.usage_known:
            attributes["gen_ai.usage.input_tokens"] = reply.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = reply.completion_tokens
        span.set_attributes(attributes)
        return
    span.set_attribute("error.type", reply.kind)
    if reply.status is not None:
        span.set_attribute("http.response.status_code", reply.status)
    span.set_status(Status(StatusCode.ERROR, reply.reason[:200]))


def traced(perform: Callable[[Call], Reply]) -> Callable[[Call], Reply]:
    """``perform`` (a transport's ``call``) with a span per call when tracing, else itself."""
    tracer_ = tracer()
    if tracer_ is None:
        return perform

    def call(call: Call) -> Reply:
        with _start(tracer_, call) as span:
            reply = perform(call)
            _answered(span, reply)
            return reply

    return call


def traced_async(
    perform: Callable[[Call], Awaitable[Reply]],
) -> Callable[[Call], Awaitable[Reply]]:
    """``perform`` (a transport's ``acall``) with a span per call when tracing, else itself."""
    tracer_ = tracer()
    if tracer_ is None:
        return perform

    async def call(call: Call) -> Reply:
        with _start(tracer_, call) as span:
            reply = await perform(call)
            _answered(span, reply)
            return reply

    return call


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """Make the trace of an incoming request's ``traceparent`` (W3C, or the application's
    propagators) the current context, when tracing; else nothing."""
    if tracer() is None:
        yield
        return
    token = _context.attach(_propagate.extract(headers))
    try:
        yield
    finally:
        _context.detach(token)
