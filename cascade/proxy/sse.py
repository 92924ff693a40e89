"""A finished ChatCompletion as the server-sent events of a stream, then ``[DONE]``
(the chunks are ``cascade._stream.chunks``; the proxy renders them with
``cascade._answer.chat_sse``, which also puts the ``cascade`` field on the last one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._answer import chat_sse
from .._stream import chunks

if TYPE_CHECKING:
    from collections.abc import Mapping

DONE = b"data: [DONE]\n\n"


def sse(completion: Mapping[str, Any], *, include_usage: bool = False) -> bytes:
    """The whole event stream of ``completion``, ``data: [DONE]`` included, as one body."""
    return chat_sse(completion, include_usage)


__all__ = ["DONE", "chunks", "sse"]
