"""A Responses API request body -> the chat completion request the cascade runs.

What has a chat equivalent is translated (text and message input, ``instructions``,
``text.format``, function tools and their calls and outputs, sampling and token limits,
logprobs); what the cascade cannot judge is named by ``Unjudged`` so that the request goes to
the requested model unchanged: state kept by the upstream (``previous_response_id``,
``conversation``, item references, stored prompts), built-in tools (web search, file search,
code interpreter...), background mode, and any field with no chat equivalent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Fields that name state or work only the upstream has.
_STATEFUL = {
    "previous_response_id": "previous_response_id: conversation state held upstream",
    "conversation": "conversation: conversation state held upstream",
    "prompt": "prompt: a stored prompt template held upstream",
    "background": "background mode",
}
# Sampling and limits: chat takes them under the same name.
_SAME = (
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "metadata",
    "user",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
)
# Accepted and not sent on: nothing the chat call can do with them changes the answer.
_DROPPED = frozenset(
    {"model", "input", "instructions", "stream", "stream_options", "store", "truncation"}
)
_INCLUDE_OK = frozenset(
    {"message.output_text.logprobs", "reasoning.encrypted_content", "message.input_image.image_url"}
)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The chat request of a Responses body: ``messages`` and the other ``create()``
    arguments (``params``); ``body`` is the chat JSON body (with ``model``) for routing."""

    messages: list[dict[str, Any]]
    params: dict[str, Any]

    def body(self, model: Any) -> dict[str, Any]:
        """The chat completion body a client would have sent for the same call."""
        return {"model": model, "messages": self.messages, **self.params}


@dataclass(frozen=True, slots=True)
class Unjudged:
    """A request the cascade cannot judge, and why (sent as ``x-cascade-passthrough``)."""

    reason: str


def to_chat(body: Mapping[str, Any]) -> ChatRequest | Unjudged:
    """The chat request of a Responses API body, or why the cascade cannot judge it."""
    for key, why in _STATEFUL.items():
        if body.get(key):
            return Unjudged(why)
    params: dict[str, Any] = {}
    for key, value in body.items():
        if key in _DROPPED or key in _STATEFUL or value is None:
            continue
        if key in _SAME:
            params[key] = value
        elif key == "max_output_tokens":
            params["max_completion_tokens"] = value
        elif key == "top_logprobs":
            params["logprobs"] = True
            params["top_logprobs"] = value
        elif key == "include":
            unknown = [i for i in value or () if i not in _INCLUDE_OK]
            if unknown:
                return Unjudged(f"include: {unknown[0]} has no chat equivalent")
            if "message.output_text.logprobs" in value:
                params["logprobs"] = True
        elif key == "reasoning":
            effort = value.get("effort") if isinstance(value, Mapping) else None
            if effort:
                params["reasoning_effort"] = effort
        elif key == "text":
            fail = _text(value, params)
            if fail:
                return Unjudged(fail)
        elif key == "tools":
            tools = _tools(value)
            if isinstance(tools, Unjudged):
                return tools
            if tools:
                params["tools"] = tools
        elif key == "tool_choice":
            choice = _tool_choice(value)
            if isinstance(choice, Unjudged):
                return choice
            params["tool_choice"] = choice
        else:
            return Unjudged(f"{key}: no chat equivalent")
    messages = _messages(body.get("input"))
    if isinstance(messages, Unjudged):
        return messages
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    elif isinstance(instructions, list):  # a list of input items, as the API accepts
        more = _messages(instructions)
        if isinstance(more, Unjudged):
            return more
        messages[:0] = more
    return ChatRequest(messages, params)


def _text(value: Any, params: dict[str, Any]) -> str | None:
    if not isinstance(value, Mapping):
        return None
    fmt = value.get("format")
    if isinstance(fmt, Mapping):
        kind = fmt.get("type")
        if kind == "json_schema":
            schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
            params["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif kind == "json_object":
            params["response_format"] = {"type": "json_object"}
        elif kind not in (None, "text"):
            return f"text.format: {kind} has no chat equivalent"
    if value.get("verbosity"):
        params["verbosity"] = value["verbosity"]
    return None


def _tools(value: Any) -> list[dict[str, Any]] | Unjudged:
    tools = []
    for tool in value or ():
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind != "function":
            return Unjudged(f"built-in tool {kind}: run by the upstream, not judged")
        keys = ("name", "description", "parameters", "strict")
        function = {k: tool[k] for k in keys if k in tool}
        if function.get("strict") is None:
            function.pop("strict", None)
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if value.get("type") == "function":
            return {"type": "function", "function": {"name": value.get("name")}}
        if value.get("type") == "allowed_tools":
            named = [
                {"type": "function", "function": {"name": t.get("name")}}
                for t in value.get("tools") or ()
                if isinstance(t, Mapping) and t.get("type") == "function"
            ]
            mode = value.get("mode", "auto")
            return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": named}}
        return Unjudged(f"tool_choice: built-in tool {value.get('type')}")
    return value


def _messages(value: Any) -> list[dict[str, Any]] | Unjudged:
    """Input items as chat messages: a text is one user message; function calls join the
    assistant message before them; function call outputs become tool messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for item in value or ():
        if not isinstance(item, Mapping):
            return Unjudged(f"input item {item!r} is not an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            content = _content(item.get("content"), assistant=role == "assistant")
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else _content(output),
                }
            )
        elif kind == "reasoning":
            continue  # a reasoning model's own notes: chat has no place for them
        else:
            return Unjudged(f"input item {kind}: held or run by the upstream")
    return messages


def _content(content: Any, *, assistant: bool = False) -> Any:
    """Message content as chat takes it: text parts and images; an assistant's as text."""
    if not isinstance(content, list):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image":
            image: dict[str, Any] = {"url": part.get("image_url") or part.get("file_id")}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
            parts.append({"type": "file", "file": file})
    if assistant or (len(parts) == 1 and parts[0]["type"] == "text"):
        return "".join(p.get("text", "") for p in parts)
    return parts
