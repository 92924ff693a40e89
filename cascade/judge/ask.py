"""The verdict on a cheap answer against the strong one, as a generator of model calls.

``ask`` is part of the engine (no I/O): it yields the judge's chat call, or the embedder's
``/embeddings`` call, as a ``Call`` effect and is sent back the reply, like any model call.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ..compare import comparator
from ..events import Attempt, Call, Failure, Judgement, Purpose, Reply, Verdict
from ..pricing import usd
from . import (
    Embedder,
    cosine,
    embedding_key,
    embedding_request,
    judge_key,
    judge_request,
    parse_verdict,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from ..compare import AgreementSpec
    from ..events import Completion, Request
    from ..policy import Endpoint
    from ..pricing import Price
    from . import Comparison

__all__ = ["Asked", "ask"]

Asked = tuple[Judgement, list[Attempt], Decimal | None]


def ask(
    judge: Comparison,
    spec: AgreementSpec,
    request: Request,
    cheap: str,
    strong: str,
    price: Price | None,
    endpoint: Endpoint | None = None,
) -> Generator[Call, Reply, Asked]:
    """The verdict on ``cheap`` against ``strong``, the attempts it took and their cost
    (None when the model has no known ``price``): ``equivalent`` with no call where the
    cheaper comparator agrees, a cached verdict, or the model's (``unknown`` when the call
    errors or its answer is off-format; never raises). ``endpoint``: where the model is
    served (None: the transport's default client)."""
    if comparator(judge.prefilter)(cheap, strong, spec):
        return "equivalent", [], Decimal(0)
    embedder = isinstance(judge, Embedder)
    key = (
        embedding_key(judge.model, cheap, strong)
        if embedder
        else judge_key(request.messages, cheap, strong)
    )
    cached = judge.cache.get(key)
    if cached is not None:
        return cached, [], Decimal(0)
    if isinstance(judge, Embedder):
        if not cheap.strip() or not strong.strip():  # nothing to embed is not alike
            return "different", [], Decimal(0)
        reply = yield Call(judge.model, embedding_request(cheap, strong), "embed", endpoint)
        if isinstance(reply, Failure):
            return "unknown", [], Decimal(0)
        verdict, checked = _similar(judge, reply)
    else:
        ask_, swapped = judge_request(request, cheap, strong, judge.rubric, key)
        reply = yield Call(judge.model, ask_, "judge", endpoint)
        if isinstance(reply, Failure):
            return "unknown", [], Decimal(0)
        verdict, checked = parse_verdict(reply.text, swapped), ()
    judge.cache.put(key, verdict)
    cost = None
    if price is not None and reply.usage_known:
        cost = price.cost(reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens)
    purpose: Purpose = "embed" if embedder else "judge"
    return verdict, [Attempt.answered(reply, purpose, checked, usd(cost))], cost


def _similar(judge: Embedder, reply: Completion) -> tuple[Judgement, tuple[Verdict, ...]]:
    """The embedder's verdict on an embeddings reply, and the similarity as a Verdict (the
    record keeps it as the attempt's score)."""
    similarity = cosine(*reply.vectors) if len(reply.vectors) == 2 else None
    if similarity is None:
        why = f"{len(reply.vectors)} vectors, not two comparable ones"
        return "unknown", (Verdict("embedding", False, why),)
    passed = similarity >= judge.min
    why = f"cosine similarity {similarity:.4f} {'>=' if passed else '<'} min {judge.min:g}"
    verdict: Judgement = "equivalent" if passed else "different"
    return verdict, (Verdict("embedding", passed, why, similarity),)
