"""``cascade.wrap``: an openai client whose chat completions and Responses run the cascade.

::

    client = cascade.wrap(OpenAI(), task="support_summary")
    reply = client.chat.completions.create(model="gpt-4o", messages=[...])  # a ChatCompletion

    client = cascade.wrap(AsyncOpenAI())      # the task per call instead:
    await client.responses.create(input="...", extra_body={"cascade_task": "invoices"})

The wrapped client is an ``openai.OpenAI`` (``AsyncOpenAI``) with the given client's settings,
whose HTTP transport answers ``chat/completions`` and ``responses`` requests in-process with
the cascade; so ``create``, ``parse``, ``stream``, ``with_raw_response`` (the ``x-cascade-*``
headers), the SDK's own ``Stream``/``AsyncStream`` and exception types, and libraries that
take an openai client (``instructor.from_openai``) work as with the API itself.

- The task comes from ``wrap(task=...)`` or, per call, ``extra_body={"cascade_task": ...}``
  (which wins). With neither, the task is the policy whose ``match:`` the call meets, else
  one discovered from its fingerprint (``Cascade(discover=...)``); with discovery off, or a
  ``response_format`` schema that is not a valid JSON Schema, the call goes to the wrapped
  client's HTTP client unchanged.
- ``model=`` is ignored for a cascaded call: the task's policy chooses the models.
- Responses calls are translated into chat requests for every rung (``cascade.responses``);
  what the cascade cannot judge (``previous_response_id``, built-in tools, background) goes
  to the wrapped client unchanged, with ``x-cascade-passthrough`` saying why. Chat calls with
  ``n`` > 1 go to the task's strongest model, unjudged.
- ``stream=True``: the whole answer is produced and validated first, then replayed as the
  API's stream events, so the first chunk arrives when the whole answer is ready.
- Errors are the openai SDK's: ``BadRequestError`` for an invalid request or unknown task,
  ``InternalServerError`` (502, ``code: escalation_exhausted``) for an exhausted ladder with
  ``on_exhausted: raise``, the upstream's own status for a provider refusal; never retried.
- Every other request (``embeddings``, ``models``...) goes to the wrapped client's HTTP
  client unchanged.
- The cascade is the one given, or ``Cascade(client=the wrapped client)``
  (``async_client=`` for an async client), which reads policies and store from the
  environment. A given cascade uses its own clients, not the wrapped one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

import openai

from .._client import Cascade
from ._transport import AsyncCascadeTransport, CascadeTransport, Router, httpx

if TYPE_CHECKING:
    from collections.abc import Mapping


@overload
def wrap(
    client: openai.AsyncOpenAI, task: str | None = None, cascade: Cascade | None = None
) -> AsyncWrapped: ...
@overload
def wrap(
    client: openai.OpenAI, task: str | None = None, cascade: Cascade | None = None
) -> Wrapped: ...
def wrap(
    client: openai.OpenAI | openai.AsyncOpenAI,
    task: str | None = None,
    cascade: Cascade | None = None,
) -> Wrapped | AsyncWrapped:
    """Wrap an openai client so that its chat completions and Responses go through the cascade.

    Args:
        client: an ``OpenAI`` or ``AsyncOpenAI`` client.
        task: the task of every call (else per call: ``extra_body={"cascade_task": ...}``).
        cascade: the Cascade to run; default a new one around ``client``.
    Returns:
        A client of the same kind (sync or async). See the module docstring.
    """
    if isinstance(client, openai.AsyncOpenAI):
        return AsyncWrapped(client, task, cascade or Cascade(async_client=client))
    if isinstance(client, openai.OpenAI):
        return Wrapped(client, task, cascade or Cascade(client=client))
    raise TypeError(f"wrap() takes an openai.OpenAI or AsyncOpenAI client, got {client!r}")


def _settings(client: openai.OpenAI | openai.AsyncOpenAI) -> dict[str, Any]:
    """The constructor arguments that give a new client ``client``'s settings."""
    headers: Mapping[str, str] = getattr(client, "_custom_headers", None) or {}
    query: Mapping[str, object] = getattr(client, "_custom_query", None) or {}
    return {
        "api_key": client.api_key,
        "organization": client.organization,
        "project": client.project,
        "base_url": client.base_url,
        "timeout": client.timeout,
        "max_retries": client.max_retries,
        "default_headers": dict(headers) or None,
        "default_query": dict(query) or None,
    }


class Wrapped(openai.OpenAI):
    """A sync openai client whose chat completions and Responses run the cascade."""

    def __init__(self, client: openai.OpenAI, task: str | None, cascade: Cascade) -> None:
        self._inner = client
        self._task = task
        self.cascade = cascade
        router = Router(cascade, task, client.base_url)
        # The wrapped client's own HTTP client sends what the cascade does not answer.
        inner_http = getattr(client, "_client", None) or httpx.Client()
        transport = CascadeTransport(router, inner_http)
        super().__init__(**_settings(client), http_client=httpx.Client(transport=transport))

    def copy(self, **kwargs: Any) -> Wrapped:
        """A wrapped copy of the wrapped client with other settings (``with_options``)."""
        return Wrapped(self._inner.copy(**kwargs), self._task, self.cascade)

    with_options = copy

    def __repr__(self) -> str:
        return f"<cascade.wrap of {self._inner!r}>"


class AsyncWrapped(openai.AsyncOpenAI):
    """An async openai client whose chat completions and Responses run the cascade."""

    def __init__(self, client: openai.AsyncOpenAI, task: str | None, cascade: Cascade) -> None:
        self._inner = client
        self._task = task
        self.cascade = cascade
        router = Router(cascade, task, client.base_url)
        inner_http = getattr(client, "_client", None) or httpx.AsyncClient()
        transport = AsyncCascadeTransport(router, inner_http)
        super().__init__(**_settings(client), http_client=httpx.AsyncClient(transport=transport))

    def copy(self, **kwargs: Any) -> AsyncWrapped:
        """A wrapped copy of the wrapped client with other settings (``with_options``)."""
        return AsyncWrapped(self._inner.copy(**kwargs), self._task, self.cascade)

    with_options = copy

    def __repr__(self) -> str:
        return f"<cascade.wrap of {self._inner!r}>"


__all__ = ["AsyncWrapped", "Wrapped", "wrap"]
