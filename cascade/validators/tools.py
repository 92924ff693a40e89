"""Tool calls: each names a tool the request offered, with JSON arguments valid for it."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ._base import BaseValidator
from ._json import short
from .schema import compile_schema, schema_error

if TYPE_CHECKING:
    from ..events import Completion, ToolCall, Verdict

# Compiled parameter schemas, shared by every ToolCalls validator: requests repeat the same
# few tool definitions, and compiling one costs far more than checking arguments against it.
_CACHE_SIZE = 256
_compiled: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


class ToolCalls(BaseValidator):
    """The answer's tool calls are usable (policy ``type: tool_calls``).

    Each call must name a tool of the request's ``tools`` (OpenAI format), its
    ``arguments`` must parse as JSON and be valid against that tool's ``parameters``
    schema. With ``require: true`` the answer must contain at least one tool call.
    ``score`` is the number of tool calls.
    """

    kind = "tool_calls"

    require: bool = Field(False, description="The answer must call at least one tool.")

    def __call__(self, completion: Completion, /) -> Verdict:
        """Pass when every tool call is well-formed (and one exists, if required)."""
        calls = completion.tool_calls
        if not calls:
            if self.require:
                return self.verdict(False, "no tool call in the answer", 0.0)
            return self.verdict(True, score=0.0)
        tools = _tools_by_name(completion.request.tools)
        problems = [p for call in calls if (p := _problem(call, tools)) is not None]
        return self.verdict(not problems, "; ".join(problems), float(len(calls)))


def _tools_by_name(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Function name -> its parameters schema (None when it declares none)."""
    out: dict[str, Any] = {}
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters")
    return out


def _problem(call: ToolCall, tools: Mapping[str, Any]) -> str | None:
    name = short(call.name, 60)
    if call.name not in tools:
        offered = ", ".join(sorted(tools)) if tools else "the request declares no tools"
        return f"tool {name} is not one of the request's tools ({offered})"
    try:
        arguments = json.loads(call.arguments)
    except (ValueError, RecursionError, TypeError) as e:
        return f"tool {name}: arguments are not valid JSON ({str(e)[:100]})"
    schema = tools[call.name]
    if schema is None:
        return None
    validator = _validator_for(schema)
    if isinstance(validator, str):
        return f"tool {name}: {validator}"
    problem = schema_error(validator, arguments)
    return None if problem is None else f"tool {name}: arguments {problem}"


def _validator_for(schema: Any) -> Any:
    """The compiled validator of ``schema``, or a string saying why it cannot be compiled."""
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError) as e:
        return f"its parameters schema cannot be read ({e})"
    with _lock:
        found = _compiled.get(key)
        if found is not None:
            _compiled.move_to_end(key)
            return found
    try:
        found = compile_schema(schema)
    except ValueError as e:
        found = f"its parameters schema is invalid: {e}"
    with _lock:
        _compiled[key] = found
        if len(_compiled) > _CACHE_SIZE:
            _compiled.popitem(last=False)
    return found


__all__ = ["ToolCalls"]
