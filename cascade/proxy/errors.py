"""OpenAI-format error responses, and which status each of the library's errors becomes.

| raised by the cascade                       | status | ``error.code``           |
| ------------------------------------------- | ------ | ------------------------ |
| InvalidRequestError, bad JSON               | 400    | ``invalid_request``      |
| UnknownTaskError (X-Cascade-Task)           | 400    | ``unknown_task`` (*)     |
| UnknownTaskError (a route's task)           | 500    | ``unknown_task``         |
| PolicyError                                 | 500    | ``policy_error``         |
| upstream 401 / 403 (below)                  | 502    | ``upstream_auth_failed`` |
| ProviderError, any other status             | same   | upstream's own           |
| EscalationExhausted, no model answered and  | same   | upstream's own           |
| the last one's error had a status           |        |                          |
| EscalationExhausted, otherwise              | 502    | ``escalation_exhausted`` |

An upstream status is relayed with its error object and its ``retry-after``,
``retry-after-ms``, ``x-should-retry`` and ``x-ratelimit-*`` headers, as a pass-through
request gets them: a 429 on the requested model (observe mode) or on the last rung tells the
client to wait and ask again, as the upstream said.

(*) naming only the task the client sent (cut at 100 characters); the policies directory and
the tasks it holds are logged (``cascade.proxy.unknown_task``), never sent.

An upstream 401/403 becomes 502 because the client's own key (a proxy key) was accepted: it
is the proxy's upstream credential that is wrong, and a 401 would send the client looking
at the wrong key. Other upstream refusals (400, 404, 422...) are about the client's request,
so the upstream's status and error object are passed through.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.responses import Response

from .._answer import UpstreamError, upstream_error
from .._logging import get_logger
from ..exceptions import (
    CascadeError,
    EscalationExhausted,
    InvalidRequestError,
    PolicyError,
    ProviderError,
    UnknownTaskError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

_log = get_logger()
_TASK_CHARS = 100  # of an unknown task's name, in the error the client gets

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    type_: str | None = None,
    headers: Mapping[str, str] | None = None,
    param: str | None = None,
) -> Response:
    """``{"error": {"message", "type", "param", "code"}}`` with ``status``."""
    body = {
        "error": {
            "message": message,
            "type": type_ or _TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
    }
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def from_exception(e: CascadeError, *, task_from_header: bool) -> tuple[int, Response]:
    """The status and response for an error raised by ``Cascade.arun``."""
    if isinstance(e, InvalidRequestError):
        return 400, error_response(400, str(e), code="invalid_request")
    if isinstance(e, UnknownTaskError):
        # Asked for by name: the client's mistake. Chosen by our routes: the server's.
        status = 400 if task_from_header else 500
        # The policies directory and the other tasks' names are the operator's, not the
        # client's: they go to the log, the client hears only the name it sent.
        named = e.task if len(e.task) <= _TASK_CHARS else e.task[:_TASK_CHARS] + "…"
        _log.warning(
            "cascade.proxy.unknown_task",
            task=named,
            directory=str(e.directory),
            available=list(e.available),
        )
        return status, error_response(status, f"no policy for task {named!r}", code="unknown_task")
    if isinstance(e, PolicyError):
        return 500, error_response(500, str(e), code="policy_error")
    relayed = upstream_error(e)
    if relayed is not None:
        return _relay(e, relayed)
    if isinstance(e, ProviderError):
        return 502, error_response(502, str(e), code="upstream_error")
    if isinstance(e, EscalationExhausted):
        return 502, error_response(502, str(e), code="escalation_exhausted")
    return 500, error_response(500, str(e), code=type(e).__name__)


def _relay(e: CascadeError, relayed: UpstreamError) -> tuple[int, Response]:
    status = relayed.status
    failure = e.failure if isinstance(e, EscalationExhausted) else None
    model = e.model if isinstance(e, ProviderError) else getattr(failure, "model", "?")
    if status in (401, 403):
        # Not the upstream's message: it may quote (part of) the proxy's upstream key.
        return 502, error_response(
            502,
            f"the upstream provider refused the proxy's credentials ({status}) for {model}",
            code="upstream_auth_failed",
        )
    if relayed.error is not None:
        error = {k: relayed.error.get(k) for k in ("message", "type", "param", "code")}
        return status, Response(
            json.dumps({"error": error}),
            status_code=status,
            headers=dict(relayed.headers),
            media_type="application/json",
        )
    return status, error_response(status, str(e), code="upstream_error", headers=relayed.headers)


__all__ = ["error_response", "from_exception"]
