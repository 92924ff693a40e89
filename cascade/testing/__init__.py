"""Test doubles: a local OpenAI-compatible server that answers from scripted replies.

Point the real ``openai`` SDK at it (``server.client()``, or ``base_url=server.base_url``)
to test code that calls chat completions without calling any API::

    with ScriptedServer() as server:
        server.script("gpt-4o-mini", "not json").script("gpt-4o", '{"total": 10}')
        server.fail("gpt-4o-mini", 429)           # the next call to gpt-4o-mini is rate limited
        client = server.client()
        ...
        assert [r["model"] for r in server.calls()] == [...]

It serves ``POST /v1/chat/completions`` (whole answers or SSE streams, with usage and
logprobs), Azure's ``POST /openai/deployments/NAME/chat/completions`` (``azure_endpoint=
server.url``), ``POST /v1/responses`` (the same rules, answering the request's input as a
chat request; the Response whole or as its events), ``POST /v1/embeddings`` (deterministic
bag-of-words vectors: answers made of the same words are alike; a ``fail()`` for the model
applies) and ``GET /v1/models``; anything else is a
404 with OpenAI's error JSON. Every request is kept in ``server.requests`` with its headers
(``"_headers"``), so a test can check which key reached which server.
"""

from __future__ import annotations

from .replay import ReplayServer, load_recorded, load_routellm, record_tag, request_of
from .scripted import Reply, ScriptedServer

__all__ = [
    "ReplayServer",
    "Reply",
    "ScriptedServer",
    "load_recorded",
    "load_routellm",
    "record_tag",
    "request_of",
]
