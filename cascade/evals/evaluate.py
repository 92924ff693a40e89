"""Offline evaluation: the cheap model alone, the strong model alone and the cascade, on labelled
examples, scored against references.

A labelled example is one JSON object per line: ``{"messages": [...], "reference": "...",
"id": "optional", "params": {optional create() arguments}}``. ``evaluate`` runs every example
three times through copies of the task's policy (``mode`` set to ``cheap``, ``strong`` and
``cascade``) with bounded concurrency on the async client, and scores each answer against
the reference with the policy's agreement comparator (or ``scorer``); an example's ``labels``
score the answers of the models they name instead. The records of these runs go to a private
in-memory store.

``EvalReport.to_dict()`` (``cascade eval --format json``) has this shape::

    {"task": str, "n": int, "margin": float, "verdict": "route" | "do not route" | "unknown",
     "relative_quality": float | null,       # cascade quality / strong quality
     "relative_cost": float | null,          # cascade cost / strong cost
     "scoring": {"by": str, "judge": str | null, "graded": int, "unknown": int,
                 "judge_cost_usd": float | null},   # unknown: grades counted as wrong
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
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..events import Result
from .runs import Progress, run_each, run_mode, with_mode
from .scoring import Scoring, scorer_of, scoring_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .._client import Cascade
    from ..compare import AgreementSpec, Comparator
    from ..exceptions import CascadeError
    from .code import CodeLimits

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
    "scorer_of",
    "with_mode",
]

MODES = ("cheap", "strong", "cascade")


@dataclass(frozen=True, slots=True)
class Example:
    """One example: the request's messages, the reference answer (``""`` for an unlabelled
    request, as ``cascade batch`` reads them), any other ``create()`` arguments for this
    request (``params``), ``labels``: whether each model's answer is right, by model
    name, where someone judged them (``{"gpt-4o-mini": true, "gpt-4o": false}``), and
    ``tests``: Python source with asserts run against an answer's code (``scorer code``; a
    list of strings in the file is joined by newlines)."""

    id: str
    messages: Sequence[Mapping[str, Any]]
    reference: str
    params: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, bool] = field(default_factory=dict)
    tests: str = ""


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
    scoring: Scoring | None = None

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
        model's, ``do not route`` when it is not, ``unknown`` when the strong model scored no
        answer right (there is nothing to be within a share of)."""
        rq = self.relative_quality
        if rq is None:
            return "unknown"
        return "route" if rq >= 1 - self.margin - 1e-12 else "do not route"

    @property
    def scored_by(self) -> str:
        """What scored the answers, as the table and the JSON say it."""
        by = "" if self.scoring is None else self.scoring.name
        return f"labels where given, else {by}" if any(e.labels for e in self.examples) else by

    def _scoring(self, scoring: Scoring) -> dict[str, Any]:
        return {**scoring.to_dict(), "by": self.scored_by}

    def to_dict(self) -> dict[str, Any]:
        """The ``--format json`` document (schema in the module docstring)."""
        return {
            "task": self.task,
            "n": len(self.examples),
            "margin": self.margin,
            "verdict": self.verdict,
            "relative_quality": self.relative_quality,
            "relative_cost": self.relative_cost,
            "scoring": None if self.scoring is None else self._scoring(self.scoring),
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
        tests = row.get("tests", "")
        if isinstance(tests, list) and all(isinstance(t, str) for t in tests):
            tests = "\n".join(tests)
        if not isinstance(tests, str):
            raise ValueError(f"{path}:{no}: tests: need Python source, or a list of lines")
        default = None if labelled and not labels and not tests else ""
        messages, reference = row.get("messages"), row.get("reference", default)
        params = row.get("params") or {}
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{path}:{no}: messages: need a non-empty list of messages")
        if not isinstance(reference, str):
            raise ValueError(f"{path}:{no}: reference: need a string, got {reference!r:.40}")
        if not isinstance(params, dict):
            raise ValueError(f"{path}:{no}: params: need an object of create() arguments")
        out.append(Example(str(row.get("id", no)), messages, reference, params, labels, tests))
    return out


def _label(ex: Example, got: Result | CascadeError, judged: bool) -> bool | None:
    """The example's label for the model whose answer ``got`` is (None: the scorer decides).
    An example with labels and nothing else to score by (no reference, no tests, no judge)
    counts an answer of a model it does not label as wrong: nothing could make it right."""
    result, _ = _answer(got)
    if result is None or not ex.labels:
        return None
    label = ex.labels.get(result.model)
    if label is None and not ex.reference and not ex.tests and not judged:
        return False
    return label


def _answer(got: Result | CascadeError) -> tuple[Result | None, str | None]:
    """The result of a run (an exhausted call's too) and its answer (None: it failed)."""
    if isinstance(got, Result):
        return got, got.output
    return getattr(got, "result", None), None


def _outcome(
    got: Result | CascadeError,
    correct: bool,
    strong: str | None,
    agree: Comparator,
    spec: AgreementSpec,
) -> Outcome:
    result, _ = _answer(got)
    if result is None:
        return Outcome("", None, False, None, False, None, str(got))
    error = None if isinstance(got, Result) else str(got)
    text = result.output
    return Outcome(
        output=text,
        model=result.model,
        correct=error is None and correct,
        agrees_with_strong=None if strong is None else agree(text, strong, spec),
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


async def aevaluate(
    cascade: Cascade,
    task: str,
    examples: Iterable[Example],
    *,
    scorer: str | None = None,
    judge: str | None = None,
    rubric: str | None = None,
    limits: CodeLimits | None = None,
    margin: float = 0.05,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> EvalReport:
    """Evaluate ``task`` on ``examples`` in the three modes. See the module docstring.

    Args:
        scorer: a registered comparator name, ``module:function``, or ``code`` (each
            example's ``tests``); default the policy's ``agreement`` comparator, and the
            tests of the examples that have them (``cascade.evals.scoring``).
        judge, rubric: grade every answer no label scores with this judge model (and rubric text).
        limits: the code scorer's CPU, wall-clock, memory and file limits.
        margin: the relative quality loss still worth routing for (0.05 = 5%).
    Raises UnknownTaskError / PolicyError for the task, ScorerError (a LookupError) for an
    unknown scorer, ValueError for a judge with a scorer or a code example without tests.
    """
    policy = cascade.policies.get(task)
    scoring = scoring_of(policy, scorer, judge=judge, rubric=rubric, limits=limits)
    agree, spec = scorer_of(policy)  # agreement with the strong answer: text, always
    exs = tuple(examples)
    runs = {}
    for mode in ("strong", "cheap", "cascade"):
        runs[mode] = await run_mode(
            cascade, policy, exs, mode, concurrency=concurrency, progress=progress
        )
    strong_text = [r.output if isinstance(r, Result) else None for r in runs["strong"]]
    outcomes = {}
    for m in MODES:
        # An example's label for the model that answered scores that answer (as calibrate
        # --data does); the scorer scores the rest, and is not asked about labelled ones.
        judged = scoring.judge is not None
        labels = [_label(ex, got, judged) for ex, got in zip(exs, runs[m], strict=True)]
        answers = [
            _answer(got)[1] if label is None else None
            for got, label in zip(runs[m], labels, strict=True)
        ]
        scored = await scoring.score(cascade, policy, exs, answers, concurrency)
        correct = [s if lab is None else lab for s, lab in zip(scored, labels, strict=True)]
        outcomes[m] = tuple(
            _outcome(got, ok, None if m == "strong" else strong_text[i], agree, spec)
            for i, (got, ok) in enumerate(zip(runs[m], correct, strict=True))
        )
    summaries = {m: _summary(m, outcomes[m]) for m in MODES}
    return EvalReport(task, margin, exs, outcomes, summaries, scoring)


def evaluate(
    cascade: Cascade, task: str, examples: Iterable[Example], **options: Any
) -> EvalReport:
    """``aevaluate`` from synchronous code (starts its own event loop)."""
    return asyncio.run(aevaluate(cascade, task, examples, **options))
