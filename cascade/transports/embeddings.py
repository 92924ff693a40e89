"""Embeddings calls (``Call.purpose == "embed"``) with the openai SDK's clients.

The engine asks for the vectors of ``request.params["input"]`` (a list of texts) in one call;
the answer is a ``Completion`` whose ``vectors`` hold them in input order, with the call's
prompt tokens (an embedding has no completion tokens). Provider errors and answers without a
vector per input come back as a ``Failure``, as for chat calls.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import openai

from ..events import Completion, Failure
from ._base import failure

if TYPE_CHECKING:
    from ..events import Call

__all__ = ["embed_async", "embed_sync"]


def _args(call: Call, timeout: float | None) -> dict[str, Any]:
    params = dict(call.request.params)
    params["input"] = list(params.get("input") or ())
    if timeout is not None:
        params.setdefault("timeout", timeout)
    return params


def embed_sync(
    client: openai.OpenAI, call: Call, timeout: float | None = None
) -> Completion | Failure:
    """The vectors of ``call``'s inputs from ``client.embeddings`` (``timeout``: seconds,
    unless the call's parameters set one)."""
    start = time.perf_counter()
    try:
        raw = client.embeddings.create(model=call.model, **_args(call, timeout))
    except openai.OpenAIError as e:
        return failure(call.model, e, time.perf_counter() - start)
    return _vectors(call, raw, time.perf_counter() - start)


async def embed_async(
    client: openai.AsyncOpenAI, call: Call, timeout: float | None = None
) -> Completion | Failure:
    """The vectors of ``call``'s inputs from ``client.embeddings``, in the event loop."""
    start = time.perf_counter()
    try:
        raw = await client.embeddings.create(model=call.model, **_args(call, timeout))
    except openai.OpenAIError as e:
        return failure(call.model, e, time.perf_counter() - start)
    return _vectors(call, raw, time.perf_counter() - start)


def _vectors(call: Call, raw: Any, latency_s: float) -> Completion | Failure:
    wanted = len(call.request.params.get("input") or ())
    data = sorted(getattr(raw, "data", None) or (), key=lambda d: getattr(d, "index", 0))
    vectors = tuple(
        tuple(float(x) for x in d.embedding)
        for d in data
        if isinstance(getattr(d, "embedding", None), list)
    )
    if len(vectors) != wanted:
        why = f"{len(vectors)} embedding vectors for {wanted} inputs"
        return Failure(call.model, "malformed_response", why, None, latency_s)
    usage = getattr(raw, "usage", None)
    return Completion(
        model=call.model,
        text="",
        request=call.request,
        finish_reason=None,
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        usage_known=usage is not None,
        latency_s=latency_s,
        raw=raw,
        vectors=vectors,
    )
