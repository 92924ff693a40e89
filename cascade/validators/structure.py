"""Cheap checks of an answer's shape: empty, too short or long, refused, cut off, malformed."""

from __future__ import annotations

import ast
import threading
import warnings
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from ._base import BaseValidator
from ._json import NotJSON, extract_json, fenced_blocks
from ._regex import LinearRegex

if TYPE_CHECKING:
    from ..events import Completion, Verdict

# How refusals open, lower-cased with straight apostrophes. An answer that starts with one
# of these, or a short answer that contains one, is a refusal. Kept small on purpose: every
# entry is a phrase a model uses to decline, not one a real answer starts with.
REFUSAL_PHRASES: tuple[str, ...] = (
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i'm sorry, i can't",
    "i'm sorry, i cannot",
    "i cannot help with",
    "i can't help with",
    "i cannot assist",
    "i can't assist",
    "i am unable to",
    "i'm unable to",
    "i won't be able to help",
    "as an ai language model",
)
# "Short" for the contains-a-refusal-phrase test; longer answers may quote one.
_SHORT = 300
# catch_warnings swaps the process-wide filter list; parses take turns so that two of them
# never restore each other's state.
_PARSE_LOCK = threading.Lock()
_PYTHON = frozenset({"python", "python3", "py"})


class Structure(BaseValidator):
    """Shape checks that need no model call (policy ``type: structure``).

    Every enabled check runs and the reason names each one that failed, joined with "; ".
    ``score`` is the answer's length in characters. Refusal phrases: ``REFUSAL_PHRASES``
    (case-insensitive, curly or straight apostrophes).
    """

    kind = "structure"

    non_empty: bool = Field(True, description="The answer has text or at least one tool call.")
    min_chars: int | None = Field(None, ge=0, description="At least this many characters.")
    max_chars: int | None = Field(None, ge=0, description="At most this many characters.")
    required_keys: list[str] = Field(
        default_factory=list,
        description='The answer is a JSON object with these keys; "a.b" for a nested key.',
    )
    match: list[str] = Field(
        default_factory=list, description="Regexes (RE2, linear time) that must all match."
    )
    forbid: list[str] = Field(
        default_factory=list, description="Regexes (RE2, linear time) that must not match."
    )
    refusal: bool = Field(True, description="Reject refusals.")
    truncation: bool = Field(True, description='Reject answers cut off (finish_reason "length").')
    valid_json: bool = Field(False, description="The answer (or its first fenced block) is JSON.")
    valid_python: bool = Field(
        False, description="The answer (or its first ```python block) parses as Python."
    )

    _match: tuple[LinearRegex, ...] = PrivateAttr(default=())
    _forbid: tuple[LinearRegex, ...] = PrivateAttr(default=())
    _keys: tuple[tuple[str, ...], ...] = PrivateAttr(default=())

    @field_validator("match", "forbid")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            LinearRegex(pattern)  # raises ValueError saying why RE2 cannot take it
        return value

    @field_validator("max_chars")
    @classmethod
    def _check_bounds(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_chars")
        if value is not None and low is not None and value < low:
            raise ValueError(f"max_chars ({value}) is less than min_chars ({low})")
        return value

    @field_validator("required_keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not key or "" in key.split("."):
                raise ValueError(f"invalid key {key!r}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Compile the regexes and split the dotted keys once."""
        self._match = tuple(LinearRegex(p) for p in self.match)
        self._forbid = tuple(LinearRegex(p) for p in self.forbid)
        self._keys = tuple(tuple(k.split(".")) for k in self.required_keys)

    def __call__(self, completion: Completion, /) -> Verdict:
        """Run every enabled check; pass when none failed."""
        text = completion.text
        failed: list[str] = []
        if self.truncation and completion.finish_reason == "length":
            failed.append("truncated (finish_reason=length)")
        if self.non_empty and not completion.tool_calls and not text.strip():
            failed.append("empty answer")
        if self.refusal:
            refused = refusal_of(completion)
            if refused is not None:
                failed.append(refused)
        n = len(text)
        if self.min_chars is not None and n < self.min_chars:
            failed.append(f"shorter than {self.min_chars} characters ({n})")
        if self.max_chars is not None and n > self.max_chars:
            failed.append(f"longer than {self.max_chars} characters ({n})")
        # The option fields are tested first: reading a private attribute costs far more.
        if self.match:
            failed.extend(f"does not match {p.pattern!r}" for p in self._match if not p.found(text))
        if self.forbid:
            failed.extend(f"matches forbidden {p.pattern!r}" for p in self._forbid if p.found(text))
        if self.required_keys:
            failed.extend(self._missing_keys(text))
        if self.valid_json:
            try:
                extract_json(text, scan=False)
            except NotJSON as e:
                failed.append(str(e))
        if self.valid_python:
            problem = python_error(text)
            if problem is not None:
                failed.append(problem)
        return self.verdict(not failed, "; ".join(failed), float(n))

    def _missing_keys(self, text: str) -> list[str]:
        try:
            value = extract_json(text)
        except NotJSON as e:
            return [f"required keys: {e}"]
        if not isinstance(value, dict):
            return [f"required keys: the answer's JSON is a {type(value).__name__}, not an object"]
        missing = [".".join(path) for path in self._keys if not _has(value, path)]
        return [f"missing keys: {', '.join(missing)}"] if missing else []


def _has(value: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def refusal_of(completion: Completion) -> str | None:
    """Why ``completion`` reads as a refusal (the API's ``refusal`` field or a refusal
    phrase), or None."""
    if completion.refusal:
        return f"refused: {completion.refusal[:100]}"
    text = completion.text
    head = text[:200].lstrip().lower().replace("\u2019", "'")
    for phrase in REFUSAL_PHRASES:
        if head.startswith(phrase):
            return f'refusal ("{phrase}")'
    if len(text) <= _SHORT:
        whole = text.lower().replace("\u2019", "'")
        for phrase in REFUSAL_PHRASES:
            if phrase in whole:
                return f'refusal ("{phrase}")'
    return None


def python_error(text: str) -> str | None:
    """Why ``text`` (or its first ```python block) is not valid Python, or None."""
    fenced = "```" in text and next(
        (body for lang, body in fenced_blocks(text) if lang.lower() in _PYTHON), None
    )
    source = fenced if isinstance(fenced, str) else text
    # Parsing warns about things like invalid escape sequences in the model's code; those
    # are the code's business, not the caller's, so they are not let out of here.
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(source)
        except SyntaxError as e:
            return f"invalid Python: {e.msg} (line {e.lineno})"
        except (ValueError, RecursionError, MemoryError) as e:
            return f"invalid Python: {type(e).__name__}: {str(e)[:100]}"
    return None


__all__ = ["REFUSAL_PHRASES", "Structure", "python_error", "refusal_of"]
