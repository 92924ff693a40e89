"""A chat or Responses request body through a cascade, answered as the OpenAI API answers:
what to run (``plan_chat``, ``plan_responses``), and the answer's headers and body
(``render``). Shared by the two fronts, the proxy and ``cascade.wrap``, which only move bytes.

Every cascaded answer carries the ``x-cascade-*`` headers (``headers``) and, in its JSON, a
``cascade`` field (``summary``): the task, the answering model, whether it escalated, the
reasons, the total cost and tokens of every attempt, and each attempt's model, purpose,
tokens, cost and latency. The answer's own ``usage`` is the accepted attempt's, as the
upstream reported it; the sums over every attempt are in ``cascade``.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pydantic_core
from openai.resources.chat.completions import Completions

from . import responses
from ._stream import chunks
from .exceptions import EscalationExhausted, ProviderError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .events import Attempt, Result

# Chat arguments the front decides itself, never sent to a rung.
_OWNED = frozenset({"model", "messages", "stream", "stream_options"})
# Arguments the SDK's create() names; anything else the client sent (its own `extra_body`
# fields arrive as top-level keys) goes back into `extra_body` so the SDK does not reject it.
# The SDK-only options (extra_headers, timeout...) are not body fields: a body key with such a
# name is an unknown field like any other, so a client cannot set the upstream call's headers.
SDK_ARGS = frozenset(inspect.signature(Completions.create).parameters) - {
    "self",
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run for one request: ``Cascade.run(task, messages, **params)``, then
    ``render``. ``routing`` is the chat body that task routing and discovery read."""

    api: Literal["chat", "responses"]
    messages: Any
    params: dict[str, Any]
    stream: bool
    include_usage: bool
    body: Mapping[str, Any]
    routing: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to send: headers, body, media type."""

    headers: dict[str, str]
    body: bytes
    media_type: str


def plan_chat(body: Mapping[str, Any], sdk_args: frozenset[str] | None = SDK_ARGS) -> Plan:
    """The plan of a chat completion body. Fields that are not ``sdk_args`` (the SDK
    ``create()``'s arguments) go into ``extra_body`` so that the SDK does not refuse them."""
    options = body.get("stream_options")
    params: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in body.items():
        if k in _OWNED:
            continue
        (params if sdk_args is None or k in sdk_args else extra)[k] = v
    if extra:
        params["extra_body"] = extra
    return Plan(
        api="chat",
        messages=body.get("messages"),
        params=params,
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        body=body,
        routing=body,
    )


def plan_responses(body: Mapping[str, Any]) -> Plan | responses.Unjudged:
    """The plan of a Responses API body, or why the cascade cannot judge it."""
    chat = responses.to_chat(body)
    if isinstance(chat, responses.Unjudged):
        return chat
    params = {k: v for k, v in chat.params.items() if k in SDK_ARGS}
    extra = {k: v for k, v in chat.params.items() if k not in SDK_ARGS}
    if extra:
        params["extra_body"] = extra
    return Plan(
        api="responses",
        messages=chat.messages,
        params=params,
        stream=body.get("stream") is True,
        include_usage=False,
        body=body,
        routing=chat.body(body.get("model")),
    )


def render(plan: Plan, result: Result, reasons_chars: int = 512) -> Answer:
    """The answer to ``plan`` from the cascade's ``result``: a chat completion or a Response,
    whole or as server-sent events, with the ``x-cascade-*`` headers."""
    if plan.api == "chat" and not plan.stream:
        return render_chat(result, reasons_chars)
    heads = headers(result, reasons_chars)
    completion = completion_dict(result)
    extra = summary(result)
    if plan.api == "responses":
        response = responses.to_response(completion, plan.body)
        response["cascade"] = extra
        if plan.stream:
            heads["cache-control"] = "no-cache"
            return Answer(heads, responses.sse(response), "text/event-stream")
        return Answer(heads, _dumps(response), "application/json")
    heads["cache-control"] = "no-cache"
    return Answer(heads, chat_sse(completion, plan.include_usage, extra), "text/event-stream")


def render_chat(result: Result, reasons_chars: int = 512) -> Answer:
    """``render`` of a whole (not streamed) chat answer: the SDK's own JSON of the accepted
    completion, and the ``cascade`` field, without building the completion as a dict."""
    raw = result.completion
    if raw is None:
        return Answer(
            headers(result, reasons_chars),
            _dumps({**completion_dict(result), "cascade": summary(result)}),
            "application/json",
        )
    try:
        data = raw.model_dump_json(exclude_unset=True).encode()
    except pydantic_core.PydanticSerializationError:  # a lone surrogate: UTF-8 cannot hold it
        data = _dumps(raw.model_dump(exclude_unset=True))  # escaped as \ud800, as it came
    body = data[:-1] + b',"cascade":' + _dumps(summary(result)) + b"}"
    return Answer(headers(result, reasons_chars), body, "application/json")


def chat_sse(
    completion: Mapping[str, Any], include_usage: bool, extra: Mapping[str, Any] | None = None
) -> bytes:
    """A chat completion as ``chat.completion.chunk`` events and ``[DONE]``; ``extra`` (the
    ``cascade`` field) rides on the last chunk."""
    items = list(chunks(completion, include_usage=include_usage))
    if extra is not None and items:
        items[-1] = {**items[-1], "cascade": extra}
    parts = [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in items]
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def completion_dict(result: Result) -> dict[str, Any]:
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


def headers(result: Result, reasons_chars: int = 512) -> dict[str, str]:
    """The ``x-cascade-*`` headers of a cascaded answer."""
    cost = result.cost_usd
    attempts = result.attempts
    return {
        "x-cascade-task": header_safe(result.task, 200),
        "x-cascade-model": header_safe(result.model, 200),
        "x-cascade-escalated": "true" if result.escalated else "false",
        "x-cascade-ok": "true" if result.ok else "false",
        "x-cascade-reasons": header_safe("; ".join(result.reasons), reasons_chars),
        "x-cascade-cost-usd": "unknown" if cost is None else f"{cost:.8f}",
        "x-cascade-attempts": header_safe(
            ", ".join(
                f"{a.model} {a.purpose} "
                + (f"{a.prompt_tokens}+{a.completion_tokens} " if _known(a) else "unknown ")
                + ("unknown" if a.cost_usd is None else f"{a.cost_usd:.8f}")
                for a in attempts
            ),
            2000,
        ),
        "x-cascade-prompt-tokens": _total(attempts, "prompt_tokens", "unknown"),
        "x-cascade-completion-tokens": _total(attempts, "completion_tokens", "unknown"),
    }


def _known(a: Attempt) -> bool:
    """False for a failed attempt whose tokens (0) and cost (None) are unknown: a 200 answer
    that could not be read, which the provider may have billed."""
    return a.error is None or a.cost_usd is not None


def _total(attempts: Sequence[Attempt], field: str, unknown: Any) -> Any:
    """The attempts' sum of ``field`` (tokens), or ``unknown`` when one's usage is unknown."""
    if not all(_known(a) for a in attempts):
        return unknown
    total = sum(getattr(a, field) for a in attempts)
    return total if unknown is None else str(total)


def summary(result: Result) -> dict[str, Any]:
    """The ``cascade`` field of a cascaded answer's JSON (see the module docstring)."""
    attempts = result.attempts
    return {
        "task": result.task,
        "mode": result.mode,
        "model": result.model,
        "escalated": result.escalated,
        "ok": result.ok,
        "reasons": list(result.reasons),
        "cost_usd": result.cost_usd,
        "baseline_cost_usd": result.baseline_cost_usd,
        "prompt_tokens": _total(attempts, "prompt_tokens", None),
        "completion_tokens": _total(attempts, "completion_tokens", None),
        "attempts": [
            {
                "model": a.model,
                "purpose": a.purpose,
                "passed": a.passed,
                "prompt_tokens": a.prompt_tokens if _known(a) else None,
                "completion_tokens": a.completion_tokens if _known(a) else None,
                "cached_tokens": a.cached_tokens if _known(a) else None,
                "cost_usd": a.cost_usd,
                "latency_s": round(a.latency_s, 6),
                "error": a.error,
            }
            for a in attempts
        ],
    }


def header_safe(text: str, limit: int) -> str:
    """``text`` as one line of printable ASCII, at most ``limit`` characters."""
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text  # the usual case: a task or model name
    clean = "".join(
        c if " " <= c < "\x7f" else (f"\\u{ord(c):04x}" if c > "\x7f" else " ") for c in text
    )
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def one_line(value: object, limit: int | None = None) -> str:
    """``value`` as text fit for one line: each unprintable character (line breaks,
    controls, separators: Unicode Cc, Cf, Zl, Zp, Zs but the space) escaped as Python writes
    it, ``\\n``, ``\\u2028``; cut to ``limit`` characters (then "…") when one is given."""
    text = str(value)
    cut = text if limit is None else text[:limit]
    if not cut.isprintable():  # the usual name is, and needs no escaping
        cut = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return f"{cut}…" if limit is not None and len(text) > limit else cut


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


# Headers of an upstream error answer that the fronts relay with its status: when to ask again.
_RELAYED = ("retry-after", "retry-after-ms", "x-should-retry")


@dataclass(frozen=True, slots=True)
class UpstreamError:
    """An upstream error answer to relay as it came: its ``status``, its ``error`` object
    (None when it sent none in OpenAI's form) and its ``headers`` about asking again
    (``retry-after``, ``retry-after-ms``, ``x-should-retry``, ``x-ratelimit-*``)."""

    status: int
    error: Mapping[str, Any] | None
    headers: Mapping[str, str]


def upstream_error(e: BaseException) -> UpstreamError | None:
    """The upstream answer behind a cascade error, when relaying it is the faithful answer: a
    ``ProviderError`` (a status no stronger model can fix), or ``EscalationExhausted`` when no
    model answered and the last one tried got an error status (a 429, a 500...). None
    otherwise (no status: a timeout, a connection error; or some model did answer)."""
    if isinstance(e, ProviderError):
        status, cause = e.status, e.__cause__
    elif isinstance(e, EscalationExhausted) and e.result is None and e.failure is not None:
        status, cause = e.failure.status, e.failure.exception
    else:
        return None
    if status is None or not 400 <= status < 600:
        return None
    body = getattr(cause, "body", None)
    error = body if isinstance(body, dict) and "message" in body else None
    headers = getattr(cause, "headers", None)
    if headers is None:  # the SDK's APIStatusError keeps them on its response
        headers = getattr(getattr(cause, "response", None), "headers", None) or {}
    kept = {
        k.lower(): v
        for k, v in headers.items()
        if k.lower() in _RELAYED or k.lower().startswith("x-ratelimit-")
    }
    return UpstreamError(status, error, kept)
