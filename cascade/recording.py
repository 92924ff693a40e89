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
from typing import Any, Literal

import pycld2

from .events import Attempt, CallRecord, Result

StoreInputs = Literal["full", "redacted", "hash", "none"]


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
    probability ``sample_passes``, which the record carries as its ``inclusion_probability``
    (1 for the always-kept ones). Unsampled records keep verdicts, tokens and costs but no
    outputs and no input. Returns a new ``CallRecord`` with a fresh uuid4 hex id.
    """
    attempts = result.attempts
    kept_always = result.escalated or not result.ok or any(a.error is not None for a in attempts)
    sampled = kept_always or rng() < sample_passes
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
        inclusion_probability=1.0 if kept_always else sample_passes,
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
_SAMPLE = 600  # characters of the last user message the language guess looks at


def _cld2(sample: str) -> tuple[bool, str]:
    try:
        reliable, _, found = pycld2.detect(sample)
    except UnicodeEncodeError:  # lone surrogates: CLD2 reads UTF-8 only
        return _cld2(sample.encode("utf-8", "replace").decode("utf-8"))
    except pycld2.error:  # control bytes CLD2 will not read: the script still says something
        return False, "un"
    return reliable, found[0][1]


def language(text: str) -> str:
    """The input's language: an ISO 639-1 code where CLD2 is sure of it, else its script.

    CLD2 (``pycld2``, Google's compact language detector, its model compiled in) takes about
    16 µs for 600 characters; below its reliability bar (a few words, code, numbers) the
    answer is the script (``latin``, ``cyrillic``, ...) or ``none``, never a guess.
    """
    sample = text[:_SAMPLE]
    reliable, found = _cld2(sample)
    if reliable and found != "un":
        return found.lower()
    if sample.isascii():
        return "latin" if any(c.isalpha() for c in sample) else "none"
    counts = [(len(rx.findall(sample)), name) for name, rx in _SCRIPTS]
    best, script = max(counts)
    return script if best else "none"


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
