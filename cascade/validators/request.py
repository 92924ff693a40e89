"""Checks the request itself asks for: its ``response_format``, its ``tools`` and
``tool_choice``, and an answer that is whole (not cut off, not a refusal, not empty).

A policy runs ``FromRequest`` after its own validators unless it says ``derive: false``, so
an application that already declares what it expects needs no validator written twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..events import Request, Verdict
from ._compiled import cached_schema
from ._json import loads
from .schema import schema_error
from .structure import Structure, refusal_of
from .tools import ToolCalls, forced_tool, offered_tools, tool_problems, tools_problem

if TYPE_CHECKING:
    from ..events import Completion


def response_schema(request: Request | Mapping[str, Any]) -> Any:
    """The JSON schema of a ``response_format: {type: json_schema}`` request (a Request or
    its parameters), ``{"type": "object"}`` for ``json_object``, or None when the request
    asks for no JSON."""
    return _schema_of(request.params if isinstance(request, Request) else request)


def _schema_of(params: Mapping[str, Any]) -> Any:
    # Plain dicts skip the ABC isinstance test: this runs on every request that has one.
    rf = params.get("response_format")
    if type(rf) is not dict and not isinstance(rf, Mapping):
        return None
    kind = rf.get("type")
    if kind == "json_object":
        return _OBJECT
    if kind == "json_schema":
        spec = rf.get("json_schema")  # no schema (missing or null): any JSON value (True)
        if type(spec) is not dict and not isinstance(spec, Mapping):
            return True
        schema = spec.get("schema")
        return True if schema is None else schema
    return None


_OBJECT: Mapping[str, Any] = {"type": "object"}


def request_problem(request: Request | Mapping[str, Any]) -> str | None:
    """Why the cascade cannot judge answers to ``request`` (a Request or its parameters): its
    ``response_format`` schema or a tool's ``parameters`` is not a valid JSON Schema (or has
    a ``$ref`` that cannot be followed), or its ``tool_choice`` names a tool it does not
    offer; else None. The proxy and ``wrap`` send such a request to the requested model as
    it is; ``run`` answers it without those checks.
    """
    params = request.params if isinstance(request, Request) else request
    if "response_format" in params:
        schema = _schema_of(params)
        if schema is not None and schema is not True and schema is not _OBJECT:
            compiled = cached_schema(schema)
            if isinstance(compiled, str):
                return f"response_format schema is not a valid JSON Schema: {compiled}"
    if "tools" in params or "tool_choice" in params:
        return tools_problem(params)
    return None


class FromRequest:
    """The answer is what the request asked for (the ``request`` verdict).

    - ``response_format`` ``json_schema``: the answer is JSON valid against the schema (the
      verdict's ``parsed`` is the decoded value); ``json_object``: a JSON object. Not judged
      when the answer is tool calls (the tools check judges those) or the schema is invalid.
    - ``tools``: each tool call names a tool of the request, with JSON arguments valid
      against its ``parameters``; ``tool_choice: required`` or a named function: a call (to
      that function) is there. Without ``tools`` (the policy has its own ``tool_calls``
      validator), only the ``tool_choice`` part.
    - with ``structure``: not cut off (``finish_reason: length``), not a refusal, not empty.
    """

    __slots__ = ("name", "structure", "tools")

    def __init__(self, *, structure: bool = True, tools: bool = True, name: str = "request"):
        self.name = name
        self.structure = structure
        self.tools = tools

    @classmethod
    def beside(cls, validators: Sequence[object]) -> FromRequest:
        """The checks a policy with these ``validators`` adds: not those its own ``structure``
        or ``tool_calls`` validator already makes."""
        return cls(
            structure=not any(isinstance(v, Structure) for v in validators),
            tools=not any(isinstance(v, ToolCalls) for v in validators),
        )

    def __call__(self, completion: Completion, /) -> Verdict:
        """Every failed check's reason, joined with "; "."""
        request = completion.request
        params = request.params
        failed: list[str] = []
        parsed: Any = None
        calls = completion.tool_calls
        if self.structure:
            if completion.finish_reason == "length":
                failed.append("truncated (finish_reason=length)")
            if not calls and not completion.text.strip():
                failed.append("empty answer")
            refused = refusal_of(completion)
            if refused is not None:
                failed.append(refused)
        if "response_format" in params and not calls:
            schema = _schema_of(params)
            if schema is not None:
                problem, parsed = _json_answer(completion.text, schema)
                if problem is not None:
                    failed.append(problem)
        if "tools" in params:
            forced = forced_tool(request)
            if forced not in (None, "*") and forced not in offered_tools(request.tools):
                forced = None  # a choice of no offered tool is not judged: see request_problem
            if calls:
                if self.tools:
                    failed.extend(tool_problems(completion))
                if forced not in (None, "*") and all(c.name != forced for c in calls):
                    failed.append(f"tool_choice asks for a call to {forced!r}")
            elif forced is not None and request.tools:
                failed.append(
                    "no tool call in the answer (tool_choice: "
                    f"{'required' if forced == '*' else forced})"
                )
        return Verdict(self.name, not failed, "; ".join(failed), None, parsed)


def _json_answer(text: str, schema: Any) -> tuple[str | None, Any]:
    """(why ``text`` is not JSON valid for ``schema``, or None; the decoded value)."""
    compiled = None
    if schema is not True and schema is not _OBJECT:
        compiled = cached_schema(schema)
        if isinstance(compiled, str):
            return None, None  # an invalid schema cannot be judged: see request_problem
    try:
        value = loads(text)
    except (ValueError, RecursionError) as e:
        return f"response_format: the answer is not JSON ({str(e)[:100]})", None
    if schema is True:
        return None, value
    if schema is _OBJECT:
        if isinstance(value, dict):
            return None, value
        return f"response_format: the answer is a JSON {type(value).__name__}, not an object", None
    problem = schema_error(compiled, value)
    if problem is not None:
        return f"response_format: schema: {problem}", None
    return None, value


__all__ = ["FromRequest", "request_problem", "response_schema"]
