"""``Cascade``: the sync and async drivers of the engine, and the process-wide default."""

from __future__ import annotations

import asyncio
import contextvars
import os
import random
import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from . import _engine
from ._logging import get_logger
from ._request import make_request
from .discovery import Routed, Router, name_of
from .exceptions import EscalationExhausted, InvalidRequestError
from .policy import Policy, PolicySet
from .recording import build_record
from .stores import Store, store_from_url
from .telemetry import calls, tracing
from .transports import OpenAITransport, Transport
from .transports.sdk import accepted_result

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence
    from pathlib import Path

    import openai

    from .events import Observation, Request, Result

_log = get_logger()
_T = TypeVar("_T")


class Cascade:
    """Runs tasks through their policies: cheap model first, escalating on failed checks.

    Args:
        policies: a directory of ``<task>.yaml`` files (default: ``$CASCADE_POLICIES`` or
            ``./policies``) or a ``PolicySet``.
        client / async_client: openai clients; created from the environment on first use
            when not given (an async client is derived from ``client`` when only it is given).
        transport: how model calls are made (a ``cascade.transports.Transport``), instead of
            ``client``/``async_client``: ``DirectTransport``, or your own. Closed with the
            Cascade.
        store: a store URL (``memory://``, ``sqlite:///path``, ``redis://...``) or a Store;
            default ``$CASCADE_STORE``, else the embedded SQLite file.
        validators: extra validator types by name, for these policies only.
        discover: the policy fields of tasks discovered from traffic (``run(None, ...)``),
            over ``cascade.discovery.DEFAULTS`` (``mode: observe``, ``escalate_status:
            [400]``); True: the defaults; False: no discovery (a call must name its task or
            match a policy's ``match:``).
    """

    def __init__(
        self,
        policies: str | Path | PolicySet | None = None,
        *,
        client: openai.OpenAI | None = None,
        async_client: openai.AsyncOpenAI | None = None,
        store: str | Store | None = None,
        validators: Mapping[str, Any] | None = None,
        transport: Transport | None = None,
        discover: bool | Mapping[str, Any] = True,
    ) -> None:
        if isinstance(policies, PolicySet):
            self.policies = policies
        else:
            where = policies or os.environ.get("CASCADE_POLICIES") or "policies"
            self.policies = PolicySet(where, validators=validators)
        if transport is not None and (client is not None or async_client is not None):
            raise TypeError("give Cascade a transport or clients, not both")
        self.transport: Transport = transport or OpenAITransport(client, async_client)
        self._store_spec = store
        self._store: Store | None = store if not isinstance(store, (str, type(None))) else None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._discover = discover
        self._router: Router | None = None

    # -- the drivers: perform the engine's calls, nothing else ---------------------------

    def _drive(self, flow: Generator[_engine.Call, _engine.Reply, _T]) -> _T:
        perform = tracing.traced(self.transport.call)  # a span per call, when tracing
        try:
            call = next(flow)
            while True:
                call = flow.send(perform(call))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            flow.close()  # a call that raised leaves the engine suspended: end it here

    async def _adrive(self, flow: Generator[_engine.Call, _engine.Reply, _T]) -> _T:
        perform = tracing.traced_async(self.transport.acall)
        try:
            call = next(flow)
            while True:
                call = flow.send(await perform(call))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            flow.close()

    def run(
        self, task: str | Routed | None, messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> Result:
        """Answer ``messages`` for ``task``; other ``chat.completions.create`` args pass through.

        ``task`` is a policy file's name, or what ``route`` returned for this request. With
        ``task=None`` the task is the policy whose ``match:`` the request meets, else
        one discovered from the request's fingerprint (see ``route``); ``model``, the model
        the application would have called, is then accepted and is part of the fingerprint.
        A discovered task's name alone does not select its policy (names are for display and
        may collide; the router keeps discovered tasks by the full digest).
        Raises UnknownTaskError, PolicyError, InvalidRequestError (before any call),
        ProviderError, EscalationExhausted (when the policy says ``on_exhausted: raise``).
        """
        tracer = tracing.tracer()
        if tracer is None:
            return self._run(task, messages, params)
        with tracing.call_span(tracer, name_of(task)) as span:  # parent: the caller's span
            result = self._run(task, messages, params)
            tracing.finished(span, result)
            return result

    def _run(
        self, task: str | Routed | None, messages: Sequence[Mapping[str, Any]], params: Any
    ) -> Result:
        policy, request, start = self._begin(task, messages, params)
        strong: Future[Result] | None = None
        if self._observing(policy):  # the cheap model runs beside, off the caller's path
            strong = Future()
            beside = contextvars.copy_context()  # its spans are the call's children too
            self._executor().submit(beside.run, self._observe, policy, request, strong, start)
        try:
            result = self._drive(_engine.run(policy, request))
        except BaseException as e:
            self._failed(policy, request, e, strong, start)
            raise
        return self._answered(policy, request, result, strong, start)

    async def arun(
        self, task: str | Routed | None, messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> Result:
        """``run`` for asyncio: the same engine, calls made with the async client."""
        tracer = tracing.tracer()
        if tracer is None:
            return await self._arun(task, messages, params)
        with tracing.call_span(tracer, name_of(task)) as span:
            result = await self._arun(task, messages, params)
            tracing.finished(span, result)
            return result

    async def _arun(
        self, task: str | Routed | None, messages: Sequence[Mapping[str, Any]], params: Any
    ) -> Result:
        policy, request, start = self._begin(task, messages, params)
        strong: asyncio.Future[Result] | None = None
        if self._observing(policy):  # the cheap model runs concurrently, as a task
            strong = asyncio.get_running_loop().create_future()
            task_ = asyncio.ensure_future(self._aobserve(policy, request, strong, start))
            self._tasks.add(task_)
            task_.add_done_callback(self._tasks.discard)
        try:
            result = await self._adrive(_engine.run(policy, request))
        except BaseException as e:
            self._failed(policy, request, e, strong, start)
            raise
        return self._answered(policy, request, result, strong, start)

    def _failed(
        self,
        policy: Policy,
        request: Request,
        error: BaseException,
        strong: Future[Result] | asyncio.Future[Result] | None,
        start: float,
    ) -> None:
        calls.failed(policy.task, error)
        if strong is not None:
            strong.cancel()  # the observation has nothing to compare with
        if isinstance(error, EscalationExhausted):  # recorded, answered or not
            self._finish(policy, request, error.result or error.unanswered, start)

    def _answered(
        self,
        policy: Policy,
        request: Request,
        result: Result,
        strong: Future[Result] | asyncio.Future[Result] | None,
        start: float,
    ) -> Result:
        if strong is None:
            return self._finish(policy, request, result, start)
        strong.set_result(result)  # the observation records both answers when it ends
        return accepted_result(result)

    def _observe(
        self, policy: Policy, request: Request, strong: Future[Result], start: float
    ) -> None:
        cheap = self._drive(_engine.shadow(policy, request))
        try:
            answer = strong.result()
        except CancelledError:
            return  # the strong model failed the caller: nothing to compare with
        seen = self._drive(_engine.observation(policy, request, answer, cheap))
        self._finish_observed(policy, request, seen, start)

    async def _aobserve(
        self, policy: Policy, request: Request, strong: asyncio.Future[Result], start: float
    ) -> None:
        cheap = await self._adrive(_engine.shadow(policy, request))
        try:
            answer = await strong
        except asyncio.CancelledError:
            return
        seen = await self._adrive(_engine.observation(policy, request, answer, cheap))
        self._finish_observed(policy, request, seen, start)

    async def drain(self) -> None:
        """Wait for the observations still running beside answered async calls."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- shared by both drivers ----------------------------------------------------------

    def route(self, messages: Any, params: Mapping[str, Any], model: Any = None) -> Routed | None:
        """The task of a request that names none: the first policy whose ``match:`` it meets,
        else (unless ``discover=False``) a task discovered from its fingerprint, run under
        the discovery defaults. None when neither applies. ``model`` is the requested model."""
        return (self._router or self.router()).route(messages, params, model)

    def router(self) -> Router:
        """The ``Router`` of ``route``, built on first use: it compiles every policy file (to
        find the ``match:``es) and the discovery defaults. Raises ``PolicyError`` when the
        defaults do not compile (a rung naming an unknown provider)."""
        if self._router is None:
            with self._lock:
                if self._router is None:
                    self._router = Router.build(self.policies, self._discover, Policy.from_dict)
        return self._router

    def _begin(
        self, task: str | Routed | None, messages: Any, params: dict[str, Any]
    ) -> tuple[Policy, Request, float]:
        start = time.perf_counter()
        if task is None:
            routed = self.route(messages, params, params.pop("model", None))
            if routed is None:
                raise InvalidRequestError("no task: name one, or let Cascade(discover=True)")
            policy = routed.policy
        elif isinstance(task, Routed):
            policy = task.policy
        else:
            policy = self.policies.get(task)
        self._store or self.store  # noqa: B018  # made before any paid call: a bad URL raises
        return policy, make_request(policy.task, messages, params, policy.spec.params), start

    def _observing(self, policy: Policy) -> bool:
        spec = policy.spec
        return spec.mode == "observe" and (
            spec.observe_sample >= 1.0 or random.random() < spec.observe_sample
        )

    def _finish(
        self, policy: Policy, request: Request, result: Result | None, start: float
    ) -> Result:
        if result is None:
            return result  # type: ignore[return-value]  # exhausted with no answer at all
        result = accepted_result(result)
        latency = time.perf_counter() - start
        self._record(policy, request, result, latency)
        calls.answered(result, latency)
        return result

    def _finish_observed(
        self,
        policy: Policy,
        request: Request,
        observed: tuple[Result, Observation],
        start: float,
    ) -> None:
        combined, seen = observed
        latency = time.perf_counter() - start
        self._record(policy, request, combined, latency, observation=seen)
        calls.observed(combined, seen, latency)

    def _record(
        self,
        policy: Policy,
        request: Request,
        result: Result,
        latency: float,
        observation: Observation | None = None,
    ) -> None:
        spec = policy.spec
        extra = self._router.record_extra(policy) if self._router is not None else None
        if result.start_rule is not None:  # pre-routed: the report can tell these apart
            extra = {**(extra or {}), "start_at": result.start_rule}
            if result.start_p is not None:
                extra["start_p"] = round(result.start_p, 6)
        record = build_record(
            result,
            request.messages,
            latency_s=latency,
            store_inputs=spec.store_inputs,
            store_outputs=spec.store_outputs,
            sample_passes=1.0 if observation else spec.sample_passes,
            stored_output_chars=spec.stored_output_chars,
            extra=extra,
            observation=observation,
        )
        try:
            self.store.add(record)
        except Exception:  # a store's bug must not fail a call that was answered and paid for
            _log.exception("cascade.store_failed", task=policy.task, id=record.id)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(4, thread_name_prefix="cascade-observe")
        return self._pool

    # -- lazily built parts --------------------------------------------------------------

    @property
    def store(self) -> Store:
        """Where call records go, made at first use; ``ValueError`` for a bad URL."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    spec = self._store_spec if isinstance(self._store_spec, str) else None
                    self._store = store_from_url(spec or os.environ.get("CASCADE_STORE"))
        return self._store

    def close(self) -> None:
        """Finish running observations, flush and release the store, and close the
        transport's sync side (clients the Cascade created). Async users call ``aclose``."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._store is not None:
            self._store.close()
        self.transport.close()

    async def aclose(self) -> None:
        """``close`` for asyncio: also waits for running observations and closes the
        transport's async side."""
        await self.drain()
        await self.transport.aclose()
        self.close()

    def __enter__(self) -> Cascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Cascade:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_default: Cascade | None = None
_default_lock = threading.Lock()


def default() -> Cascade:
    """The process-wide Cascade configured from the environment: CASCADE_POLICIES,
    CASCADE_STORE, and the openai SDK's OPENAI_API_KEY / OPENAI_BASE_URL."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Cascade()
    return _default


def run(task: str | None, messages: Sequence[Mapping[str, Any]], **params: Any) -> Result:
    """Run ``task`` on the default Cascade. See ``Cascade.run``."""
    return default().run(task, messages, **params)


async def arun(task: str | None, messages: Sequence[Mapping[str, Any]], **params: Any) -> Result:
    """Run ``task`` on the default Cascade with the async client. See ``Cascade.arun``."""
    return await default().arun(task, messages, **params)
