"""A learned start: P(escalate | input), fitted by ``cascade learn`` on the task's records.

The model is a logistic regression over hashed features of the input: every word and
two-word phrase of the user and assistant turns' first and last ``WINDOW`` characters, the
input's size (a power-of-two bucket of its characters), its script (the block of its highest
code point) and whether it holds code or JSON. Each feature is hashed (CRC-32, the same in
every process) into one of ``buckets`` weights.

``hashed`` is the one extractor: ``cascade learn`` reads a record's stored input through it
and the engine a live request's messages, so the model scores what it was fitted on. It
reads at most ``2 * WINDOW`` characters whatever the input's length (bytes.translate, split,
CRC-32 per word, a set, one weight per distinct feature: all C loops), so scoring costs the
same for a 200-character and a 100,000-character request; it runs once per call, before the
first model is asked. The file (``policies/_<task>.start.json``) is read and validated once,
when the policy is loaded.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from itertools import repeat
from operator import xor
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
    "VERSION",
    "WINDOW",
    "StartModel",
    "hashed",
    "load_model",
    "message_text",
    "stored_text",
]

VERSION: Literal[2] = 2  # 2: words of a bounded window, no language guess (1 read 4,000 chars)
WINDOW = 256  # characters read from each end of the user and assistant turns
# On the UTF-8 of the lower-cased window: every ASCII byte that is not a letter becomes a
# space, so ``split`` yields words (digits, punctuation, and with them numbers, dates and
# the shapes of e-mail addresses go); bytes of non-ASCII letters stay in their words.
_SPACES = bytes(
    c if (0x61 <= c <= 0x7A or c >= 0x80) else 0x20 for c in range(256)
)  # fmt: skip
_PHRASE = 0x5BD1E995  # seeds a phrase's CRC-32 apart from its first word's own
_ROLE = re.compile(r"(?m)^(system|developer|user|assistant|tool): ")
_MASK = re.compile(r"\[[A-Z_]+\]")  # what redaction put in stored inputs: not the user's words
_CUT = re.compile(r"…\[truncated \d+ chars\]$")  # a long stored input's end marker
_CODE_LINE = re.compile(
    r"\n[ \t]*(?:def|class|import|from|function|const|let|var|public|#include|SELECT)\b"
)
_CODE_END = re.compile(r"[;{}][ \t]*(?:\n|$)")
_TURNS = ("user", "assistant")


def message_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the user and assistant turns of a request, as the model reads it."""
    return "\n".join(content_text(m.get("content")) for m in messages if m.get("role") in _TURNS)


def stored_text(stored: str) -> str:
    """The same text from a stored input (``role: content`` lines, maybe redacted or cut)."""
    stored = _CUT.sub("", stored)
    parts = _ROLE.split(stored)
    if len(parts) > 1:
        stored = "\n".join(
            content for role, content in zip(parts[1::2], parts[2::2], strict=False)
            if role in _TURNS
        )  # fmt: skip
    return _MASK.sub(" ", stored)


def hashed(text: str, chars: int) -> set[int]:
    """The distinct 32-bit hashes of an input's features. ``text``: its user and assistant
    turns (``message_text``, ``stored_text``); ``chars``: the characters of all its messages
    (a record's ``features["chars"]``)."""
    if len(text) > 2 * WINDOW:
        text = text[:WINDOW] + "\n" + text[-WINDOW:]
    words = text.lower().encode("utf-8", "replace").translate(_SPACES).split()
    h = list(map(zlib.crc32, words))
    found = set(h)
    found.update(map(zlib.crc32, words[1:], map(xor, h, repeat(_PHRASE))))  # two-word phrases
    code = (
        "```" in text
        or "=>" in text
        or _CODE_LINE.search(text) is not None
        or _CODE_END.search(text) is not None
    )
    top = ord(max(text)) >> 8 if text else -1
    found.add(zlib.crc32(b"#size=%d" % min(max(chars, 0).bit_length(), 24)))
    found.add(zlib.crc32(b"#script=%d" % top))
    found.add(zlib.crc32(b"#code" if code else b"#no-code"))
    found.add(zlib.crc32(b"#json" if "{" in text and '"' in text else b"#no-json"))
    return found


class StartModel(BaseModel):
    """The file ``cascade learn --write`` writes: a logistic model of P(escalate | input)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(description="The file format's version.")
    task: str = Field(min_length=1)
    buckets: int = Field(ge=1, le=1 << 20, description="How many hashed feature weights.")
    bias: float
    weights: list[float]
    trained: dict[str, Any] = Field(
        default_factory=dict, description="What it was fitted on and its held-out metrics."
    )

    @field_validator("version")
    @classmethod
    def _current(cls, version: int) -> int:
        if version != VERSION:
            raise ValueError(
                f"version {version} model files hash other features than this cascade's "
                f"(version {VERSION}): fit it again with `cascade learn --write`"
            )
        return version

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
        total = sum(map(weights.__getitem__, map(self.buckets.__rmod__, hashes)))
        return self.bias + total / math.sqrt(len(hashes))

    def probability(self, hashes: Collection[int]) -> float:
        """P(escalate) of an input's ``hashed`` features."""
        z = self.margin(hashes)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def of_messages(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """P(escalate) of a request's messages (what the engine asks before a call)."""
        texts = [content_text(m.get("content")) for m in messages]
        turns = "\n".join(
            t for m, t in zip(messages, texts, strict=True) if m.get("role") in _TURNS
        )
        return self.probability(hashed(turns, sum(map(len, texts))))


def load_model(path: Path, *, policy: Path | None = None, field: str | None = None) -> StartModel:
    """Read and validate a model file. Raises ``PolicyError`` naming the file (and, when the
    file cannot be read at all, the policy field that names it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PolicyError(f"cannot read {path}: {e.strerror}", path=policy, field=field) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicyError(f"invalid JSON: {e}", path=path) from None
    try:
        return StartModel.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise PolicyError(first["msg"] + more, path=path, field=where) from None
