"""How ``cascade eval`` scores an answer: against its reference, by its tests, or by a judge.

- A comparator (``--scorer NAME``, or ``module:function`` taking ``(answer, reference,
  spec)``), default the policy's agreement comparator (for ``judge`` and ``embedding``, its
  ``prefilter``: references are text).
- ``--scorer code``: the example's ``tests`` run against the answer's code in a limited child
  process (``cascade.evals.code``). Without ``--scorer``, an example that has ``tests`` is
  scored by them, the others by the comparator.
- ``--judge MODEL [--rubric FILE]``: the judge model is given the request, the answer, the
  example's reference if it has one and the rubric, and answers ``PASS`` or ``FAIL``; any
  other answer, or an error, is an unknown grade: counted, and scored as wrong. Grades are
  cached by (request, answer, reference) for the run, and their cost is added up.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..compare import AgreementSpec, Comparator, comparator
from ..events import Call, Failure, Request
from ..exceptions import ScorerError
from ..judge import DATA_NOTE, prompt_mark, shown_request, tagged
from ..pricing import price_of
from .code import CodeLimits, run_tests
from .runs import runner

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._client import Cascade
    from ..policy import Policy
    from .evaluate import Example

__all__ = ["GRADE_MARK", "Scoring", "grade_request", "parse_grade", "scorer_of", "scoring_of"]

GRADE_MARK = "You grade one answer to a request."
_SYSTEM = (
    GRADE_MARK + " Decide whether the answer is acceptable: correct, complete, and following "
    "the request's instructions. "
    + DATA_NOTE
    + "{rubric}{reference}\nReply with exactly one word: PASS or FAIL."
)
_WORD = re.compile(r"[A-Za-z]+")


def scorer_of(policy: Policy, name: str | None = None) -> tuple[Comparator, AgreementSpec]:
    """The comparator scoring answers against references: ``name`` if given (a registered
    comparator, or ``module:function`` taking ``(answer, reference, spec)`` and returning a
    bool), else the policy's agreement one (for ``judge`` and ``embedding``, its
    ``prefilter``: references are text). Raises ``ScorerError`` (a LookupError) for an
    unknown name or a path that does not load."""
    spec = policy.spec.agreement
    if name is not None and ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn: Comparator = getattr(importlib.import_module(module), attr)
        except (Exception, SystemExit) as e:  # any failure of the user's module, named
            why = f"{type(e).__name__}: {e}"
            raise ScorerError(f"cannot load the scorer {name!r}: {why}") from None
        if not callable(fn):
            raise ScorerError(f"the scorer {name!r} is not a function: {type(fn).__name__}")
        return fn, spec
    if name is not None:
        spec = spec.model_copy(update={"comparator": name})
    elif spec.comparator in ("judge", "embedding"):
        spec = spec.model_copy(update={"comparator": spec.prefilter})
    try:
        return comparator(spec.comparator), spec
    except LookupError as e:
        raise ScorerError(str(e)) from None


def grade_request(
    messages: Sequence[Any], answer: str, reference: str, rubric: str | None
) -> Request:
    """The judge's request grading ``answer`` to ``messages`` (with the reference, if any)."""
    mark = prompt_mark(list(messages), answer, reference)
    system = _SYSTEM.format(
        mark=mark,
        rubric=f"\nRubric: {rubric.strip()}" if rubric else "",
        reference="\nA reference answer known to be right is given: compare with it."
        if reference
        else "",
    )
    user = f"{shown_request(messages, mark)}\n\n{tagged('answer', answer, mark)}"
    if reference:
        user += f"\n\n{tagged('reference', reference, mark)}"
    return Request(
        messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
        params={"temperature": 0, "max_tokens": 4},
    )


def parse_grade(text: str) -> bool | None:
    """The grade in the judge's reply (its first word): True for PASS, False for FAIL, None
    for anything else."""
    word = _WORD.search(text or "")
    first = word.group(0).upper() if word else ""
    return True if first == "PASS" else False if first == "FAIL" else None


@dataclass(slots=True)
class Scoring:
    """How answers are scored (see the module docstring), and what judging cost."""

    compare: Comparator
    spec: AgreementSpec
    code: bool = False  # --scorer code: every example by its tests
    limits: CodeLimits = field(default_factory=CodeLimits)
    judge: str | None = None
    rubric: str | None = None
    function: str | None = None  # a --scorer module:function, as given
    graded: int = 0
    unknown: int = 0
    judge_cost: Decimal | None = Decimal(0)
    _grades: dict[str, asyncio.Future[bool | None]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """What scored the answers, as the report says it."""
        if self.judge is not None:
            return f"judge {self.judge}" + (" with a rubric" if self.rubric else "")
        if self.code:
            return "code tests"
        return f"{self.function or self.spec.comparator} (tests where given)"

    def to_dict(self) -> dict[str, Any]:
        """The ``scoring`` entry of ``cascade eval --format json``."""
        return {
            "by": self.name,
            "judge": self.judge,
            "graded": self.graded,
            "unknown": self.unknown,
            "judge_cost_usd": None if self.judge_cost is None else float(self.judge_cost),
        }

    def correct(self, answer: str, example: Example) -> bool:
        """Whether ``answer`` is right by the example's tests or its reference (not for a
        judge: ``score`` asks it)."""
        if self.code or example.tests:
            if not example.tests:
                raise ValueError(f"example {example.id}: --scorer code needs its 'tests'")
            return run_tests(answer, example.tests, self.limits).passed
        return bool(self.compare(answer, example.reference, self.spec))

    async def score(
        self,
        cascade: Cascade,
        policy: Policy,
        examples: Sequence[Example],
        answers: Sequence[str | None],
        concurrency: int = 8,
    ) -> list[bool]:
        """Score each answer (None: the call failed, wrong) at most ``concurrency`` at a time."""
        gate = asyncio.Semaphore(max(1, concurrency))
        run = runner(cascade, policy) if self.judge is not None else None

        async def one(ex: Example, answer: str | None) -> bool:
            if answer is None:
                return False
            async with gate:
                if run is None:
                    return await asyncio.to_thread(self.correct, answer, ex)
                return bool(await self._grade(run, policy, ex, answer))

        try:
            return list(
                await asyncio.gather(*(one(e, a) for e, a in zip(examples, answers, strict=True)))
            )
        finally:
            if run is not None:
                await run.aclose()

    async def _grade(self, run: Cascade, policy: Policy, ex: Example, answer: str) -> bool | None:
        """The judge's grade, asked once per (request, answer, reference) in a run."""
        key = hashlib.sha256(
            json.dumps([list(ex.messages), answer, ex.reference], default=str).encode()
        ).hexdigest()
        asked = self._grades.get(key)
        if asked is None:
            asked = self._grades[key] = asyncio.ensure_future(self._ask(run, policy, ex, answer))
        return await asked

    async def _ask(self, run: Cascade, policy: Policy, ex: Example, answer: str) -> bool | None:
        judge = str(self.judge)
        ask = grade_request(ex.messages, answer, ex.reference, self.rubric)
        reply = await run.transport.acall(Call(judge, ask, "judge", policy.endpoints.get(judge)))
        self.graded += 1
        if isinstance(reply, Failure):
            self.unknown += 1
            return None
        grade = parse_grade(reply.text)
        self.unknown += grade is None
        price = policy.prices.get(judge) or price_of(judge)
        if price is None or not reply.usage_known or self.judge_cost is None:
            self.judge_cost = None
        else:
            self.judge_cost += price.cost(
                reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens
            )
        return grade


def scoring_of(
    policy: Policy,
    scorer: str | None = None,
    *,
    judge: str | None = None,
    rubric: str | None = None,
    limits: CodeLimits | None = None,
) -> Scoring:
    """The scoring of ``cascade eval`` (see the module docstring). Raises ScorerError for an
    unknown scorer, ValueError for a judge with a scorer."""
    if judge is not None and scorer is not None:
        raise ValueError("give --judge or --scorer, not both")
    code = scorer == "code"
    compare, spec = scorer_of(policy, None if code else scorer)
    loaded = scorer if scorer is not None and ":" in scorer else None
    return Scoring(compare, spec, code, limits or CodeLimits(), judge, rubric, function=loaded)
