"""The ``Transport`` protocol: how a ``Cascade`` performs the engine's model calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._engine import Call, Reply


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
