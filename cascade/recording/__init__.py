"""From a finished call to what the store keeps: the record, its features, its counter increments.

Pure functions, no I/O. ``build_record`` is on the caller's path for every call, so the
features are cheap (linear in the text, a few C-speed scans) and the expensive parts
(redaction, hashing, truncation) only run for sampled records. ``redact`` (``masks.py``)
masks secrets and personal data in linear time; ``features.py`` computes the input's facts.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from ..events import CallRecord
from .features import SCRIPTS, content_text, features, language, language_label
from .masks import redact

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ..events import Attempt, Observation, Result

StoreMode = Literal["full", "redacted", "hash", "none"]
StoreInputs = StoreMode  # the name of the policy field it was made for first

# Redaction of a truncated output sees this many characters past the cut, so that a secret
# lying across it is still recognised (and masked) rather than kept in part.
_REDACT_PAST_CUT = 256
# Redaction is linear but costs about a microsecond per character on the caller's path (the
# proxy's event loop): a redacted input keeps its first 32,768 characters, cut and marked.
REDACTED_INPUT_CHARS = 32_768


def build_record(
    result: Result,
    messages: Sequence[Mapping[str, Any]],
    *,
    latency_s: float,
    store_inputs: StoreMode = "redacted",
    store_outputs: StoreMode = "redacted",
    sample_passes: float = 0.05,
    stored_output_chars: int = 2000,
    observation: Observation | None = None,
    extra: Mapping[str, Any] | None = None,
    rng: Callable[[], float] = random.random,
    now: Callable[[], float] = time.time,
) -> CallRecord:
    """Turn a finished call into the record the store keeps.

    Escalated, failed and errored calls are always sampled (kept whole); passing calls with
    probability ``sample_passes``, which the record carries as its ``inclusion_probability``
    (1 for the always-kept ones). Unsampled records keep verdicts, tokens and costs but no
    outputs and no input. Sampled records keep the input as ``store_inputs`` says and every
    attempt's output (and an ``observation``'s two outputs) as ``store_outputs`` says, cut
    to ``stored_output_chars``. Returns a new ``CallRecord`` with a fresh uuid4 hex id,
    carrying ``extra`` (what the store keeps beside the call) as given.
    """
    attempts = result.attempts
    kept_always = result.escalated or not result.ok or any(a.error is not None for a in attempts)
    sampled = kept_always or rng() < sample_passes
    if sampled:
        kept = tuple(_stored(a, store_outputs, stored_output_chars) for a in attempts)
        stored_input = render_input(messages, store_inputs)
    else:
        kept = tuple(replace(a, output="") if a.output else a for a in attempts)
        stored_input = None
    if observation is not None:
        observation = replace(
            observation,
            cheap_output=stored_output(
                observation.cheap_output, store_outputs, stored_output_chars
            ),
            strong_output=stored_output(
                observation.strong_output, store_outputs, stored_output_chars
            ),
        )
    return CallRecord(
        id=uuid.uuid4().hex,
        time=now(),
        task=result.task,
        mode=result.mode,
        models=tuple(dict.fromkeys(a.model for a in attempts)),
        model=result.model,
        escalated=result.escalated,
        ok=result.ok,
        attempts=kept,
        cost_usd=result.cost_usd,
        baseline_cost_usd=result.baseline_cost_usd,
        latency_s=latency_s,
        prompt_tokens=sum(a.prompt_tokens for a in attempts),
        completion_tokens=sum(a.completion_tokens for a in attempts),
        features=features(messages, attempts),
        input=stored_input,
        sampled=sampled,
        inclusion_probability=1.0 if kept_always else sample_passes,
        observation=observation,
        extra={} if extra is None else extra,
    )


def _stored(attempt: Attempt, mode: StoreMode, limit: int) -> Attempt:
    if not attempt.output:
        return attempt
    output = stored_output(attempt.output, mode, limit)
    return attempt if output is attempt.output else replace(attempt, output=output)


def stored_output(text: str, mode: StoreMode, limit: int) -> str:
    """The stored form of a model's output: cut to ``limit`` characters (``full``), also
    masked (``redacted``), a sha256 of the whole output (``hash``), or ``""`` (``none``)."""
    if not text or mode == "none":
        return ""
    if mode == "hash":
        return _sha256(text)
    extra = len(text) - limit
    if mode == "full":
        return text if extra <= 0 else f"{text[:limit]}…[truncated {extra} chars]"
    if mode == "redacted":
        return _redacted(text, limit)
    raise ValueError(f"store_outputs must be full, redacted, hash or none, not {mode!r}")


def render_input(messages: Sequence[Mapping[str, Any]], mode: StoreMode) -> str | None:
    """The stored form of the input: role-prefixed lines, redacted, a sha256, or None."""
    if mode == "none":
        return None
    text = "".join(f"{m.get('role', '')}: {content_text(m.get('content'))}\n" for m in messages)
    if mode == "full":
        return text
    if mode == "hash":
        return _sha256(text)
    if mode == "redacted":
        return _redacted(text, REDACTED_INPUT_CHARS)
    raise ValueError(f"store_inputs must be full, redacted, hash or none, not {mode!r}")


def _redacted(text: str, limit: int) -> str:
    extra = len(text) - limit
    if extra <= 0:
        return redact(text)
    end = limit + _REDACT_PAST_CUT
    window = redact(text[:end])
    if end < len(text) and not text[end].isspace():
        # The window's end split a word, which may be part of a secret its mask would have
        # taken whole; masks shorten the text, so that part can move into what is kept: drop it.
        window = window[: max(window.rfind(" "), window.rfind("\n"), window.rfind("\t")) + 1]
    return f"{window[:limit]}…[truncated {extra} chars]"


def _sha256(text: str) -> str:
    # surrogatepass: a lone surrogate from a client hashes instead of raising.
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = [
    "REDACTED_INPUT_CHARS",
    "SCRIPTS",
    "StoreInputs",
    "StoreMode",
    "build_record",
    "content_text",
    "features",
    "language",
    "language_label",
    "redact",
    "render_input",
    "stored_output",
]
