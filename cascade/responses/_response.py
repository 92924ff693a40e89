"""A chat completion -> the Response object the Responses API would have answered with."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def to_response(completion: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """The Response (as a dict) for a chat ``completion`` (a dict) answering ``request`` (the
    Responses body): the first choice's text, refusal and tool calls as output items, the
    usage in the Responses names, and the request's own settings echoed as the API does."""
    tag = str(completion.get("id") or "cascade").removeprefix("chatcmpl-")
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        text: dict[str, Any] = {
            "type": "output_text",
            "text": message["content"],
            "annotations": [],
            "logprobs": _logprobs(choice.get("logprobs")),
        }
        parts.append(text)
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    finish = choice.get("finish_reason")
    incomplete = _INCOMPLETE.get(finish or "")
    status = "incomplete" if incomplete else "completed"
    if parts:
        output.append(
            {
                "id": f"msg_{tag}",
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": parts,
            }
        )
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        output.append(
            {
                "id": f"fc_{tag}_{i}",
                "type": "function_call",
                "call_id": call.get("id") or f"call_{tag}_{i}",
                "name": function.get("name", ""),
                "arguments": function.get("arguments", ""),
                "status": "completed",
            }
        )
    text_config = request.get("text") or {}
    return {
        "id": f"resp_{tag}",
        "object": "response",
        "created_at": completion.get("created") or int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "model": completion.get("model") or "",
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": completion.get("service_tier") or request.get("service_tier"),
        "store": False,
        "temperature": request.get("temperature"),
        "text": {"format": {"type": "text"}, **text_config},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "top_logprobs": request.get("top_logprobs"),
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation") or "disabled",
        "usage": _usage(completion.get("usage")),
        "user": request.get("user"),
    }


def _usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    prompt = usage.get("prompt_tokens") or 0
    out = usage.get("completion_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.get("total_tokens") or prompt + out,
    }


def _logprobs(logprobs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Chat's per-token logprobs in the shape of ``output_text.logprobs``."""
    content = (logprobs or {}).get("content") or ()
    return [
        {
            "token": t.get("token", ""),
            "logprob": t.get("logprob", 0.0),
            "bytes": t.get("bytes") or [],
            "top_logprobs": [
                {
                    "token": a.get("token", ""),
                    "logprob": a.get("logprob", 0.0),
                    "bytes": a.get("bytes") or [],
                }
                for a in t.get("top_logprobs") or ()
            ],
        }
        for t in content
    ]
