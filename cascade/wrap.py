"""``cascade.wrap``: an openai client whose ``chat.completions.create`` runs the cascade.

::

    client = cascade.wrap(OpenAI(), task="support_summary")
    reply = client.chat.completions.create(model="gpt-4o", messages=[...])  # a ChatCompletion

    client = cascade.wrap(AsyncOpenAI())      # the task per call instead:
    await client.chat.completions.create(messages=[...], extra_body={"cascade_task": "invoices"})

- The task comes from ``wrap(task=...)`` or, per call, ``extra_body={"cascade_task": ...}``
  (which wins). With neither, the task is the policy whose ``match:`` the call meets, else
  one discovered from its fingerprint (``Cascade(discover=...)``); with discovery off, or a
  ``response_format`` schema that is not a valid JSON Schema, the call goes to the wrapped
  client unchanged.
- ``model=`` is accepted for compatibility and ignored: the task's policy chooses the models.
- ``stream=True`` works with the proxy's trade-off: the whole answer is produced and validated
  first, then replayed as ``ChatCompletionChunk`` objects (a plain iterator, or an async
  iterator for an async client), so the first chunk arrives when the whole answer is ready.
- Everything else (``embeddings``, ``models``, ``chat.completions.with_raw_response``,
  ``with_options``, attributes) is the wrapped client's own, untouched.
- The cascade is the one given, or ``Cascade(client=the wrapped client)``
  (``async_client=`` for an async client), which reads policies and store from the
  environment. A given cascade uses its own clients, not the wrapped one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

import openai
import structlog
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ._client import Cascade
from ._stream import chunks
from .validators import request_problem

_log = structlog.get_logger("cascade")

if TYPE_CHECKING:
    from .events import Result


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
    """Wrap an openai client so that its chat completions go through the cascade.

    Args:
        client: an ``OpenAI`` or ``AsyncOpenAI`` client.
        task: the task of every call (else per call: ``extra_body={"cascade_task": ...}``).
        cascade: the Cascade to run; default a new one around ``client``.
    Returns:
        A client of the same shape (sync or async). See the module docstring.
    """
    if isinstance(client, openai.AsyncOpenAI):
        return AsyncWrapped(client, task, cascade or Cascade(async_client=client))
    if isinstance(client, openai.OpenAI):
        return Wrapped(client, task, cascade or Cascade(client=client))
    raise TypeError(f"wrap() takes an openai.OpenAI or AsyncOpenAI client, got {client!r}")


class _Proxying:
    """Every attribute not defined here is the wrapped object's."""

    _inner: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<cascade.wrap of {self._inner!r}>"


class Wrapped(_Proxying):
    """A sync openai client whose ``chat.completions.create`` runs the cascade."""

    def __init__(self, client: openai.OpenAI, task: str | None, cascade: Cascade) -> None:
        self._inner = client
        self.cascade = cascade
        self.chat = _Chat(client.chat, _Completions(client.chat.completions, task, cascade))


class AsyncWrapped(_Proxying):
    """An async openai client whose ``chat.completions.create`` runs the cascade."""

    def __init__(self, client: openai.AsyncOpenAI, task: str | None, cascade: Cascade) -> None:
        self._inner = client
        self.cascade = cascade
        self.chat = _Chat(client.chat, _AsyncCompletions(client.chat.completions, task, cascade))


class _Chat(_Proxying):
    def __init__(self, inner: Any, completions: Any) -> None:
        self._inner = inner
        self.completions = completions


def _split(task: str | None, kwargs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The call's task, and its arguments without the ones the cascade owns."""
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping) and "cascade_task" in extra:
        rest = {k: v for k, v in extra.items() if k != "cascade_task"}
        kwargs = (
            {**kwargs, "extra_body": rest}
            if rest
            else {k: v for k, v in kwargs.items() if k != "extra_body"}
        )
        task = extra["cascade_task"] or task
    return task, kwargs


def _routed(cascade: Cascade, kwargs: dict[str, Any]) -> str | None:
    """The task of a call that names none (a policy's ``match:``, else discovered), or
    None: the call goes to the wrapped client, as does one whose ``response_format``
    schema the cascade cannot judge."""
    routed = cascade.route(kwargs.get("messages"), kwargs, kwargs.get("model"))
    if routed is None:
        return None
    problem = request_problem(kwargs) if "response_format" in kwargs else None
    if problem is not None:
        _log.warning("cascade.unvalidated", task=routed.task, reason=problem)
        return None
    return routed.task


def _cascade_args(kwargs: dict[str, Any]) -> tuple[Any, bool, bool, dict[str, Any]]:
    """messages, stream?, include usage?, and the rest for ``Cascade.run``."""
    params = {k: v for k, v in kwargs.items() if k not in ("model", "stream", "stream_options")}
    messages = params.pop("messages", None)
    options = kwargs.get("stream_options")
    usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return messages, kwargs.get("stream") is True, usage, params


def _chunk_objects(result: Result, include_usage: bool) -> Iterator[ChatCompletionChunk]:
    data = result.completion.model_dump(exclude_unset=True)
    for c in chunks(data, include_usage=include_usage):
        yield ChatCompletionChunk.model_validate(c)


class _Completions(_Proxying):
    def __init__(self, inner: Any, task: str | None, cascade: Cascade) -> None:
        self._inner = inner
        self._task = task
        self._cascade = cascade

    def create(self, **kwargs: Any) -> ChatCompletion | Iterator[ChatCompletionChunk] | Any:
        """Run the cascade for the call's task (see the module docstring), else pass through."""
        task, kwargs = _split(self._task, kwargs)
        task = task or _routed(self._cascade, kwargs)
        if task is None:
            return self._inner.create(**kwargs)
        messages, stream, usage, params = _cascade_args(kwargs)
        result = self._cascade.run(task, messages, **params)
        if stream:
            return _chunk_objects(result, usage)
        completion: ChatCompletion = result.completion
        return completion


class _AsyncCompletions(_Proxying):
    def __init__(self, inner: Any, task: str | None, cascade: Cascade) -> None:
        self._inner = inner
        self._task = task
        self._cascade = cascade

    async def create(
        self, **kwargs: Any
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk] | Any:
        """Run the cascade for the call's task (see the module docstring), else pass through."""
        task, kwargs = _split(self._task, kwargs)
        task = task or _routed(self._cascade, kwargs)
        if task is None:
            return await self._inner.create(**kwargs)
        messages, stream, usage, params = _cascade_args(kwargs)
        result = await self._cascade.arun(task, messages, **params)
        if stream:
            return _async_chunks(_chunk_objects(result, usage))
        completion: ChatCompletion = result.completion
        return completion


async def _async_chunks(items: Iterator[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    for item in items:
        yield item


__all__ = ["AsyncWrapped", "Wrapped", "wrap"]
