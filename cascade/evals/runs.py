"""Running examples through a task's policy in one mode, on a private copy of the cascade."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._client import Cascade
from ..exceptions import CascadeError
from ..policy import Policy, PolicySet
from ..transports import OpenAITransport, Transport
from ..transports.sdk import async_twin

if TYPE_CHECKING:
    from ..events import Call, Reply, Result
    from .evaluate import Example

__all__ = ["Progress", "run_each", "run_mode", "runner", "with_mode"]

Progress = Callable[[str, int, int], None]


def with_mode(policy: Policy, mode: str) -> Policy:
    """A copy of ``policy`` whose ``mode`` is ``mode`` (cheap, strong, cascade or observe)."""
    return policy.with_changes(mode=mode)


def runner(cascade: Cascade, policy: Policy) -> Cascade:
    """A Cascade running ``policy`` over ``cascade``'s transport, recording in memory. An
    openai SDK transport is copied (closed after the run, so no connection outlives the event
    loop); any other transport is shared, and left open."""
    policies = PolicySet(cascade.policies.directory, validators=policy.extra_validators)
    policies.add(policy)
    transport = cascade.transport
    if isinstance(transport, OpenAITransport):
        # A new connection pool: openai's copy() would share (and close) the client's.
        fresh = OpenAITransport(async_client=async_twin(transport.async_client), owned=True)
        return Cascade(policies, transport=fresh, store="memory://")
    return Cascade(policies, transport=_Borrowed(transport), store="memory://")


class _Borrowed:
    """A transport used for one run and not closed after it: its owner closes it."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def call(self, call: Call) -> Reply:
        return self._transport.call(call)

    async def acall(self, call: Call) -> Reply:
        return await self._transport.acall(call)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def run_each(
    cascade: Cascade,
    task: str,
    examples: Sequence[Example],
    *,
    concurrency: int = 8,
    progress: Progress | None = None,
    label: str | None = None,
) -> list[Result | CascadeError]:
    """Every example through ``cascade.arun(task, ...)``, at most ``concurrency`` at a time,
    results in the examples' order; a failed call gives its error. ``progress`` is called
    with ``label`` (default: the task), the number done and the total after each."""
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(ex: Example) -> Result | CascadeError:
        nonlocal done
        async with gate:
            try:
                return await cascade.arun(task, ex.messages, **ex.params)
            except CascadeError as e:
                return e
            finally:
                done += 1
                if progress is not None:
                    progress(label or task, done, len(examples))

    return list(await asyncio.gather(*(one(ex) for ex in examples)))


async def run_mode(
    cascade: Cascade,
    policy: Policy,
    examples: Sequence[Example],
    mode: str,
    *,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> list[Result | CascadeError]:
    """Run every example through ``policy`` in ``mode``; a failed call gives its error."""
    run = runner(cascade, with_mode(policy, mode))
    try:
        return await run_each(
            run, policy.task, examples, concurrency=concurrency, progress=progress, label=mode
        )
    finally:
        await run.aclose()
