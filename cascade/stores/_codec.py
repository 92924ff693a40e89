"""A compact JSON form of ``CallRecord`` that decodes back to an equal record.

Records are positional JSON arrays led by a format version, so a stored record costs little
more than its text. Python's ``json`` writes floats with ``repr``, which reads back exactly.
A record's ``Observation`` is kept under ``"observe"`` in its ``extra`` object (where format 1
has always kept it), through ``Observation.to_dict``/``from_dict``. The inclusion
probability was appended within format 1 as a 20th field: records written before it have 19
and decode with ``inclusion_probability=None``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from ..events import Attempt, CallRecord, Observation, Verdict

VERSION = 1
_T = TypeVar("_T")


class CorruptRecordError(ValueError):
    """A stored record could not be decoded; readers skip it and count it."""


def encode(record: CallRecord) -> str:
    """The record as compact JSON text that is valid UTF-8.

    Text is written as itself, except in a record holding a lone surrogate (``"\\ud800"``,
    which no UTF-8 file or server accepts): that record is written with ``\\u`` escapes,
    which read back to the same string.
    """
    fields = _fields(record)
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(fields, separators=(",", ":"))
    return text


def _fields(record: CallRecord) -> list[Any]:
    return [
        VERSION,
        record.id,
        record.time,
        record.task,
        record.mode,
        record.models,
        record.model,
        record.escalated,
        record.ok,
        [_attempt(a) for a in record.attempts],
        record.cost_usd,
        record.baseline_cost_usd,
        record.latency_s,
        record.prompt_tokens,
        record.completion_tokens,
        record.features,
        record.input,
        record.sampled,
        _extra(record),
        record.inclusion_probability,
    ]


def _extra(record: CallRecord) -> Any:
    if record.observation is None:
        return record.extra
    return {**record.extra, _OBSERVE: record.observation.to_dict()}


_OBSERVE = "observe"


def _attempt(a: Attempt) -> list[Any]:
    return [
        a.model,
        a.purpose,
        a.output,
        [[v.validator, v.passed, v.reason, v.score] for v in a.verdicts],
        a.prompt_tokens,
        a.completion_tokens,
        a.cached_tokens,
        a.cost_usd,
        a.latency_s,
        a.error,
        a.finish_reason,
    ]


def decode(data: str | bytes) -> CallRecord:
    """Read back what ``encode`` wrote.

    Raises ``CorruptRecordError`` for anything that is not a well-formed record.
    """
    try:
        (
            version,
            id_,
            time,
            task,
            mode,
            models,
            model,
            escalated,
            ok,
            attempts,
            cost,
            baseline,
            latency,
            prompt_tokens,
            completion_tokens,
            features,
            input_,
            sampled,
            extra,
            *rest,
        ) = json.loads(data)
        if len(rest) > 1:
            raise CorruptRecordError(f"a record of {19 + len(rest)} fields")
        # The inclusion probability came later within format 1: older records end before it.
        inclusion = rest[0] if rest else None
        if version != VERSION:
            raise CorruptRecordError(f"unknown record format version {version!r}")
        extra = dict(_check(extra, dict))
        seen = extra.pop(_OBSERVE, None)
        record = CallRecord(
            id=_check(id_, str),
            time=_num(time),
            task=_check(task, str),
            mode=_check(mode, str),
            models=tuple(_check(m, str) for m in models),
            model=_check(model, str),
            escalated=_check(escalated, bool),
            ok=_check(ok, bool),
            attempts=tuple(_read_attempt(a) for a in attempts),
            cost_usd=None if cost is None else _num(cost),
            baseline_cost_usd=None if baseline is None else _num(baseline),
            latency_s=_num(latency),
            prompt_tokens=_check(prompt_tokens, int),
            completion_tokens=_check(completion_tokens, int),
            features=_check(features, dict),
            input=None if input_ is None else _check(input_, str),
            sampled=_check(sampled, bool),
            extra=extra,
            observation=None if seen is None else Observation.from_dict(_check(seen, dict)),
            inclusion_probability=None if inclusion is None else _probability(inclusion),
        )
    except CorruptRecordError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as e:
        raise CorruptRecordError(f"corrupt record: {e}") from e
    return record


def _read_attempt(a: list[Any]) -> Attempt:
    model, purpose, output, verdicts, pt, ct, cached, cost, latency, error, finish = a
    return Attempt(
        model=_check(model, str),
        purpose=_check(purpose, str),  # type: ignore[arg-type]  # a Purpose, checked loosely
        output=_check(output, str),
        verdicts=tuple(
            Verdict(
                validator=_check(name, str),
                passed=_check(passed, bool),
                reason=_check(reason, str),
                score=None if score is None else _num(score),
            )
            for name, passed, reason, score in verdicts
        ),
        prompt_tokens=_check(pt, int),
        completion_tokens=_check(ct, int),
        cached_tokens=_check(cached, int),
        cost_usd=None if cost is None else _num(cost),
        latency_s=_num(latency),
        error=None if error is None else _check(error, str),
        finish_reason=None if finish is None else _check(finish, str),
    )


def _check(value: Any, kind: type[_T]) -> _T:
    if not isinstance(value, kind):
        raise CorruptRecordError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _probability(value: Any) -> float:
    p = _num(value)
    if not 0.0 < p <= 1.0:
        raise CorruptRecordError(f"inclusion probability {p!r} outside (0, 1]")
    return p


def _num(value: Any) -> float:
    # JSON writes 1.0 as 1.0 but a hand-made or older record may hold an int: accept both.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorruptRecordError(f"expected a number, got {type(value).__name__}")
    return float(value)
