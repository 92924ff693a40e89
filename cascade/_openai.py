"""The one module that speaks to the openai SDK: a Call in, a Completion or a Failure out."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import openai

from .events import Completion, Failure, TokenLogprob, ToolCall

if TYPE_CHECKING:
    from ._engine import Call


def call_sync(client: openai.OpenAI, call: Call) -> Completion | Failure:
    """Perform ``call`` with a sync client; provider errors come back as a Failure."""
    start = time.perf_counter()
    try:
        raw = client.chat.completions.create(
            model=call.model,
            messages=call.request.messages,  # type: ignore[arg-type]  # checked by make_request
            **call.request.params,
        )
    except openai.OpenAIError as e:
        return failure(call.model, e, time.perf_counter() - start)
    return completion(call, raw, time.perf_counter() - start)


async def call_async(client: openai.AsyncOpenAI, call: Call) -> Completion | Failure:
    """Perform ``call`` with an async client; provider errors come back as a Failure."""
    start = time.perf_counter()
    try:
        raw = await client.chat.completions.create(
            model=call.model,
            messages=call.request.messages,  # type: ignore[arg-type]  # checked by make_request
            **call.request.params,
        )
    except openai.OpenAIError as e:
        return failure(call.model, e, time.perf_counter() - start)
    return completion(call, raw, time.perf_counter() - start)


def async_twin(client: openai.OpenAI | openai.AsyncOpenAI) -> openai.AsyncOpenAI:
    """A new AsyncOpenAI with ``client``'s settings and a connection pool of its own."""
    return openai.AsyncOpenAI(
        api_key=client.api_key,
        organization=client.organization,
        project=client.project,
        base_url=client.base_url,
        timeout=client.timeout,
        max_retries=client.max_retries,
    )


def failure(model: str, e: openai.OpenAIError, latency_s: float) -> Failure:
    """Map an SDK error to the escalation reason it stands for."""
    status = getattr(e, "status_code", None)
    if isinstance(e, openai.APITimeoutError):
        kind = "timeout"
    elif isinstance(e, openai.APIConnectionError):
        kind = "connection_error"
    elif isinstance(e, openai.RateLimitError):
        kind = "rate_limited"
    elif isinstance(e, openai.APIStatusError):
        kind = "server_error" if e.status_code >= 500 else "client_error"
    else:  # APIResponseValidationError and friends: the body was not a ChatCompletion
        kind = "malformed_response"
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    return Failure(model, kind, message[:500], status, latency_s, e)


def completion(call: Call, raw: Any, latency_s: float) -> Completion | Failure:
    """Reduce a ChatCompletion to a Completion; a response without an answer is a Failure."""
    choices = getattr(raw, "choices", None)
    if not choices:
        return Failure(
            call.model,
            "malformed_response",
            f"no choices in the response: {str(raw)[:200]}",
            None,
            latency_s,
        )
    choice = choices[0]
    message = choice.message
    if message is None:
        return Failure(
            call.model, "malformed_response", "choice without a message", None, latency_s
        )
    usage = raw.usage
    details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
    logprobs = None
    if choice.logprobs is not None and choice.logprobs.content is not None:
        logprobs = tuple(
            TokenLogprob(
                t.token,
                t.logprob,
                tuple((a.token, a.logprob) for a in (t.top_logprobs or ())),
            )
            for t in choice.logprobs.content
        )
    tool_calls: tuple[ToolCall, ...] = ()
    if message.tool_calls:
        tool_calls = tuple(
            ToolCall(tc.id, tc.function.name, tc.function.arguments)
            for tc in message.tool_calls
            if getattr(tc, "function", None) is not None
        )
    return Completion(
        model=call.model,
        text=message.content or "",
        request=call.request,
        finish_reason=choice.finish_reason,
        tool_calls=tool_calls,
        logprobs=logprobs,
        refusal=getattr(message, "refusal", None),
        prompt_tokens=usage.prompt_tokens if usage is not None else 0,
        completion_tokens=usage.completion_tokens if usage is not None else 0,
        cached_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0,
        usage_known=usage is not None,
        latency_s=latency_s,
        raw=raw,
    )


def accepted(raw: Any, output: str) -> Any:
    """The ChatCompletion to hand back: a copy with the cleaned text when validators
    stripped something (a self-rating) from the model's answer, else ``raw`` itself."""
    if raw is None or not raw.choices or raw.choices[0].message.content == output:
        return raw
    copy = raw.model_copy(deep=True)
    copy.choices[0].message.content = output
    return copy
