"""``POST /v1/embeddings`` for the test servers: deterministic bag-of-words vectors.

Each word of a text (``\\w+``, lower-cased) is hashed to one of ``DIMENSIONS`` coordinates and
a sign; the counts make the vector, scaled to length 1. So texts made of the same words are
at cosine similarity 1 whatever their order, and texts with no word in common are near 0:
a test can write answers that an ``agreement: {comparator: embedding}`` finds alike or not.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DIMENSIONS", "embedding", "embeddings_answer"]

DIMENSIONS = 256
_WORDS = re.compile(r"\w+")


def embedding(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The unit vector of ``text``'s words (all zeros for a text without words)."""
    vector = [0.0] * dimensions
    for word in _WORDS.findall(text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[h % dimensions] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def embeddings_answer(request: Mapping[str, Any]) -> wire.HttpResponse:
    """The answer to an embeddings request (``input``: a string or a list of strings;
    ``dimensions``; ``encoding_format`` ``float`` or ``base64``), or a 400 naming the field."""
    texts = request.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return wire.error(400, "input: need a string or a non-empty list of strings")
    if any(not t for t in texts):
        return wire.error(400, "input: an empty string cannot be embedded")
    size = request.get("dimensions") or DIMENSIONS
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
        return wire.error(400, f"dimensions: need an integer from 1 to 4096, got {size!r}")
    as_base64 = request.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(texts):
        vector: Any = embedding(text, size)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = sum(max(1, math.ceil(len(t) / 4)) for t in texts)
    body = {
        "object": "list",
        "data": data,
        "model": request.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return wire.HttpResponse(200, wire.dumps(body))
