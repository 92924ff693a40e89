"""Cheap facts about a call's input that reports group escalations by (per call: C-speed scans)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pycld2

if TYPE_CHECKING:
    from ..events import Attempt


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


SCRIPTS = frozenset(name for name, _ in _SCRIPTS)  # what ``language`` says when CLD2 is unsure


def language_label(value: str) -> str:
    """How a report shows a ``language`` value: a script fallback reads as a script (``latin
    script``), so a short English input is not taken for Latin; codes as they are."""
    if value in SCRIPTS:
        return f"{value} script"
    return "no letters" if value == "none" else value


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


__all__ = ["SCRIPTS", "content_text", "features", "language", "language_label"]
