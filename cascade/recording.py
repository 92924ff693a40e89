"""From a finished call to what the store keeps: the record, its features, its counter increments.

Pure functions, no I/O. ``build_record`` is on the caller's path for every call, so the
features are cheap (linear in the text, a few C-speed scans) and the expensive parts
(redaction, hashing, truncation) only run for sampled records.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Literal

from .events import LATENCY_BUCKETS_MS, Attempt, CallRecord, Result, TaskDay

StoreInputs = Literal["full", "redacted", "hash", "none"]

# Counter names shared by every backend (the Redis day hash uses them as field names).
INT_COUNTERS = ("calls", "escalations", "not_ok", "prompt_tokens", "completion_tokens")
FLOAT_COUNTERS = ("cost_usd", "baseline_cost_usd")
FAIL_PREFIX = "fail:"
LATENCY_PREFIX = "lat:"
LATENCY_LABELS: tuple[str, ...] = tuple(
    "inf" if b == float("inf") else f"{b:g}" for b in LATENCY_BUCKETS_MS
)


def build_record(
    result: Result,
    messages: Sequence[Mapping[str, Any]],
    *,
    latency_s: float,
    store_inputs: StoreInputs = "redacted",
    sample_passes: float = 0.05,
    stored_output_chars: int = 2000,
    rng: Callable[[], float] = random.random,
    now: Callable[[], float] = time.time,
) -> CallRecord:
    """Turn a finished call into the record the store keeps.

    Escalated, failed and errored calls are always sampled (kept whole); passing calls with
    probability ``sample_passes``. Unsampled records keep verdicts, tokens and costs but no
    outputs and no input. Returns a new ``CallRecord`` with a fresh uuid4 hex id.
    """
    attempts = result.attempts
    sampled = (
        result.escalated
        or not result.ok
        or any(a.error is not None for a in attempts)
        or rng() < sample_passes
    )
    if sampled:
        kept = tuple(_truncated(a, stored_output_chars) for a in attempts)
        stored_input = render_input(messages, store_inputs)
    else:
        kept = tuple(replace(a, output="") if a.output else a for a in attempts)
        stored_input = None
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
    )


def _truncated(attempt: Attempt, limit: int) -> Attempt:
    extra = len(attempt.output) - limit
    if extra <= 0:
        return attempt
    return replace(attempt, output=f"{attempt.output[:limit]}…[truncated {extra} chars]")


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, None, or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"]
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def render_input(messages: Sequence[Mapping[str, Any]], mode: StoreInputs) -> str | None:
    """The stored form of the input: role-prefixed lines, redacted, a sha256, or None."""
    if mode == "none":
        return None
    text = "".join(f"{m.get('role', '')}: {content_text(m.get('content'))}\n" for m in messages)
    if mode == "full":
        return text
    if mode == "hash":
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    if mode == "redacted":
        return redact(text)
    raise ValueError(f"store_inputs must be full, redacted, hash or none, not {mode!r}")


# --- redaction -------------------------------------------------------------------------------

# Redaction runs on every sampled record, so each pattern starts with a literal or a
# character class (the regex engine then skips ahead) and cheap ``in`` tests skip the rest.
_SECRET = re.compile(
    r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}|\bsk-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b"
)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_NUMBERS = re.compile(r"[+(\d][\d ().-]{5,}\d")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w)"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else m.group()


def _phone(m: re.Match[str]) -> str:
    text = m.group()
    digits = sum(c.isdigit() for c in text)
    marked = text.startswith("+") or "(" in text
    # Without a country code or area-code brackets, only long separated runs are phones:
    # this keeps dates, versions, IP-like and short grouped numbers untouched.
    if not 7 <= digits <= 15 or (not marked and digits < 10) or _DATE.fullmatch(text):
        return text
    return "[PHONE]"


def _long_token(m: re.Match[str]) -> str:
    token = m.group()
    # Keys mix letters and digits; a long plain word or number is left alone.
    if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
        return "[SECRET]"
    return token


def _numbers(m: re.Match[str]) -> str:
    return _PHONE.sub(_phone, _CARD.sub(_card, m.group()))


def redact(text: str) -> str:
    """Mask secrets, emails, Luhn-valid card numbers and phone numbers in ``text``."""
    if "Bearer" in text or "sk-" in text or "AKIA" in text:
        text = _SECRET.sub("[SECRET]", text)
    text = _LONG_TOKEN.sub(_long_token, text)
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    return _NUMBERS.sub(_numbers, text)


# --- features --------------------------------------------------------------------------------

# Each pattern starts with a literal, so the regex engine skips ahead instead of trying
# every position: this runs on every call.
_CODE_LINE = re.compile(
    r"\n[ \t]*(?:def|class|import|from|function|const|let|var|public|#include|SELECT)\b"
)
_CODE_END = re.compile(r"[;{}][ \t]*(?:\n|$)")
_SCRIPTS = (
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("cjk", re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
    ("hebrew", re.compile(r"[\u0590-\u05ff]")),
    ("greek", re.compile(r"[\u0370-\u03ff]")),
    ("devanagari", re.compile(r"[\u0900-\u097f]")),
    ("thai", re.compile(r"[\u0e00-\u0e7f]")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]")),
)
_STOP_WORDS = {
    code: frozenset(words.split())
    for code, words in (
        ("en", "the and is are of to in that what with for this how"),
        ("es", "el la los las que es y de en por para una con cómo"),
        ("fr", "le la les est et de des que une pour dans avec qui"),
        ("de", "der die das und ist nicht ein eine mit für ich wie"),
        ("pt", "o os que não uma com para do da em são como você"),
        ("it", "il lo gli che è e di una per con non sono come"),
    )
}
_SAMPLE = 600  # characters of the last user message the language guess looks at


def language(text: str) -> str:
    """A cheap guess: a language code for latin text with clear stop words, else the script."""
    sample = text[:_SAMPLE]
    if sample.isascii():
        script = "latin" if any(c.isalpha() for c in sample) else "none"
    else:
        counts = [(len(rx.findall(sample)), name) for name, rx in _SCRIPTS]
        best, script = max(counts)
        script = script if best else "none"
    if script != "latin":
        return script
    words = sample.lower().split()
    hits = max((len(_STOP_WORDS[code].intersection(words)), code) for code in _STOP_WORDS)
    return hits[1] if hits[0] >= 2 else "latin"


def _has_code(text: str) -> bool:
    return (
        "```" in text
        or "=>" in text
        or _CODE_LINE.search("\n" + text) is not None
        or _CODE_END.search(text) is not None
    )


def features(messages: Sequence[Mapping[str, Any]], attempts: Sequence[Attempt]) -> dict[str, Any]:
    """Cheap facts about the input that reports group escalations by."""
    texts = [content_text(m.get("content")) for m in messages]
    last_user = next(
        (
            t
            for m, t in zip(reversed(messages), reversed(texts), strict=True)
            if m.get("role") == "user"
        ),
        "",
    )
    return {
        "message_count": len(messages),
        "chars": sum(map(len, texts)),
        "prompt_tokens": attempts[0].prompt_tokens if attempts else 0,
        "user_chars": len(last_user),
        "has_code": _has_code(last_user),
        "has_json": "{" in last_user and '"' in last_user,
        "language": language(last_user),
        "lines": last_user.count("\n") + 1 if last_user else 0,
        "question": last_user.rstrip().endswith("?"),
    }


# --- daily counters --------------------------------------------------------------------------


def day_of(timestamp: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of a unix time."""
    return _day(int(timestamp // 86400))  # unix time has no leap seconds: 86,400 s a day


@lru_cache(maxsize=64)
def _day(days: int) -> str:  # formatted once a day, not once a call
    return (_EPOCH + timedelta(days=days)).isoformat()


_EPOCH = date(1970, 1, 1)


def latency_label(latency_s: float) -> str:
    """The latency bucket (a bound of ``LATENCY_BUCKETS_MS`` as text) a call falls in."""
    ms = latency_s * 1000
    for bound, label in zip(LATENCY_BUCKETS_MS, LATENCY_LABELS, strict=True):
        if ms <= bound:
            return label
    return "inf"


def failure_names(record: CallRecord) -> set[str]:
    """Validators that failed on any attempt, and ``provider:<kind>`` for provider errors."""
    names = {v.validator for a in record.attempts for v in a.verdicts if not v.passed}
    for a in record.attempts:
        if a.error is not None:
            names.add("provider:" + re.split(r"[ :]", a.error, maxsplit=1)[0])
    return names


def day_delta(record: CallRecord) -> dict[str, int | float]:
    """The counter increments one call makes to its task's day, as flat field names.

    Fields: ``calls``, ``escalations``, ``not_ok``, ``cost_usd``, ``baseline_cost_usd``,
    ``prompt_tokens``, ``completion_tokens``, ``fail:<name>`` and ``lat:<bound>``; zeros
    are left out. The day is ``day_of(record.time)``.
    """
    delta: dict[str, int | float] = {
        "calls": 1,
        "escalations": int(record.escalated),
        "not_ok": int(not record.ok),
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost_usd": record.cost_usd or 0.0,
        "baseline_cost_usd": record.baseline_cost_usd or 0.0,
        LATENCY_PREFIX + latency_label(record.latency_s): 1,
    }
    for name in failure_names(record):
        delta[FAIL_PREFIX + name] = 1
    return {k: v for k, v in delta.items() if v}


def merge_day(day: TaskDay, counters: Mapping[str, int | float | str | bytes]) -> TaskDay:
    """A copy of ``day`` with flat counters (as ``day_delta`` makes them) added in.

    Values may be numbers or their text (as Redis returns them); unknown fields are ignored.
    """
    values: dict[str, Any] = {}
    failures = dict(day.failures)
    latency = dict(day.latency_ms)
    for key, raw in counters.items():
        if key in FLOAT_COUNTERS:
            values[key] = values.get(key, getattr(day, key)) + float(raw)
        elif key in INT_COUNTERS:
            values[key] = values.get(key, getattr(day, key)) + int(raw)
        elif key.startswith(FAIL_PREFIX):
            name = key[len(FAIL_PREFIX) :]
            failures[name] = failures.get(name, 0) + int(raw)
        elif key.startswith(LATENCY_PREFIX):
            label = key[len(LATENCY_PREFIX) :]
            latency[label] = latency.get(label, 0) + int(raw)
    return replace(day, failures=failures, latency_ms=latency, **values)


def flat_counters(day: TaskDay) -> dict[str, int | float]:
    """The counters of ``day`` as flat fields, the inverse of ``merge_day``."""
    flat: dict[str, int | float] = {k: getattr(day, k) for k in INT_COUNTERS + FLOAT_COUNTERS}
    flat.update({FAIL_PREFIX + k: v for k, v in day.failures.items()})
    flat.update({LATENCY_PREFIX + k: v for k, v in day.latency_ms.items()})
    return flat
