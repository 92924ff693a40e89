"""A learned start: P(escalate | input), fitted by ``cascade learn`` on the task's records.

The model is a logistic regression over hashed features of the input, in four families:

- ``words``: every word and two-word phrase of the user and assistant turns' first and last
  ``WINDOW`` characters (those turns joined by newlines). A word is a run of ASCII letters
  and of characters outside ASCII, lower-cased; ASCII digits, punctuation and spaces end it,
  and so do the no-break space, the spaces, dashes and quotes of U+2000-U+205F, CJK and
  full-width punctuation and emoji (``_SEPARATORS``). So a text written without spaces
  (Chinese, Japanese, Thai) makes one word of each run between its punctuation. The masks
  redaction writes (``[EMAIL]``, ...) are dropped, not read as words, and so are e-mail
  addresses (a run of their characters holding an ``@``), which a redacted input holds as
  ``[EMAIL]``: they are words of neither.
- ``size``: a power-of-two bucket of the characters of all its messages;
- ``range``: the range of code points the highest character of that text lies in, by its
  UTF-8 lead byte: ASCII, then ranges of 64 code points up to U+07FF (Greek, Cyrillic, Hebrew,
  Arabic apart), of 4,096 up to U+FFFF (U+2000-U+2FFF: punctuation and symbols; U+4000-U+9FFF:
  CJK ideographs in four), of 262,144 beyond. A coarse hint of its script, not a script;
- ``code``: whether that text holds code, and whether it holds JSON.

Each feature is hashed (CRC-32, the same in every process) into one of ``buckets`` weights.
A model file says which families it was fitted on (``features``) and is scored on those only:
records whose input was stored as a hash or not at all (``store_inputs: hash``/``none``)
carry their size and nothing of their text, so a model fitted on them is a model of size.

``hashed`` is the one extractor: ``cascade learn`` reads a record's stored input through it
(``stored_turns``) and the engine a live request's messages (``message_turns``), so the model
scores what it was fitted on. It slices each turn before joining, so it reads at most
``2 * WINDOW`` characters whatever the size and number of turns (its other work is one length
per message), and then works in C loops (translate, split, CRC-32 per word, a set, one weight
per distinct feature; a regex for the separators outside ASCII where there are any); it
runs once per call, before the first model is asked. The file (``policies/_<task>.start.json``)
is read and validated once, when the policy is loaded.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from itertools import repeat
from operator import mod, xor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..exceptions import PolicyError
from ..recording import content_text

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "FAMILIES",
    "MASKS",
    "VERSION",
    "WINDOW",
    "Family",
    "StartModel",
    "hashed",
    "load_model",
    "message_turns",
    "stored_turns",
]

# 4: the runs of e-mail address characters that hold an '@' are no words, on both sides;
# 3: each turn sliced before joining, Unicode spaces and punctuation end words, only
# redaction's own masks dropped (on both sides), the highest character's code-point range
# (not its 256-code-point page), the fitted feature families recorded; 2: words of a bounded
# window, no language guess; 1: words of 4,000 characters and CLD2's guess.
VERSION: Literal[4] = 4
WINDOW = 256  # characters read from each end of the user and assistant turns, joined
Family = Literal["words", "size", "range", "code"]
FAMILIES: tuple[Family, ...] = ("words", "size", "range", "code")
_TEXT = frozenset({"words", "range", "code"})  # the families read from the input's text
# What ``cascade.recording.redact`` writes in place of what it masks: not the user's words.
MASKS = ("[SECRET]", "[EMAIL]", "[IBAN]", "[CARD]", "[SSN]", "[PHONE]")
_MASK = re.compile("|".join(map(re.escape, MASKS)))
# On the UTF-8 of the lower-cased window: every ASCII byte that is not a letter becomes a
# space, so ``split`` yields words (digits, punctuation, and with them numbers, dates and
# the shapes of e-mail addresses go); bytes of other characters stay in their words.
_SPACES = bytes(
    c if (0x61 <= c <= 0x7A or c >= 0x80) else 0x20 for c in range(256)
)  # fmt: skip
# Outside ASCII, these separate words too (their UTF-8, replaced by a space first): the
# no-break space; U+2000-U+205F (the other spaces, dashes, quotes, the ellipsis); the
# ideographic space, comma, full stop and brackets (U+3000-U+3003, U+3008-U+3011); full-width
# punctuation (U+FF01-U+FF0F, U+FF1A-U+FF20); emoji and pictographs (U+1F000-U+1FFFF).
_SEPARATORS = re.compile(
    rb"\xc2\xa0|\xe2\x80[\x80-\xbf]|\xe2\x81[\x80-\x9f]|\xe3\x80[\x80-\x83\x88-\x91]"
    rb"|\xef\xbc[\x81-\x8f\x9a-\xa0]|\xf0\x9f[\x80-\xbf][\x80-\xbf]"
)
# A run of the characters of an e-mail address (lower-cased) holding an '@': redaction stores
# an address as [EMAIL], so its letters are words of neither a stored input nor a live one.
# Each run is scanned from its first character only (the lookbehind), so this is linear.
_ADDRESS = re.compile(rb"(?<![a-z0-9._%+@-])[a-z0-9._%+-]*+@[a-z0-9._%+@-]*+")
_LEADS = range(0xF4, 0xC1, -1)  # UTF-8 lead bytes, highest first
_PHRASE = 0x5BD1E995  # seeds a phrase's CRC-32 apart from its first word's own
_ROLE = re.compile(r"(?m)^(system|developer|user|assistant|tool|function): ")
_CUT = re.compile(r"…\[truncated \d+ chars\]$")  # a long stored input's end marker
_CODE_LINE = re.compile(
    r"\n[ \t]*(?:def|class|import|from|function|const|let|var|public|#include|SELECT)\b"
)
_CODE_END = re.compile(r"[;{}][ \t]*(?:\n|$)")
_TURNS = ("user", "assistant")


def message_turns(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The texts of the user and assistant turns of a request, as the model reads them."""
    return [content_text(m.get("content")) for m in messages if m.get("role") in _TURNS]


def stored_turns(stored: str) -> list[str]:
    """The same texts from a stored input (``role: content`` lines, maybe redacted or cut).

    A line of a message's own text that starts like a stored one (``user: ...``) is read as
    the start of a turn: the stored form cannot tell them apart."""
    stored = _CUT.sub("", stored)
    parts = _ROLE.split(stored)
    if len(parts) < 2:
        return [stored] if stored else []
    # Each message was stored as "role: content\n": the newline is the store's, not the text's.
    return [
        content[:-1] if content.endswith("\n") else content
        for role, content in zip(parts[1::2], parts[2::2], strict=True)
        if role in _TURNS
    ]


def _head(turns: Sequence[str], n: int) -> str:
    """``"\n".join(turns)[:n]``, slicing each turn instead of joining them all."""
    parts, size = [], 0
    for t in turns:
        parts.append(t[: n - size])
        size += len(t)
        if size >= n:
            break
        size += 1  # the newline before the next turn
    return "\n".join(parts)[:n]


def _tail(turns: Sequence[str], n: int) -> str:
    """``"\n".join(turns)[-n:]``, slicing each turn instead of joining them all."""
    parts, size = [], 0
    for t in reversed(turns):
        parts.append(t[max(len(t) - (n - size), 0) :])
        size += len(t)
        if size >= n:
            break
        size += 1  # the newline after the turn before
    parts.reverse()
    return "\n".join(parts)[-n:]


def _window(turns: Sequence[str]) -> str:
    """The first and last ``WINDOW`` characters of the turns joined by newlines (all of
    them when they hold no more than ``2 * WINDOW``)."""
    if sum(map(len, turns)) + len(turns) - 1 <= 2 * WINDOW:
        return "\n".join(turns)
    return _head(turns, WINDOW) + "\n" + _tail(turns, WINDOW)


def _top(data: bytes) -> int:
    """The UTF-8 lead byte of the highest character of ``data`` (0: ASCII), by memchr from
    the highest lead byte down: a lead byte is never a continuation byte (0x80-0xBF)."""
    for lead in _LEADS:
        if lead in data:
            return lead
    return 0


def hashed(turns: Sequence[str], chars: int, features: Collection[str] = FAMILIES) -> set[int]:
    """The distinct 32-bit hashes of an input's features of the families ``features``.
    ``turns``: its user and assistant turns (``message_turns``, ``stored_turns``); ``chars``:
    the characters of all its messages (a record's ``features["chars"]``)."""
    found: set[int] = set()
    if "size" in features:
        found.add(zlib.crc32(b"#size=%d" % min(max(chars, 0).bit_length(), 24)))
    if _TEXT.isdisjoint(features):
        return found
    text = _window(turns)
    if "[" in text:
        text = _MASK.sub(" ", text)
    plain = text.isascii()
    data = text.lower().encode("utf-8", "replace")
    if "words" in features:
        spoken = data if plain else _SEPARATORS.sub(b" ", data)
        if b"@" in spoken:
            spoken = _ADDRESS.sub(b" ", spoken)
        words = spoken.translate(_SPACES).split()
        h = list(map(zlib.crc32, words))
        found.update(h)
        found.update(map(zlib.crc32, words[1:], map(xor, h, repeat(_PHRASE))))  # phrases
    if "range" in features:
        found.add(zlib.crc32(b"#range=%d" % (0 if plain else _top(data)) if text else b"#empty"))
    if "code" in features:
        code = (
            "```" in text
            or "=>" in text
            or _CODE_LINE.search(text) is not None
            or _CODE_END.search(text) is not None
        )
        found.add(zlib.crc32(b"#code" if code else b"#no-code"))
        found.add(zlib.crc32(b"#json" if "{" in text and '"' in text else b"#no-json"))
    return found


def _stale(data: Mapping[str, Any]) -> str:
    task = data.get("task")
    task = task if isinstance(task, str) and task else "T"
    return (
        f"a version {data.get('version')!r} model file: this cascade hashes other features "
        f"(version {VERSION}); fit it again with `cascade learn --task {task} --write`"
    )


class StartModel(BaseModel):
    """The file ``cascade learn --write`` writes: a logistic model of P(escalate | input)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(description="The file format's version.")
    task: str = Field(min_length=1)
    features: tuple[Family, ...] = Field(
        min_length=1,
        description="The feature families it was fitted on, and is scored on: words, size, "
        "range, code (size alone where the records held no input text).",
    )
    buckets: int = Field(ge=1, le=1 << 20, description="How many hashed feature weights.")
    bias: float
    weights: list[float]
    trained: dict[str, Any] = Field(
        default_factory=dict, description="What it was fitted on and its held-out metrics."
    )

    @model_validator(mode="before")
    @classmethod
    def _current(cls, data: Any) -> Any:
        # Before the fields: a file of another version is refused for that alone.
        if isinstance(data, dict) and data.get("version") != VERSION:
            raise ValueError(_stale(data))
        return data

    @field_validator("features")
    @classmethod
    def _distinct(cls, features: tuple[Family, ...]) -> tuple[Family, ...]:
        if len(set(features)) != len(features):
            raise ValueError(f"a family named twice: {list(features)}")
        return features

    @model_validator(mode="after")
    def _sized(self) -> StartModel:
        if len(self.weights) != self.buckets:
            raise ValueError(f"{len(self.weights)} weights for {self.buckets} buckets")
        if not all(math.isfinite(w) for w in (self.bias, *self.weights)):
            raise ValueError("weights must be finite numbers")
        return self

    def margin(self, hashes: Collection[int]) -> float:
        """The log-odds of escalation of an input's ``hashed`` features: the bias plus their
        weights' sum over the square root of their number (the input's feature vector has
        unit length, so a long input does not reach extreme odds by its length alone)."""
        if not hashes:
            return self.bias
        weights = self.weights
        total = sum(map(weights.__getitem__, map(mod, hashes, repeat(self.buckets))))
        return self.bias + total / math.sqrt(len(hashes))

    def probability(self, hashes: Collection[int]) -> float:
        """P(escalate) of an input's ``hashed`` features."""
        z = self.margin(hashes)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def of_messages(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """P(escalate) of a request's messages (what the engine asks before a call), from
        the feature families the model was fitted on."""
        texts = [content_text(m.get("content")) for m in messages]
        turns = [t for m, t in zip(messages, texts, strict=True) if m.get("role") in _TURNS]
        return self.probability(hashed(turns, sum(map(len, texts)), self.features))


def load_model(path: Path, *, policy: Path | None = None, field: str | None = None) -> StartModel:
    """Read and validate a model file. Raises ``PolicyError`` naming the file (and, when the
    file cannot be read at all, the policy field that names it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PolicyError(f"cannot read {path}: {e.strerror}", path=policy, field=field) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicyError(f"invalid JSON: {e}", path=path) from None
    if isinstance(data, dict) and data.get("version") != VERSION:
        raise PolicyError(_stale(data), path=path, field="version")
    try:
        return StartModel.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise PolicyError(first["msg"] + more, path=path, field=where) from None
