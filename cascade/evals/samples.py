"""Calibration samples: from observation records, or from a cheap and a strong run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..events import Result
from ..exceptions import PolicyError
from .calibrate import Sample

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ..events import CallRecord
    from ..exceptions import CascadeError
    from ..policy import Policy
    from .evaluate import Example

__all__ = [
    "ObservedSamples",
    "confidence_validator",
    "observed_samples",
    "samples_from_records",
    "samples_from_runs",
]


def confidence_validator(policy: Policy, name: str | None = None) -> tuple[int, str]:
    """(index, name) of the policy's confidence validator (``name`` picks among several).

    Raises PolicyError when there is none, or several and no ``name``.
    """
    found = [
        (i, str(getattr(v, "name", "")))
        for i, (entry, v) in enumerate(zip(policy.spec.validators, policy.validators, strict=True))
        if entry.get("type") == "confidence" or getattr(v, "name", None) == name
    ]
    if name is not None:
        found = [f for f in found if f[1] == name]
    if len(found) != 1:
        names = [n for _, n in found] or "none"
        why = "names no confidence validator" if name is None else f"has no validator {name!r}"
        if len(found) > 1:
            why = f"has several confidence validators ({names}); pick one with --validator"
        raise PolicyError(f"{policy.task} {why}", path=policy.path, field="validators")
    return found[0]


# (cheap_ok, strong_ok) for each judge verdict. ``equivalent`` takes both answers as acceptable
# (as agreement does); ``unknown`` (the judge failed) counts as a loss, the conservative side.
_JUDGED: dict[str, tuple[bool, bool]] = {
    "equivalent": (True, True),
    "cheap_better": (True, False),
    "strong_better": (False, True),
    "both_bad": (False, False),
    "different": (False, True),
    "unknown": (False, True),
}


@dataclass(frozen=True, slots=True)
class ObservedSamples:
    """Calibration samples from observation records, and what they rest on.

    ``measure`` is ``agreement`` (no record has a judge verdict: the strong answer is the
    key) or ``judged`` (verdicts credit the cheap model's wins; see ``samples_from_records``).
    ``verdicts`` counts the records by verdict (``agreed`` / ``disagreed`` without a judge or
    an embedder); ``skipped`` the records left out (an answer errored); ``judge_cost_usd``
    what the judge's (or the embedder's) calls cost.
    """

    samples: list[Sample]
    measure: str
    verdicts: Mapping[str, int]
    skipped: int
    judge_cost_usd: float


def observed_samples(records: Iterable[CallRecord], validator: str) -> ObservedSamples:
    """Calibration samples from observation records (``mode == "observe"``).

    With judge verdicts quality is the judge's: ``equivalent`` = both right, ``cheap_better``
    = a gain, ``strong_better`` = a loss, ``both_bad`` = both wrong, ``unknown`` = a loss;
    records without a verdict count as ``equivalent`` when the answers agreed and as losses
    otherwise. Without any verdict quality is agreement with the strong model (``cheap_ok``
    = agreed, ``strong_ok`` = True). The embedding comparator's verdicts (``equivalent``,
    ``different``, ``unknown``: a loss) are agreement too: they say whether the answers are
    alike, not which is better, so they alone leave the measure ``agreement``. Records whose
    agreement is unknown and that have no verdict (an answer errored) are left out.
    """
    out = []
    counts: Counter[str] = Counter()
    skipped = 0
    judged = False
    judge_cost = 0.0
    for r in records:
        obs = r.observation if r.mode == "observe" else None
        if obs is None:
            continue
        judge_cost += obs.judge_cost_usd or 0.0
        if obs.verdict is not None:
            judged = judged or obs.comparator != "embedding"
            cheap_ok, strong_ok = _JUDGED[obs.verdict]
            counts[obs.verdict] += 1
        elif obs.agree is None:
            skipped += 1
            continue
        else:
            cheap_ok, strong_ok = obs.agree, True
            counts["agreed" if obs.agree else "disagreed"] += 1
        failed = {x.split(":", 1)[0] for x in obs.reasons}
        names = {v.validator for a in r.attempts for v in a.verdicts} | failed
        out.append(
            Sample(
                score=obs.scores.get(validator),
                cheap_ok=cheap_ok,
                strong_ok=strong_ok,
                cheap_cost=obs.cheap_cost_usd or 0.0,
                strong_cost=obs.strong_cost_usd or 0.0,
                passed={n: n not in failed for n in sorted(names - {validator})},
                cost_known=obs.cheap_cost_usd is not None and obs.strong_cost_usd is not None,
            )
        )
    return ObservedSamples(
        out, "judged" if judged else "agreement", dict(counts), skipped, judge_cost
    )


def samples_from_records(records: Iterable[CallRecord], validator: str) -> list[Sample]:
    """The samples of ``observed_samples`` (without what they rest on)."""
    return observed_samples(records, validator).samples


def _answer_cost(result: Result, *, verify: bool) -> float:
    return sum(a.cost_usd or 0.0 for a in result.attempts if verify or a.purpose != "verify")


def samples_from_runs(
    examples: Sequence[Example],
    cheap: Sequence[Result | CascadeError],
    strong: Sequence[Result | CascadeError],
    validator: str,
    correct: Any,
) -> list[Sample]:
    """Calibration samples from a cheap-mode and a strong-mode run of the same examples.

    ``correct(answer, example) -> bool`` scores an answer, unless the example has a label
    for the model that gave it (``Example.labels``), which is used instead. The cheap answer's
    first attempt gives the score and the other verdicts; a failed call counts as wrong and
    unscored.
    """

    def right(got: Result | CascadeError, ex: Example) -> bool:
        if not isinstance(got, Result):
            return False
        label = ex.labels.get(got.model)
        return bool(correct(got.output, ex)) if label is None else label

    out = []
    for ex, c, s in zip(examples, cheap, strong, strict=True):
        first = (
            next((a for a in c.attempts if a.purpose == "answer"), None)
            if isinstance(c, Result)
            else None
        )
        verdicts = first.verdicts if first is not None else ()
        score = next((v.score for v in verdicts if v.validator == validator), None)
        out.append(
            Sample(
                score=score,
                cheap_ok=right(c, ex),
                strong_ok=right(s, ex),
                cheap_cost=_answer_cost(c, verify=True) if isinstance(c, Result) else 0.0,
                strong_cost=_answer_cost(s, verify=True) if isinstance(s, Result) else 0.0,
                passed={v.validator: v.passed for v in verdicts if v.validator != validator},
                baseline_cost=_answer_cost(s, verify=False) if isinstance(s, Result) else 0.0,
                cost_known=all(
                    a.cost_usd is not None
                    for r in (c, s)
                    if isinstance(r, Result)
                    for a in r.attempts
                ),
            )
        )
    return out
