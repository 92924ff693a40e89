"""Do two answers agree? Comparators by name, used by observe mode, eval and calibrate.

Built-ins: ``exact`` (identical text), ``normalized`` (case, surrounding whitespace, inner
runs of whitespace and trailing punctuation ignored), ``json`` (both decode to JSON that is
equal, numbers within ``tolerance``; optionally only ``fields``), ``numeric`` (the last
number in each answer, within relative ``tolerance``). Register more with
``register_comparator(name, fn)`` where ``fn(a, b, spec) -> bool``. ``judge`` and
``embedding`` ask a model, so observe mode runs them (``cascade.judge``) where their
``prefilter`` disagrees; they are not functions here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AgreementSpec(BaseModel):
    """How to decide that two answers agree."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    comparator: str = Field(
        default="normalized",
        description="exact | normalized | json | numeric | judge | embedding | a name "
        "registered with cascade.register_comparator",
    )
    tolerance: float = Field(default=1e-6, ge=0, description="Relative tolerance (numeric, json).")
    fields: list[str] | None = Field(default=None, description="json: compare only these keys.")
    model: str | None = Field(
        default=None, description="judge: the model that judges; embedding: the embedding model."
    )
    rubric: str | None = Field(default=None, description="judge: what makes an answer good.")
    rubric_file: str | None = Field(
        default=None, description="judge: the rubric in a file (relative to the policy's)."
    )
    prefilter: str = Field(
        default="normalized",
        description="judge, embedding: the cheaper comparator tried first; the model is "
        "asked only where it disagrees.",
    )
    min: float | None = Field(
        default=None, ge=-1, le=1, description="embedding: the least cosine similarity."
    )

    @model_validator(mode="after")
    def _complete(self) -> AgreementSpec:
        if self.comparator in ("judge", "embedding") and not self.model:
            raise ValueError(f"comparator {self.comparator} needs a model")
        if self.comparator == "embedding" and self.min is None:
            raise ValueError("comparator embedding needs min (the least cosine similarity)")
        if self.rubric is not None and self.rubric_file is not None:
            raise ValueError("give rubric or rubric_file, not both")
        if self.prefilter in ("judge", "embedding"):
            raise ValueError("prefilter is a comparator without model calls")
        return self


Comparator = Callable[[str, str, AgreementSpec], bool]

_WS = re.compile(r"\s+")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


def _normalize(text: str) -> str:
    return _WS.sub(" ", text.strip().lower()).rstrip(" .!")


def _close(a: float, b: float, tol: float) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def _json_equal(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _close(float(a), float(b), tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return _normalize(a) == _normalize(b)
    return bool(a == b)


def _load(text: str) -> Any:
    return json.loads(_fenced(text))


def _fenced(text: str) -> str:
    """The body of the first ```json (or bare ```) block of ``text``, else ``text``: found
    with ``str.find`` in linear time (a lazy regex backtracks quadratically on a fence
    followed by a long run of spaces)."""
    start = text.find("```")
    if start < 0:
        return text
    body = start + 3 + (4 if text.startswith("json", start + 3) else 0)
    end = text.find("```", body)
    if end < 0:
        return text
    return text[body:end].lstrip()


def exact(a: str, b: str, spec: AgreementSpec) -> bool:
    """Identical text."""
    return a == b


def normalized(a: str, b: str, spec: AgreementSpec) -> bool:
    """Equal after folding case, whitespace and trailing punctuation."""
    return _normalize(a) == _normalize(b)


def json_fields(a: str, b: str, spec: AgreementSpec) -> bool:
    """Equal JSON, field by field (only ``spec.fields`` when given); invalid JSON disagrees."""
    try:
        x, y = _load(a), _load(b)
    except (ValueError, TypeError):
        return False
    if spec.fields is not None:
        if not isinstance(x, dict) or not isinstance(y, dict):
            return False
        x = {k: x.get(k) for k in spec.fields}
        y = {k: y.get(k) for k in spec.fields}
    return _json_equal(x, y, spec.tolerance)


def numeric(a: str, b: str, spec: AgreementSpec) -> bool:
    """The last number of each answer, within the relative tolerance; no number disagrees."""
    na, nb = _NUMBER.findall(a), _NUMBER.findall(b)
    if not na or not nb:
        return False
    try:
        return _close(
            float(na[-1].replace(",", "")), float(nb[-1].replace(",", "")), spec.tolerance
        )
    except ValueError:
        return False


_COMPARATORS: dict[str, Comparator] = {
    "exact": exact,
    "normalized": normalized,
    "json": json_fields,
    "numeric": numeric,
}


def register_comparator(name: str, fn: Comparator) -> Comparator:
    """Make ``fn(a, b, spec) -> bool`` available as ``agreement: {comparator: name}``."""
    _COMPARATORS[name] = fn
    return fn


def comparator(name: str) -> Comparator:
    """The comparator registered as ``name``. Raises LookupError naming the known ones."""
    try:
        return _COMPARATORS[name]
    except KeyError:
        raise LookupError(
            f"unknown comparator {name!r}; known: {', '.join(sorted(_COMPARATORS))}"
        ) from None


def agree(a: str, b: str, spec: AgreementSpec | None = None) -> bool:
    """Whether answers ``a`` and ``b`` agree under ``spec`` (default: normalized text)."""
    spec = spec or AgreementSpec()
    return comparator(spec.comparator)(a, b, spec)
