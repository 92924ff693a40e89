"""A provider's 200 answer read into a ``Completion``, or a ``malformed_response`` Failure.

A provider (or anything between it and us) can send any JSON with a 200: ``choices`` an int,
``message`` a string, ``content`` a number, ``usage`` a string. Such an answer is read as
leniently as ``create`` reads it (fields left out are tolerated), but a field of the wrong
type is never handed on: the attempt fails as ``malformed_response`` and the cascade
escalates, as for any other provider fault. The checks are ``isinstance`` tests of the
fields the cascade reads, which it reads anyway; a validated ``ChatCompletion`` passes all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pydantic
from openai.types.chat import ChatCompletion

from ..events import Completion, Failure, Result, TokenLogprob, ToolCall

if TYPE_CHECKING:
    import openai

    from .._engine import Call


@dataclass(frozen=True, slots=True)
class NotACompletion:
    """A response body that held no ChatCompletion, and why; ``completion`` reports it."""

    reason: str


# JSON values that are not objects, where the answer must have an object.
_SCALARS = (str, int, float, list, bool)


class Malformed(ValueError):
    """A field of the answer is missing or of the wrong type; the message says which."""


def parse(
    client: openai.OpenAI | openai.AsyncOpenAI, body: bytes, request_id: str | None = None
) -> Any:
    """The ChatCompletion in a response body, with its ``_request_id`` as ``create`` sets it.
    A body that is not a ChatCompletion is taken as leniently as ``create`` takes it (fields
    built as given, for servers that leave some out), or refused if the client was made with
    strict response validation."""
    try:
        parsed = ChatCompletion.model_validate_json(body)
        parsed._request_id = request_id
        return parsed
    except pydantic.ValidationError as e:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return NotACompletion(f"the response is not JSON: {body[:200]!r}")
        if not isinstance(data, dict) or getattr(client, "_strict_response_validation", False):
            return NotACompletion(f"the response is not a ChatCompletion: {str(e)[:300]}")
        try:
            built = ChatCompletion.construct(**data)
        except (TypeError, ValueError, AttributeError) as e:  # keys that are not names...
            return NotACompletion(f"the response is not a ChatCompletion: {str(e)[:300]}")
        built._request_id = request_id
        return built


def completion(call: Call, raw: Any, latency_s: float) -> Completion | Failure:
    """Reduce a ChatCompletion to a Completion; a response without a well-typed answer is a
    ``malformed_response`` Failure that says which field is wrong."""
    if isinstance(raw, NotACompletion):
        return Failure(call.model, "malformed_response", raw.reason, None, latency_s)
    try:
        return _completion(call, raw, latency_s)
    except (AttributeError, TypeError, ValueError, LookupError) as e:
        try:  # the slow walk that names the field, only for an answer already found wrong
            _diagnose(raw)
        except Malformed as found:
            return Failure(call.model, "malformed_response", str(found), None, latency_s)
        except (AttributeError, TypeError, ValueError, LookupError):
            pass
        message = f"unreadable response: {type(e).__name__}: {str(e)[:200]}"
        return Failure(call.model, "malformed_response", message, None, latency_s, e)


def _completion(call: Call, raw: Any, latency_s: float) -> Completion:
    """The answer read with plain attribute reads and exact type tests (a validated
    ChatCompletion passes them all); anything else raises."""
    choice = raw.choices[0]
    message = choice.message
    text = message.content
    refusal = getattr(message, "refusal", None)
    finish = choice.finish_reason
    if not (
        (text is None or type(text) is str)
        and (refusal is None or type(refusal) is str)
        and (finish is None or type(finish) is str)
    ):
        raise TypeError("a string field of the answer is not a string")
    usage = raw.usage
    prompt = completion_tokens = None
    cached = 0
    if usage is not None:
        prompt, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) or 0 if details is not None else 0
        if not (_is_count(prompt) and _is_count(completion_tokens) and _is_count(cached)):
            raise TypeError("a token count of the answer is not a count")
    logprobs = None
    lp = choice.logprobs
    if lp is not None and lp.content is not None:
        logprobs = tuple(
            TokenLogprob(
                _str(t.token, "logprobs token"),
                _number(t.logprob),
                tuple(
                    (_str(a.token, "logprobs token"), _number(a.logprob))
                    for a in (t.top_logprobs or ())
                ),
            )
            for t in lp.content
        )
    tool_calls = message.tool_calls
    return Completion(
        model=call.model,
        text=text or "",
        request=call.request,
        finish_reason=finish,
        tool_calls=_tool_calls(tool_calls) if tool_calls else (),
        logprobs=logprobs,
        refusal=refusal,
        prompt_tokens=prompt or 0,
        completion_tokens=completion_tokens or 0,
        cached_tokens=cached,
        # Usage without its counts is usage unknown (never counted as zero tokens).
        usage_known=prompt is not None and completion_tokens is not None,
        latency_s=latency_s,
        raw=raw,
    )


def _is_count(n: Any) -> bool:
    return n is None or (type(n) is int and n >= 0)


def _diagnose(raw: Any) -> None:
    """Raise Malformed naming the first field of ``raw`` that is missing or wrongly typed."""
    choices = raw.choices
    if type(choices) is not list:
        if not choices:
            raise Malformed(f"no choices in the response: {str(raw)[:200]}")
        raise Malformed(f"choices is {_kind(choices)}, not a list")
    if not choices:
        raise Malformed(f"no choices in the response: {str(raw)[:200]}")
    choice = choices[0]
    if isinstance(choice, _SCALARS):
        raise Malformed(f"choices[0] is {_kind(choice)}, not an object")
    message = choice.message
    if message is None:
        raise Malformed("choice without a message")
    if isinstance(message, _SCALARS):
        raise Malformed(f"choices[0].message is {_kind(message)}, not an object")
    strings = (
        ("message.content", message.content),
        ("message.refusal", getattr(message, "refusal", None)),
        ("finish_reason", choice.finish_reason),
    )
    for field, value in strings:
        if value is not None and type(value) is not str:
            raise Malformed(f"choices[0].{field} is {_kind(value)}, not a string")
    usage = raw.usage
    if usage is not None:
        if isinstance(usage, _SCALARS):
            raise Malformed(f"usage is {_kind(usage)}, not an object")
        _count(usage.prompt_tokens, "usage.prompt_tokens")
        _count(usage.completion_tokens, "usage.completion_tokens")
        details = getattr(usage, "prompt_tokens_details", None)
        if details is not None:
            if isinstance(details, _SCALARS):
                raise Malformed(f"usage.prompt_tokens_details is {_kind(details)}, not an object")
            found = getattr(details, "cached_tokens", None)
            _count(found, "usage.prompt_tokens_details.cached_tokens")
    tool_calls = message.tool_calls
    if tool_calls:
        _tool_calls(tool_calls)


def _tool_calls(calls: Any) -> tuple[ToolCall, ...]:
    if not isinstance(calls, list):
        raise Malformed(f"choices[0].message.tool_calls is {_kind(calls)}, not a list")
    out = []
    for i, tc in enumerate(calls):
        function = getattr(tc, "function", None)
        if function is None:  # a custom (non-function) tool call: not the cascade's to judge
            if isinstance(tc, _SCALARS):
                raise Malformed(f"tool_calls[{i}] is {_kind(tc)}, not an object")
            continue
        where = f"tool_calls[{i}]"
        call_id = getattr(tc, "id", None)
        out.append(
            ToolCall(
                "" if call_id is None else _str(call_id, f"{where}.id"),
                _str(getattr(function, "name", None), f"{where}.function.name"),
                _str(getattr(function, "arguments", None), f"{where}.function.arguments"),
            )
        )
    return tuple(out)


def _count(n: Any, where: str) -> None:
    if not _is_count(n):
        raise Malformed(f"{where} is {_shown(n)}, not a count")


def _str(value: Any, where: str) -> str:
    if type(value) is not str:
        raise Malformed(f"{where} is {_kind(value)}, not a string")
    return value


def _number(value: Any) -> float:
    if type(value) not in (float, int):
        raise Malformed(f"a logprob is {_kind(value)}, not a number")
    return float(value)


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {_shown(value)}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def accepted(raw: Any, output: str) -> Any:
    """The ChatCompletion to hand back: a copy with the cleaned text when validators
    stripped something (a self-rating) from the model's answer, else ``raw`` itself."""
    if raw is None or not raw.choices or raw.choices[0].message.content == output:
        return raw
    copy = raw.model_copy(deep=True)
    copy.choices[0].message.content = output
    return copy


def accepted_result(result: Result) -> Result:
    """``result`` whose ``completion`` is ``accepted``: the raw answer with the cleaned text."""
    raw = result.completion
    if raw is not None:
        fixed = accepted(raw, result.output)
        if fixed is not raw:
            return replace(result, completion=fixed)
    return result


__all__ = ["Malformed", "NotACompletion", "accepted", "accepted_result", "completion", "parse"]
