"""Calibration samples: from observation records, or from a cheap and a strong run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..events import Result
from ..exceptions import PolicyError
from .calibrate import Sample

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..events import CallRecord
    from ..exceptions import CascadeError
    from ..policy import Policy
    from .evaluate import Example

__all__ = ["confidence_validator", "samples_from_records", "samples_from_runs"]


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


def samples_from_records(records: Iterable[CallRecord], validator: str) -> list[Sample]:
    """Calibration samples from observation records (``mode == "observe"``).

    Quality is agreement with the strong model: ``cheap_ok`` = the cheap answer agreed,
    ``strong_ok`` = True. Records whose agreement is unknown (an answer errored) are left out.
    """
    out = []
    for r in records:
        obs = r.observation if r.mode == "observe" else None
        if obs is None or obs.agree is None:
            continue
        failed = {x.split(":", 1)[0] for x in obs.reasons}
        names = {v.validator for a in r.attempts for v in a.verdicts} | failed
        out.append(
            Sample(
                score=obs.scores.get(validator),
                cheap_ok=obs.agree,
                strong_ok=True,
                cheap_cost=obs.cheap_cost_usd or 0.0,
                strong_cost=obs.strong_cost_usd or 0.0,
                passed={n: n not in failed for n in sorted(names - {validator})},
                cost_known=obs.cheap_cost_usd is not None and obs.strong_cost_usd is not None,
            )
        )
    return out


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

    ``correct(answer, example) -> bool`` scores an answer. The cheap answer's first attempt
    gives the score and the other verdicts; a failed call counts as wrong and unscored.
    """
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
                cheap_ok=isinstance(c, Result) and correct(c.output, ex),
                strong_ok=isinstance(s, Result) and correct(s.output, ex),
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
