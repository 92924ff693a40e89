"""How sure the model is of its answer: token probabilities, a self-rating, or a second call."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal, Self, cast

from pydantic import Field, ValidationInfo, field_validator

from ..events import Completion, Request, Verdict
from ._base import BaseValidator
from ._json import loads

NO_LOGPROBS = "no logprobs in the response (the model or provider does not return them)"
CONFIDENCE_KEY = "_confidence"
RATING_PROMPT = (
    "After your answer, add one final line exactly of the form "
    '"Confidence: <number between 0 and 1>": how likely your answer is to be correct.'
)
JSON_RATING_PROMPT = (
    f'Include in the JSON object a top-level key "{CONFIDENCE_KEY}" whose value is a number '
    "between 0 and 1: how likely your answer is to be correct."
)
VERIFY_PROMPT = 'Is the answer above correct? Reply with only "Yes" or "No".'
VERIFY_PARAMS: Mapping[str, Any] = {
    "logprobs": True,
    "top_logprobs": 5,
    "max_tokens": 1,
    "temperature": 0,
}
# The caller's arguments a verification call keeps: who it is for and how it is sent (billing,
# abuse monitoring, caching, routing), not what shapes an answer (formats, tools, sampling).
# Not `metadata`: the API accepts it only with `store`, and the check is not worth storing.
VERIFY_KEEPS = frozenset(
    {
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "extra_headers",
        "extra_query",
        "timeout",
    }
)
# The value of a "Confidence: 0.8" line; the line itself is read by `_rating_line`.
_RATING_VALUE = re.compile(r"[01](?:\.\d+)?|\.\d+|\d{1,3}[ \t]*%")
_WORD = re.compile("confidence", re.IGNORECASE)  # a literal: linear
_SPACE = re.compile(r"\s*")  # anchored at a position: linear, no backtracking
_KEY = f'"{CONFIDENCE_KEY}"'
_KEY_VALUE = re.compile(r"[-+0-9.eE]+")
_YES = frozenset({"yes", "y"})
_FIRST_WORD = re.compile(r"\W*(\w+)")


class Confidence(BaseValidator):
    """The model is confident enough in its answer (policy ``type: confidence``).

    ``source`` picks how confidence is measured, ``min`` (0 to 1) the bar it must reach;
    the verdict's ``score`` is the measured confidence.

    - ``logprobs``: asks for token log-probabilities. Over the answer's tokens (tokens that
      are only whitespace skipped), ``aggregate: mean`` (default) gives
      ``exp(mean(logprob))``, the geometric mean of the token probabilities, i.e. the
      length-normalised probability of the whole answer; ``aggregate: min`` gives
      ``exp(min(logprob))``, the probability of the least probable token.
    - ``self_rated``: asks the model to rate its own answer from 0 to 1 (a final
      ``Confidence: 0.8`` line, or a ``"_confidence"`` key in JSON answers), reads it, and
      removes it from the answer the caller gets.
    - ``verify``: after every other validator passed, asks the same model whether its
      answer is correct (one token, with log-probabilities); the score is
      ``P(yes)``, the summed probability of the "Yes"/"Y" tokens among the first token
      and its top alternatives.
    """

    kind = "confidence"

    source: Literal["logprobs", "self_rated", "verify"] = Field(
        description="logprobs | self_rated | verify"
    )
    min: float = Field(ge=0, le=1, description="The lowest confidence accepted, 0 to 1.")
    aggregate: Literal["mean", "min"] | None = Field(
        default=None, description="logprobs only: mean (default) or min over the tokens."
    )

    @field_validator("aggregate")
    @classmethod
    def _logprobs_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("source") != "logprobs":
            raise ValueError("aggregate applies to source: logprobs only")
        return value

    def __new__(cls, *args: Any, **data: Any) -> Self:
        # Confidence(source=...) builds the class for that source: each has only the hooks
        # its source needs, and the engine picks validators' roles by the hooks they have.
        target: type[Confidence] = cls
        if cls is Confidence and data.get("source") in _SOURCES:
            target = _SOURCES[data["source"]]
        return cast("Self", super().__new__(target))

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate options; on ``Confidence`` itself, into the class for their ``source``."""
        if cls is Confidence and isinstance(obj, Mapping) and obj.get("source") in _SOURCES:
            return cast("Self", _SOURCES[obj["source"]].model_validate(obj, *args, **kwargs))
        return super().model_validate(obj, *args, **kwargs)

    def _judged(self, score: float, how: str) -> Verdict:
        if score >= self.min:
            return self.verdict(True, score=score)
        shown = _below(score, self.min)
        return self.verdict(False, f"confidence {shown} < {self.min:.12g} ({how})", score)


def _below(score: float, threshold: float) -> str:
    """``score`` with the fewest decimals (at least 2) that still read below ``threshold``:
    ``0.9953`` against 0.999999 shows as ``0.995``, never as ``1.00``."""
    for decimals in range(2, 16):
        text = f"{score:.{decimals}f}"
        if float(text) < threshold:
            return text
    return repr(score)


class LogprobConfidence(Confidence):
    """``source: logprobs``: confidence from the answer tokens' log-probabilities."""

    source: Literal["logprobs"] = "logprobs"

    def prepare(self, request: Request) -> Request:
        """Ask for log-probabilities."""
        if request.params.get("logprobs") is True:
            return request
        return request.replace(logprobs=True)

    def __call__(self, completion: Completion, /) -> Verdict:
        """Pass when the aggregated token probability reaches ``min``."""
        tokens = completion.logprobs
        if tokens is None:
            return self.verdict(False, NO_LOGPROBS)
        use_min = self.aggregate == "min"
        total, n = 0.0, 0
        lowest, lowest_token = 0.0, ""
        for t in tokens:
            if not t.token.strip():
                continue
            lp = t.logprob
            if lp != lp:  # NaN: the provider sent garbage; no confidence can be claimed
                return self.verdict(False, f"logprob of token {t.token!r} is NaN", 0.0)
            lp = min(lp, 0.0)  # a log-probability above 0 is noise in the provider's floats
            n += 1
            total += lp
            if lp < lowest or n == 1:
                lowest, lowest_token = lp, t.token
        if n == 0:
            return self.verdict(False, "no answer tokens with logprobs", 0.0)
        if use_min:
            return self._judged(
                math.exp(lowest), f"logprobs, min over {n} tokens: {lowest_token!r}"
            )
        return self._judged(math.exp(total / n), f"logprobs, mean over {n} tokens")


class SelfRatedConfidence(Confidence):
    """``source: self_rated``: the model rates its answer; the rating is read and removed."""

    source: Literal["self_rated"] = "self_rated"

    def prepare(self, request: Request) -> Request:
        """Ask for the rating in the answer's own format (a JSON key or a final line)."""
        fmt = request.response_format
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        if kind == "json_schema" and isinstance(fmt, Mapping):
            with_rating = _with_rating_property(fmt)
            if with_rating is not None:
                return request.replace(response_format=with_rating)
            kind = "json_object"  # a schema we cannot extend: ask in words instead
        prompt = JSON_RATING_PROMPT if kind == "json_object" else RATING_PROMPT
        return request.replace(messages=[*request.messages, {"role": "system", "content": prompt}])

    def __call__(self, completion: Completion, /) -> Verdict:
        """Pass when the self-rating reaches ``min``."""
        found = _find_rating(completion.text)
        if found is None:
            return self.verdict(False, "no self-rated confidence in the answer")
        value = _number(found[0])
        if value is None:
            return self.verdict(False, f"self-rated confidence {found[0][:20]!r} is not a number")
        if not 0.0 <= value <= 1.0:
            return self.verdict(False, f"self-rated confidence {value:g} is not between 0 and 1")
        return self._judged(value, "self-rated")

    def clean(self, completion: Completion) -> Completion:
        """The completion with the rating removed from its text (unchanged if it had none)."""
        found = _find_rating(completion.text)
        if found is None:
            return completion
        return replace(completion, text=found[1])


def _with_rating_property(fmt: Mapping[str, Any]) -> dict[str, Any] | None:
    """``response_format`` whose schema also asks for the rating (None if its schema is
    not an object's); copies the path it changes, so the caller's dicts stay untouched."""
    spec = fmt.get("json_schema")
    if not isinstance(spec, Mapping):
        return None
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        return None
    properties = schema.get("properties", {})
    required = schema.get("required")
    if not isinstance(properties, Mapping):
        return None
    spec, schema = dict(spec), dict(schema)
    schema["properties"] = {
        **properties,
        CONFIDENCE_KEY: {
            "type": "number",
            "description": "How likely the answer is to be correct, from 0 to 1.",
        },
    }
    if isinstance(required, list) or spec.get("strict") is True:
        kept = [k for k in required if k != CONFIDENCE_KEY] if isinstance(required, list) else []
        schema["required"] = [*kept, CONFIDENCE_KEY]
    spec["schema"] = schema
    return {**fmt, "json_schema": spec}


def _find_rating(text: str) -> tuple[str, str] | None:
    """The self-rating in ``text`` as written, and the text without it; None if absent.

    Looked for as the ``_confidence`` key of an answer that is one JSON object, else as
    the last "Confidence: 0.8" line, else as the key inside JSON embedded in prose.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = loads(stripped)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and CONFIDENCE_KEY in value:
            rating = value.pop(CONFIDENCE_KEY)
            compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            return (rating if isinstance(rating, str) else json.dumps(rating)), compact
    line = _rating_line(text)
    if line is not None:
        value, start, end = line
        end = end + 1 if text[end : end + 1] == "\n" else end
        return value, (text[:start] + text[end:]).rstrip()
    if _KEY in text:
        found = _key_in_prose(text, after_comma=True) or _key_in_prose(text, after_comma=False)
        if found is not None:
            value, start, end = found
            return value, (text[:start] + text[end:]).rstrip()
    return None


def _rating_line(text: str) -> tuple[str, int, int] | None:
    """The last line of the form ``**Confidence**: 0.8`` (any case; ``:`` or ``=``; the
    value 0-1, ``.8`` or ``80%``): its value, start and end. Only lines holding the word are
    read, each once, with string methods: time linear in ``text`` (a regex for the same
    lines backtracks quadratically on a long run of spaces)."""
    seen = len(text) + 1  # the start of the last line read
    for m in reversed(list(_WORD.finditer(text))):
        if m.start() >= seen:
            continue  # another "confidence" of a line already read
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        end = len(text) if end < 0 else end
        seen = start
        value = _rating_of(text[start:end])
        if value is not None:
            return value, start, end
    return None


def _rating_of(line: str) -> str | None:
    rest = line.lstrip(" \t").lstrip("*").lstrip(" \t")
    if rest[:10].lower() != "confidence":
        return None
    rest = rest[10:].lstrip(" \t").lstrip("*").lstrip(" \t")
    if rest[:1] not in (":", "="):
        return None
    value = rest[1:].lstrip(" \t").lstrip("*").lstrip(" \t")
    value = value.rstrip(" \t\r").rstrip("*").rstrip(" \t")
    return value if _RATING_VALUE.fullmatch(value) else None


def _key_in_prose(text: str, *, after_comma: bool) -> tuple[str, int, int] | None:
    """The first ``"_confidence": <number>`` in ``text`` with the comma that separates it
    from its neighbour: the one before it (``after_comma``) or after it. Returns the value
    as written and the span to remove."""
    at = text.find(_KEY)
    while at >= 0:
        start = at
        if after_comma:
            start = at
            while start > 0 and text[start - 1].isspace():
                start -= 1
            if start == 0 or text[start - 1] != ",":
                at = text.find(_KEY, at + 1)
                continue
            start -= 1
            while start > 0 and text[start - 1].isspace():
                start -= 1
        pos = _SPACE.match(text, at + len(_KEY)).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] == ":":
            number = _KEY_VALUE.match(text, _SPACE.match(text, pos + 1).end())  # type: ignore[union-attr]
            if number is not None:
                end = number.end()
                if not after_comma:
                    end = _SPACE.match(text, end).end()  # type: ignore[union-attr]
                    if text[end : end + 1] == ",":
                        end = _SPACE.match(text, end + 1).end()  # type: ignore[union-attr]
                return number.group(), start, end
        at = text.find(_KEY, at + 1)
    return None


def _number(text: str) -> float | None:
    """A rating as written ("0.8", ".8", "80%", "1") as a number; None if it is not one."""
    percent = text.endswith("%")
    try:
        number = float(text.rstrip(" \t%") if percent else text)
    except ValueError:
        return None
    if math.isnan(number):
        return None
    return number / 100 if percent else number


class VerifyConfidence(Confidence):
    """``source: verify``: a second call asks the model whether its answer is correct."""

    source: Literal["verify"] = "verify"

    def __call__(self, completion: Completion, /) -> Verdict:
        """Not used by the engine, which calls ``follow_up`` and ``judge`` instead."""
        return self.verdict(False, "needs a follow-up call: the engine runs follow_up and judge")

    def follow_up(self, completion: Completion) -> Request:
        """The verification request: the conversation, the answer, and the question, sent
        with the caller's ``VERIFY_KEEPS`` arguments."""
        answer = completion.text
        if completion.tool_calls:  # an answer given as tool calls is shown as text
            calls = "\n".join(f"{c.name}({c.arguments})" for c in completion.tool_calls)
            answer = f"{answer}\n{calls}".strip()
        return Request(
            messages=[
                *completion.request.messages,
                {"role": "assistant", "content": answer},
                {"role": "user", "content": VERIFY_PROMPT},
            ],
            params={
                **{k: v for k, v in completion.request.params.items() if k in VERIFY_KEEPS},
                **VERIFY_PARAMS,
            },
        )

    def judge(self, completion: Completion, reply: Completion) -> Verdict:
        """Pass when ``P(yes)`` of the reply reaches ``min``."""
        if not reply.logprobs:
            m = _FIRST_WORD.match(reply.text)
            yes = m is not None and m.group(1).lower() in _YES
            how = f"verify; the reply had no logprobs, read from its text {reply.text[:20]!r}"
            return self._judged(1.0 if yes else 0.0, how)
        first = reply.logprobs[0]
        seen: set[str] = set()
        p_yes = 0.0
        for token, lp in ((first.token, first.logprob), *first.top):
            if token in seen:
                continue
            seen.add(token)
            if token.strip().lower() in _YES and lp == lp:  # NaN counts for nothing
                p_yes += math.exp(min(lp, 0.0))
        return self._judged(min(p_yes, 1.0), f"verify, P(yes) of the reply {first.token!r}")


_SOURCES: dict[str, type[Confidence]] = {
    "logprobs": LogprobConfidence,
    "self_rated": SelfRatedConfidence,
    "verify": VerifyConfidence,
}

__all__ = [
    "CONFIDENCE_KEY",
    "Confidence",
    "LogprobConfidence",
    "SelfRatedConfidence",
    "VERIFY_PROMPT",
    "VerifyConfidence",
]
