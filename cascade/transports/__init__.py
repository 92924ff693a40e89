"""Transports: the only code that talks HTTP to a model.

``Cascade(transport=...)`` is the seam: ``OpenAITransport`` (the default) calls with the openai
SDK's clients; ``DirectTransport`` (``cascade serve``'s upstream) sends plain-JSON chat calls
directly on aiohttp with an SDK client's settings; any object with the ``Transport`` methods
can take their place. ``DirectTransport`` needs aiohttp (the ``proxy`` extra) and is imported
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Transport, UpstreamStatusError
from ._timeout import DEFAULT_TIMEOUT_S, attempt_timeout
from .sdk import OpenAITransport

if TYPE_CHECKING:
    from .direct import DirectTransport


def __getattr__(name: str) -> Any:
    if name == "DirectTransport":
        from .direct import DirectTransport

        return DirectTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DirectTransport",
    "OpenAITransport",
    "Transport",
    "UpstreamStatusError",
    "attempt_timeout",
]
