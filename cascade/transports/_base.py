"""The ``Transport`` protocol: how a ``Cascade`` performs the engine's model calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import openai

from ..events import Failure

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..events import Call, Reply


@runtime_checkable
class Transport(Protocol):
    """Performs the engine's calls: a ``Call`` in, a ``Completion`` or a ``Failure`` out.

    A transport never raises for a provider's error: it returns a ``Failure`` whose ``kind``
    says what happened (``timeout``, ``rate_limited``, ``server_error``, ...), so that the
    engine can escalate. ``close``/``aclose`` release what the transport opened.
    """

    def call(self, call: Call) -> Reply:
        """Perform ``call`` and wait for its answer."""
        ...

    async def acall(self, call: Call) -> Reply:
        """Perform ``call`` in the running event loop."""
        ...

    def close(self) -> None:
        """Release the transport's sync resources."""
        ...

    async def aclose(self) -> None:
        """Release the transport's async resources (and the sync ones)."""
        ...


class UpstreamStatusError(Exception):
    """An upstream answer with an error status; ``body`` is its ``error`` object (or the whole
    body), as the openai SDK's ``APIStatusError.body`` holds it; ``headers`` the answer's
    headers (names in lower case)."""

    def __init__(
        self, message: str, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.headers: Mapping[str, str] = headers or {}


def failure(model: str, e: openai.OpenAIError, latency_s: float) -> Failure:
    """Map an SDK error to the escalation reason it stands for."""
    status = getattr(e, "status_code", None)
    if isinstance(e, openai.APITimeoutError):
        kind = "connection_error" if _refused(e) else "timeout"
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


def _refused(e: BaseException) -> bool:
    """Whether a "timeout" was a connection refused or reset: the SDK's aiohttp transport
    reports every connection error as a connect timeout, its cause says what happened."""
    cause = e.__cause__ or e.__context__
    for _ in range(8):  # the chain is short; a bound keeps a cyclic one from looping
        if cause is None:
            return False
        if isinstance(cause, ConnectionError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
