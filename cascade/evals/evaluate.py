"""Offline evaluation: the cheap model alone, the strong model alone and the cascade, on labelled
examples, scored against references.

A labelled example is one JSON object per line: ``{"messages": [...], "reference": "...",
"id": "optional", "params": {optional create() arguments}}``. ``evaluate`` runs every example
three times through copies of the task's policy (``mode`` set to ``cheap``, ``strong`` and
``cascade``) with bounded concurrency on the async client, and scores each answer against
the reference with the policy's agreement comparator (or ``scorer``). The records of these
runs go to a private in-memory store.

``EvalReport.to_dict()`` (``cascade eval --format json``) has this shape::

    {"task": str, "n": int, "margin": float, "verdict": "route" | "do not route",
     "relative_quality": float | null,       # cascade quality / strong quality
     "relative_cost": float | null,          # cascade cost / strong cost
     "modes": {"cheap" | "strong" | "cascade": {
         "quality": float, "agreement_with_strong": float | null,
         "cost_usd": float | null, "cost_per_1k_usd": float | null,
         "escalation_rate": float, "errors": int}},
     "examples": [{"id": str, "cheap": ROW, "strong": ROW, "cascade": ROW}]}
    ROW = {"output": str, "model": str | null, "correct": bool, "agrees_with_strong": bool | null,
           "escalated": bool, "cost_usd": float | null, "error": str | null}
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._client import Cascade
from ..compare import AgreementSpec, Comparator, comparator
from ..events import Result
from ..exceptions import CascadeError
from ..policy import Policy, PolicySet
from ..transports import OpenAITransport, Transport
from ..transports.sdk import async_twin

if TYPE_CHECKING:
    from .._engine import Call, Reply

__all__ = [
    "EvalReport",
    "Example",
    "ModeSummary",
    "Outcome",
    "aevaluate",
    "evaluate",
    "load_examples",
    "run_each",
    "run_mode",
    "with_mode",
]

MODES = ("cheap", "strong", "cascade")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Example:
    """One example: the request's messages, the reference answer (``""`` for an unlabelled
    request, as ``cascade batch`` reads them), any other ``create()`` arguments for this
    request (``params``), and ``labels``: whether each model's answer is right, by model
    name, where someone judged them (``{"gpt-4o-mini": true, "gpt-4o": false}``)."""

    id: str
    messages: Sequence[Mapping[str, Any]]
    reference: str
    params: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One example under one mode: the answer, how it scored, what it cost."""

    output: str
    model: str | None
    correct: bool
    agrees_with_strong: bool | None
    escalated: bool
    cost_usd: float | None
    error: str | None = None
    result: Result | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON row (see the module docstring)."""
        return {
            "output": self.output,
            "model": self.model,
            "correct": self.correct,
            "agrees_with_strong": self.agrees_with_strong,
            "escalated": self.escalated,
            "cost_usd": self.cost_usd,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class ModeSummary:
    """Quality and cost of one mode over all the examples."""

    mode: str
    quality: float
    agreement_with_strong: float | None
    cost_usd: float | None
    escalation_rate: float
    errors: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary (see the module docstring)."""
        per_1k = None if self.cost_usd is None or not self.n else self.cost_usd / self.n * 1000
        return {
            "quality": self.quality,
            "agreement_with_strong": self.agreement_with_strong,
            "cost_usd": self.cost_usd,
            "cost_per_1k_usd": per_1k,
            "escalation_rate": self.escalation_rate,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Three modes on the same examples, and whether the cascade is worth routing to."""

    task: str
    margin: float
    examples: tuple[Example, ...]
    outcomes: Mapping[str, tuple[Outcome, ...]]
    summaries: Mapping[str, ModeSummary]

    @property
    def relative_quality(self) -> float | None:
        """The cascade's quality as a share of the strong model's."""
        strong = self.summaries["strong"].quality
        return self.summaries["cascade"].quality / strong if strong else None

    @property
    def relative_cost(self) -> float | None:
        """The cascade's cost as a share of the strong model's."""
        a, b = self.summaries["cascade"].cost_usd, self.summaries["strong"].cost_usd
        return a / b if a is not None and b else None

    @property
    def verdict(self) -> str:
        """``route`` when the cascade's quality is within ``margin`` (relative) of the strong
        model's, else ``do not route``."""
        rq = self.relative_quality
        ok = rq is None or rq >= 1 - self.margin - 1e-12
        return "route" if ok else "do not route"

    def to_dict(self) -> dict[str, Any]:
        """The ``--format json`` document (schema in the module docstring)."""
        return {
            "task": self.task,
            "n": len(self.examples),
            "margin": self.margin,
            "verdict": self.verdict,
            "relative_quality": self.relative_quality,
            "relative_cost": self.relative_cost,
            "modes": {m: self.summaries[m].to_dict() for m in MODES},
            "examples": [
                {"id": ex.id, **{m: self.outcomes[m][i].to_dict() for m in MODES}}
                for i, ex in enumerate(self.examples)
            ],
        }


def load_examples(path: str | Path, *, labelled: bool = True) -> list[Example]:
    """Read examples from a JSONL file; with ``labelled=False`` the ``reference`` may be
    absent. Raises ValueError naming the line and the field."""
    out: list[Example] = []
    with Path(path).open(encoding="utf-8") as lines:
        rows = [(no, line) for no, line in enumerate(lines, 1) if line.strip()]
    for no, line in rows:
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{no}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{no}: need a JSON object, got {type(row).__name__}")
        labels = row.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, bool) for v in labels.values()):
            raise ValueError(f"{path}:{no}: labels: need an object of model name -> true/false")
        default = None if labelled and not labels else ""
        messages, reference = row.get("messages"), row.get("reference", default)
        params = row.get("params") or {}
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{path}:{no}: messages: need a non-empty list of messages")
        if not isinstance(reference, str):
            raise ValueError(f"{path}:{no}: reference: need a string, got {reference!r:.40}")
        if not isinstance(params, dict):
            raise ValueError(f"{path}:{no}: params: need an object of create() arguments")
        out.append(Example(str(row.get("id", no)), messages, reference, params, labels))
    return out


def with_mode(policy: Policy, mode: str) -> Policy:
    """A copy of ``policy`` whose ``mode`` is ``mode`` (cheap, strong, cascade or observe)."""
    return policy.with_changes(mode=mode)


def _runner(cascade: Cascade, policy: Policy) -> Cascade:
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
    runner = _runner(cascade, with_mode(policy, mode))
    try:
        return await run_each(
            runner, policy.task, examples, concurrency=concurrency, progress=progress, label=mode
        )
    finally:
        await runner.aclose()


def _outcome(
    got: Result | CascadeError,
    reference: str,
    strong: str | None,
    score: Comparator,
    spec: AgreementSpec,
) -> Outcome:
    result = got if isinstance(got, Result) else getattr(got, "result", None)
    if result is None:
        return Outcome("", None, False, None, False, None, str(got))
    error = None if isinstance(got, Result) else str(got)
    text = result.output
    return Outcome(
        output=text,
        model=result.model,
        correct=error is None and score(text, reference, spec),
        agrees_with_strong=None if strong is None else score(text, strong, spec),
        escalated=result.escalated,
        cost_usd=result.cost_usd,
        error=error,
        result=result,
    )


def _summary(mode: str, rows: Sequence[Outcome]) -> ModeSummary:
    n = len(rows)
    agree = [r.agrees_with_strong for r in rows if r.agrees_with_strong is not None]
    costs = [r.cost_usd for r in rows]
    return ModeSummary(
        mode=mode,
        quality=sum(r.correct for r in rows) / n if n else 0.0,
        agreement_with_strong=sum(agree) / len(agree) if agree else None,
        cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        escalation_rate=sum(r.escalated for r in rows) / n if n else 0.0,
        errors=sum(r.error is not None for r in rows),
        n=n,
    )


def scorer_of(policy: Policy, name: str | None = None) -> tuple[Comparator, AgreementSpec]:
    """The comparator scoring answers: ``name`` if given (a registered comparator, or
    ``module:function`` taking ``(answer, reference, spec)`` and returning a bool), else the
    policy's agreement one (for ``judge`` and ``embedding``, its ``prefilter``: references
    are text).
    Raises LookupError for an unknown name or a path that does not load."""
    spec = policy.spec.agreement
    if name is not None and ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn: Comparator = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise LookupError(f"cannot load the scorer {name!r}: {e}") from None
        return fn, spec
    if name is not None:
        spec = spec.model_copy(update={"comparator": name})
    elif spec.comparator in ("judge", "embedding"):
        spec = spec.model_copy(update={"comparator": spec.prefilter})
    return comparator(spec.comparator), spec


async def aevaluate(
    cascade: Cascade,
    task: str,
    examples: Iterable[Example],
    *,
    scorer: str | None = None,
    margin: float = 0.05,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> EvalReport:
    """Evaluate ``task`` on ``examples`` in the three modes. See the module docstring.

    Args:
        scorer: a registered comparator name; default the policy's ``agreement`` comparator.
        margin: the relative quality loss still worth routing for (0.05 = 5%).
    Raises UnknownTaskError / PolicyError for the task, LookupError for an unknown scorer.
    """
    policy = cascade.policies.get(task)
    score, spec = scorer_of(policy, scorer)
    exs = tuple(examples)
    runs = {}
    for mode in ("strong", "cheap", "cascade"):
        runs[mode] = await run_mode(
            cascade, policy, exs, mode, concurrency=concurrency, progress=progress
        )
    strong_text = [r.output if isinstance(r, Result) else None for r in runs["strong"]]
    outcomes = {
        m: tuple(
            _outcome(got, ex.reference, None if m == "strong" else strong_text[i], score, spec)
            for i, (ex, got) in enumerate(zip(exs, runs[m], strict=True))
        )
        for m in MODES
    }
    return EvalReport(task, margin, exs, outcomes, {m: _summary(m, outcomes[m]) for m in MODES})


def evaluate(
    cascade: Cascade, task: str, examples: Iterable[Example], **options: Any
) -> EvalReport:
    """``aevaluate`` from synchronous code (starts its own event loop)."""
    return asyncio.run(aevaluate(cascade, task, examples, **options))
