"""A finished ChatCompletion as the server-sent events of a stream, then ``[DONE]``
(the chunks are ``cascade._stream.chunks``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._stream import chunks

if TYPE_CHECKING:
    from collections.abc import Mapping

DONE = b"data: [DONE]\n\n"


def sse(completion: Mapping[str, Any], *, include_usage: bool = False) -> bytes:
    """The whole event stream of ``completion``, ``data: [DONE]`` included, as one body."""
    parts = [
        b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n"
        for c in chunks(completion, include_usage=include_usage)
    ]
    parts.append(DONE)
    return b"".join(parts)


__all__ = ["DONE", "chunks", "sse"]
