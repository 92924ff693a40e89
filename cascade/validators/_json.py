"""Finding the JSON value in a model's answer, shared by the schema and structure validators.

Models put JSON in three ways: the whole answer (JSON mode, or a well-behaved prompt), a
fenced block (```json ... ```) inside prose, or an object dropped in the middle of a
sentence. ``extract_json`` tries them in that order; the first costs one ``json.loads``.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e400: a literal too large for a float
        raise ValueError(f"{text[:40]} is too large for a number")
    return value


# Strict JSON, as validation needs it: NaN, Infinity and -Infinity (which Python's json
# accepts) are refused, and so is a number that overflows to infinity, so that a hostile
# {"total": NaN} cannot pass `minimum: 0` (every comparison with NaN is false).
_DECODER = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite)


def loads(text: str) -> Any:
    """``json.loads`` of a str, refusing NaN, Infinity and numbers that overflow. Raises
    ``ValueError`` (``json.JSONDecodeError`` for syntax) or ``RecursionError``."""
    return _DECODER.decode(text)


# Past this many candidate starts the scan gives up: adversarial text such as "[[[[..."
# would otherwise cost quadratic time, and real answers have their JSON near the top.
_MAX_SCAN_STARTS = 64
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NotJSON(ValueError):
    """The answer holds no JSON value; the message is the verdict's reason."""


def extract_json(text: str, *, scan: bool = True) -> Any:
    """The JSON value in ``text``: the whole stripped text, else the first fenced block
    (a ``json`` one first), else (when ``scan``) the first object or array found in it.

    Raises ``NotJSON`` ("no JSON found in the answer" or "invalid JSON: <why>").
    """
    stripped = text.strip()
    try:
        return _DECODER.decode(stripped)
    except (ValueError, RecursionError) as e:
        # Text that starts like JSON and still fails is reported as broken JSON.
        first_error = _why(e) if stripped[:1] in ("{", "[") else None
    if "```" in stripped:
        blocks = fenced_blocks(stripped)
        ordered = [b for lang, b in blocks if lang.lower() == "json"] or [b for _, b in blocks]
        if ordered:
            try:
                return _DECODER.decode(ordered[0])
            except (ValueError, RecursionError) as e:
                first_error = first_error or _why(e)
    if scan:
        found = _scan(stripped)
        if found is not _MISSING:
            return found
    if first_error is not None:
        raise NotJSON(f"invalid JSON: {first_error}")
    raise NotJSON("no JSON found in the answer")


_MISSING = object()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block of ``text``, as (its language, its body): a fence, an info string
    up to the end of its line, the body up to the next fence. Found by ``str.find``, each
    character looked at a bounded number of times (a regex over the same syntax backtracks
    quadratically on a fence followed by a long line)."""
    blocks: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = text.find("```", pos)
        if start < 0:
            return blocks
        newline = text.find("\n", start + 3)
        if newline < 0:
            return blocks
        end = text.find("```", newline + 1)
        if end < 0:
            return blocks
        info = text[start + 3 : newline].lstrip(" \t")
        n = 0
        while n < len(info) and (info[n].isalnum() or info[n] in "_+.-"):
            n += 1
        blocks.append((info[:n], text[newline + 1 : end]))
        pos = end + 3


def _scan(text: str) -> Any:
    """The first object or array that decodes, starting from each '{' or '['."""
    starts = 0
    i = _next_start(text, 0)
    while i >= 0 and starts < _MAX_SCAN_STARTS:
        starts += 1
        try:
            return _DECODER.raw_decode(text, i)[0]
        except (ValueError, RecursionError):
            i = _next_start(text, i + 1)
    return _MISSING


def _next_start(text: str, pos: int) -> int:
    brace, bracket = text.find("{", pos), text.find("[", pos)
    if brace < 0 or bracket < 0:
        return max(brace, bracket)
    return min(brace, bracket)


def _why(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e)[:200]


def json_path(parts: Iterable[str | int]) -> str:
    """A JSONPath-like location for error messages: ``$.items[0].price``."""
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENTIFIER.match(p):
            out += f".{p}"
        else:
            out += f"[{json.dumps(p, ensure_ascii=False)}]"
    return out


def short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value cut to ``limit`` characters, for reasons that quote an input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["NotJSON", "extract_json", "fenced_blocks", "json_path", "loads", "short"]
