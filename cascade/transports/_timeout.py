"""The default time one attempt may take: 60 s, or ``CASCADE_TIMEOUT`` seconds.

The openai SDK waits 600 s for an answer and tries three times: a provider that accepts the
connection and never answers would hold one rung of the cascade for half an hour. A client
left at the SDK's default timeout is given this one instead, per HTTP request; a timeout set
anywhere else wins: the client's own (``OpenAI(timeout=...)``), an endpoint's ``timeout``,
a policy's ``params: {timeout: ...}`` or the call's ``timeout=`` argument, and the proxy
config's ``upstream_timeout``. A timed-out attempt fails as ``timeout`` and escalates.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import openai

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_TIMEOUT_S = 60.0
_SDK_DEFAULT = openai.DEFAULT_TIMEOUT


def attempt_timeout(environ: Mapping[str, str] | None = None) -> float:
    """``CASCADE_TIMEOUT`` (seconds) from ``environ`` (default ``os.environ``), else 60.

    Raises ``ValueError`` naming the variable when it is not a positive number."""
    raw = (os.environ if environ is None else environ).get("CASCADE_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"CASCADE_TIMEOUT={raw[:40]!r}: expected a positive number of seconds")
    return value


def timeout_for(client: openai.OpenAI | openai.AsyncOpenAI, default: float) -> float | None:
    """``default`` for a client left at the SDK's own timeout, else None (the client's)."""
    timeout: Any = client.timeout
    return default if timeout is _SDK_DEFAULT or timeout == _SDK_DEFAULT else None


__all__ = ["DEFAULT_TIMEOUT_S", "attempt_timeout", "timeout_for"]
