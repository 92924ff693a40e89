"""Tool calls: each names a tool the request offered, with JSON arguments valid for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ._base import BaseValidator
from ._compiled import cached_schema
from ._json import loads, short
from .schema import schema_error

if TYPE_CHECKING:
    from ..events import Completion, Request, ToolCall, Verdict


class ToolCalls(BaseValidator):
    """The answer's tool calls are usable (policy ``type: tool_calls``).

    Each call must name a tool of the request's ``tools`` (OpenAI format), its
    ``arguments`` must parse as JSON and be valid against that tool's ``parameters``
    schema. With ``require: true`` the answer must contain at least one tool call on the
    turns that demand one (``demands_tool``), so an agent's final text answer, after its
    tools' results, passes. ``score`` is the number of tool calls.
    """

    kind = "tool_calls"

    require: bool = Field(
        False,
        description="The answer must call a tool, on turns that demand one: the request "
        "offers tools, and forces a call (tool_choice) or its last message is not a tool result.",
    )

    def __call__(self, completion: Completion, /) -> Verdict:
        """Pass when every tool call is well-formed (and one exists, if required)."""
        calls = completion.tool_calls
        if not calls:
            if self.require and demands_tool(completion.request):
                return self.verdict(False, "no tool call in the answer", 0.0)
            return self.verdict(True, score=0.0)
        problems = tool_problems(completion)
        return self.verdict(not problems, "; ".join(problems), float(len(calls)))


def forced_tool(request: Request) -> str | None:
    """What the request's ``tool_choice`` forces: ``"*"`` (``required``: any tool), a
    function's name, or None (the model may answer in text)."""
    return _forced(request.params.get("tool_choice"))


def _forced(choice: Any) -> str | None:
    if choice == "required":
        return "*"
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
        if isinstance(name, str):
            return name
    return None


def demands_tool(request: Request) -> bool:
    """True when a tool call is expected of this turn: the request offers tools, does not
    say ``tool_choice: none``, and forces a call or does not end with a tool's result."""
    if not request.tools or request.params.get("tool_choice") == "none":
        return False
    if forced_tool(request) is not None:
        return True
    last = request.messages[-1] if request.messages else None
    return not (isinstance(last, Mapping) and last.get("role") in ("tool", "function"))


def offered_tools(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Function name -> its parameters schema (None when it declares none)."""
    out: dict[str, Any] = {}
    for tool in tools:
        # Plain dicts skip the ABC isinstance test: this runs on every request with tools.
        fn = tool.get("function") if type(tool) is dict or isinstance(tool, Mapping) else None
        if (type(fn) is dict or isinstance(fn, Mapping)) and type(name := fn.get("name")) is str:
            out[name] = fn.get("parameters")
    return out


def tools_problem(params: Mapping[str, Any]) -> str | None:
    """Why the tools of a request (its parameters) cannot be judged: a tool's ``parameters``
    is not a valid JSON Schema, or ``tool_choice`` names a function not in ``tools``; else
    None."""
    tools = params.get("tools") or ()
    offered = offered_tools(tools) if type(tools) is list or isinstance(tools, Sequence) else {}
    for name, schema in offered.items():
        if schema is not None and type(validator := cached_schema(schema)) is str:
            return (
                f"tool {short(name, 60)}: its parameters schema is not a valid JSON "
                f"Schema: {validator}"
            )
    forced = _forced(params.get("tool_choice"))
    if forced not in (None, "*") and forced not in offered:
        return f"tool_choice names {short(forced, 60)}, which is not one of the request's tools"
    return None


def tool_problems(completion: Completion) -> list[str]:
    """Why each of the answer's tool calls is unusable (an unknown tool, arguments that are
    not JSON or break the tool's ``parameters``); empty when all are usable."""
    tools = offered_tools(completion.request.tools)
    return [p for call in completion.tool_calls if (p := _problem(call, tools)) is not None]


def _problem(call: ToolCall, tools: Mapping[str, Any]) -> str | None:
    name = short(call.name, 60)
    if call.name not in tools:
        offered = ", ".join(sorted(tools)) if tools else "the request declares no tools"
        return f"tool {name} is not one of the request's tools ({offered})"
    try:
        arguments = loads(call.arguments)
    except (ValueError, RecursionError, TypeError) as e:
        return f"tool {name}: arguments are not valid JSON ({str(e)[:100]})"
    schema = tools[call.name]
    if schema is None:
        return None
    validator = cached_schema(schema)  # requests repeat the same few tools
    if isinstance(validator, str):
        return None  # a schema that cannot be used is not judged: see tools_problem
    problem = schema_error(validator, arguments)
    return None if problem is None else f"tool {name}: arguments {problem}"


__all__ = [
    "ToolCalls",
    "demands_tool",
    "forced_tool",
    "offered_tools",
    "tool_problems",
    "tools_problem",
]
