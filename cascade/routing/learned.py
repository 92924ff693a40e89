"""A learned start: P(escalate | input), fitted by ``cascade learn`` on the task's records.

The model is a logistic regression over hashed features of the input: every word and
two-word phrase of the user and assistant turns (their last ``TEXT_CHARS`` characters),
the prompt's size (a power-of-two bucket of its characters), its language, and whether it
holds code or JSON (``cascade.recording.features``, the facts the report groups by). Each
feature is hashed (CRC-32, the same in every process) into one of ``buckets`` weights.

Scoring is linear in the text it reads (one regex pass, CRC-32 of each word, a set, one
weight per distinct feature: all C loops) and bounded by ``TEXT_CHARS``; it runs once per
call, before the first model is asked. The file (``policies/_<task>.start.json``) is read
and validated once, when the policy is loaded.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from operator import xor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..exceptions import PolicyError
from ..recording import content_text, features

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "TEXT_CHARS",
    "VERSION",
    "StartModel",
    "hashed",
    "load_model",
    "message_text",
    "stored_text",
]

VERSION: Literal[1] = 1
TEXT_CHARS = 4000  # the last characters of the user and assistant turns whose words count
_WORD = re.compile(rb"[a-z\x80-\xff]+(?:'[a-z\x80-\xff]+)*")  # on UTF-8: non-ASCII letters too
_MIX = 0x9E3779B1  # spreads the first word's hash before it is combined into a phrase's
_ROLE = re.compile(r"(?m)^(system|developer|user|assistant|tool): ")
_MASK = re.compile(r"\[[A-Z_]+\]")  # what redaction put in stored inputs: not the user's words
_TURNS = ("user", "assistant")


def message_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the user and assistant turns of a request, as the model reads it."""
    return "\n".join(content_text(m.get("content")) for m in messages if m.get("role") in _TURNS)


def stored_text(stored: str) -> str:
    """The same text from a stored input (``role: content`` lines, maybe redacted)."""
    parts = _ROLE.split(stored)
    if len(parts) > 1:
        stored = "\n".join(
            content for role, content in zip(parts[1::2], parts[2::2], strict=False)
            if role in _TURNS
        )  # fmt: skip
    return _MASK.sub(" ", stored)


def _facts(feats: Mapping[str, Any]) -> Iterable[bytes]:
    chars = int(feats.get("chars") or 0)
    yield b"#size=%d" % min(chars.bit_length(), 24)
    yield b"#language=" + str(feats.get("language", "none")).lower().encode()
    yield b"#code" if feats.get("has_code") else b"#no-code"
    yield b"#json" if feats.get("has_json") else b"#no-json"


def hashed(text: str, feats: Mapping[str, Any]) -> set[int]:
    """The distinct 32-bit hashes of an input's features (``text``: its user and assistant
    turns; ``feats``: ``cascade.recording.features`` of its messages)."""
    words = _WORD.findall(text[-TEXT_CHARS:].lower().encode("utf-8", "replace"))
    h = list(map(zlib.crc32, words))
    found = set(h)
    found.update(map(xor, map(_MIX.__mul__, h), h[1:]))  # two-word phrases
    found.update(map(zlib.crc32, _facts(feats)))
    return found


class StartModel(BaseModel):
    """The file ``cascade learn --write`` writes: a logistic model of P(escalate | input)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = Field(description="The file format's version.")
    task: str = Field(min_length=1)
    buckets: int = Field(ge=1, le=1 << 20, description="How many hashed feature weights.")
    bias: float
    weights: list[float]
    trained: dict[str, Any] = Field(
        default_factory=dict, description="What it was fitted on and its held-out metrics."
    )

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
        return self.probability(hashed(message_text(messages), features(messages, ())))


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
