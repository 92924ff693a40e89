"""Checking the caller's messages and arguments before any API call is made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._logging import get_logger
from .events import Request
from .exceptions import InvalidRequestError
from .validators import request_problem

_log = get_logger()

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Arguments the cascade decides itself, or that would change what "an answer" is.
_OWNED = {
    "model": "the policy chooses the model; remove `model`",
    "stream": "cascade.run validates the whole answer and does not stream; remove `stream`",
}


def make_request(
    task: str, messages: Any, params: Mapping[str, Any], defaults: Mapping[str, Any]
) -> Request:
    """A Request from the caller's arguments over the policy's defaults.

    Raises InvalidRequestError naming the message index and field at fault.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidRequestError(
            f"{task}: messages must be a non-empty list of message dicts, got {_show(messages)}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidRequestError(f"{task}: messages[{i}] must be a dict, got {_show(m)}")
        role = m.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(
                f"{task}: messages[{i}].role must be one of {sorted(_ROLES)}, got {_show(role)}"
            )
        content = m.get("content")
        if content is None:
            if role not in ("assistant", "tool") or (
                role == "assistant" and not m.get("tool_calls")
            ):
                raise InvalidRequestError(f"{task}: messages[{i}].content is missing")
        elif not isinstance(content, (str, list)):
            raise InvalidRequestError(
                f"{task}: messages[{i}].content must be a string or a list of parts, "
                f"got {_show(content)}"
            )
    for key, why in _OWNED.items():
        if params.get(key):
            raise InvalidRequestError(f"{task}: {why}")
    if params.get("n", 1) != 1:
        raise InvalidRequestError(
            f"{task}: n={params['n']!r}: the cascade judges one answer; use n=1"
        )
    params = {k: v for k, v in params.items() if k not in _OWNED}
    request = Request(messages=messages, params={**defaults, **params} if defaults else params)
    problem = request_problem(request)
    if problem is not None:  # answered, but not judged by that schema (or those tools)
        _log.warning("cascade.unvalidated", task=task, reason=problem)
    return request


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
