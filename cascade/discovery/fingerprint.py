"""A request's fingerprint: what identifies its task when nothing names one.

The system (and developer) prompt with its variable parts masked (URLs, e-mail addresses,
quoted values, dates, identifiers, numbers), the names of the tools it offers, its
``response_format`` schema and the model it asked for, hashed with SHA-256: the same in every
process, so that requests from one template with different values are one task.

Prompts are written by whoever calls the proxy, so every mask is linear in the prompt's
length: a pattern that starts with a repeated class may only start where a run of that class
starts (a look-behind), so the engine never rescans a run from each of its characters, and a
bounded quoted value may not contain the character that opens one, so no character is
scanned from two openers.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from ..validators import schema_text

# The version of the masking rules, hashed with everything else: a change of rules makes
# new names rather than silently merging or splitting the tasks of old records.
# 2: an identifier is masked whatever its length (INV-9 and INV-2041 are one task), and a
#    quoted value may not contain an opening quote.
_VERSION = 2
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![\w.])(?:https?://|ftp://|www\.)[^\s\"'<>()\[\]{}]+"), "<url>"),
    (re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    # Quoted values, bounded so that an unclosed quote costs a bounded look-ahead.
    (re.compile(r"\"[^\"\n]{0,300}\"|\u201c[^\u201c\u201d\n]{0,300}\u201d"), "<quoted>"),
    # A single quote between two letters inside a value is an apostrophe ('O'Brien'); one
    # after a non-letter could open a value, so it ends the run instead.
    (
        re.compile(r"(?<![\w'])'(?:[^'\n]|(?<=\w)'(?=\w)){1,300}'(?!\w)|`[^`\n]{1,300}`"),
        "<quoted>",
    ),
    (
        re.compile(
            r"(?<!\d)(?:\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?"
            r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})(?!\d)"
        ),
        "<date>",
    ),
    # Identifiers: a run of word characters or dashes with a digit that is not all digits,
    # whatever its length (INV-9 and INV-2041 fill one slot of a template); plain numbers
    # are <n> below.
    (re.compile(r"(?<![\w-])(?=[\w-]*\d)(?!\d+(?![\w-]))[\w-]+"), "<id>"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
)
_SPACE = re.compile(r"\s+")
_quoted = encode_basestring_ascii
_WORD = re.compile(r"[a-z0-9]+")
_PLACEHOLDERS = frozenset({"url", "email", "quoted", "date", "id", "n"})
_FILLER = frozenset({"you", "are", "a", "an", "as", "act", "your", "role", "is"})
_SLUG_WORDS = 4
_PROMPT_ROLES = ("system", "developer")
_CACHE_SIZE = 4096


def mask(text: str) -> str:
    """``text`` with its variable parts replaced by ``<url>``, ``<email>``, ``<quoted>``,
    ``<date>``, ``<id>`` and ``<n>``, and its whitespace collapsed to single spaces."""
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What identifies a request's task: ``digest`` (hex SHA-256) over the masked
    ``prompt``, the ``tools`` names (sorted), the ``response_format`` (its schema, or
    ``"json_object"``) and the requested ``model``; ``task`` the readable name."""

    digest: str
    task: str
    prompt: str
    tools: tuple[str, ...]
    response_format: Any
    model: str | None
    prompt_raw: str = field(default="", repr=False, compare=False)  # for `match: system`

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON types), kept with the task's records for ``promote``."""
        return {
            "fingerprint": self.digest,
            "prompt": self.prompt[:1000],
            "tools": list(self.tools),
            "response_format": self.response_format,
            "model": self.model,
        }


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The system and developer messages' text, in order, one per line."""
    parts = []
    for m in messages:
        if (type(m) is dict or isinstance(m, Mapping)) and m.get("role") in _PROMPT_ROLES:
            content = m.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    p["text"]
                    for p in content
                    if isinstance(p, Mapping) and isinstance(p.get("text"), str)
                )
    return "\n".join(parts)


def tool_names(tools: Any) -> tuple[str, ...]:
    """The sorted, distinct function names of a request's ``tools``."""
    if not tools or not isinstance(tools, Sequence):
        return ()
    names = set()
    for tool in tools:
        is_map = type(tool) is dict or isinstance(tool, Mapping)  # dicts skip the ABC test
        fn = tool.get("function") if is_map else None
        name = fn.get("name") if type(fn) is dict or isinstance(fn, Mapping) else None
        if name is None and is_map:
            name = tool.get("name")  # the Responses API's flat function tools
        if isinstance(name, str):
            names.add(name)
    return tuple(sorted(names))


def format_of(response_format: Any) -> Any:
    """The part of ``response_format`` that identifies a task: a json_schema's schema (with
    its name), ``"json_object"``, or None."""
    if response_format is None or not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if isinstance(spec, Mapping):
            return {"name": spec.get("name"), "schema": spec.get("schema")}
        return {"schema": None}
    return kind if isinstance(kind, str) and kind != "text" else None


def _format_key(response_format: Any) -> str | None:
    """``json.dumps(format_of(response_format), sort_keys=True)``, with the schema written
    once per schema object (``schema_text``), not once per call."""
    if response_format is None:
        return None
    if (
        type(response_format) is dict or isinstance(response_format, Mapping)
    ) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if type(spec) is dict or isinstance(spec, Mapping):
            name = spec.get("name")
            # json.dumps of a str is this C function's result, without dumps' own checks.
            named = _quoted(name) if type(name) is str else json.dumps(name, sort_keys=True)
            return f'{{"name": {named}, "schema": {schema_text(spec.get("schema"))}}}'
    rf = format_of(response_format)
    return None if rf is None else json.dumps(rf, sort_keys=True)


_cache: OrderedDict[tuple[Any, ...], Fingerprint] = OrderedDict()
_lock = threading.Lock()


def fingerprint(
    messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], model: str | None
) -> Fingerprint:
    """The fingerprint of a chat request (``params``: its other arguments).

    Recent results are cached by the unmasked inputs: most applications send one fixed
    system prompt per task, so masking runs once per prompt, not once per call.
    """
    prompt = prompt_text(messages)
    tools = tool_names(params.get("tools"))
    response_format = params.get("response_format")
    try:
        rf_key = _format_key(response_format)
        unreadable = False
    except (TypeError, ValueError, RecursionError):
        rf_key, unreadable = repr(format_of(response_format)), True
    key = (prompt, tools, rf_key, model)
    found = _cache.get(key)
    if found is not None:
        return found
    rf = rf_key if unreadable else format_of(response_format)
    masked = mask(prompt)
    canonical = json.dumps(
        [_VERSION, masked, list(tools), rf_key, model], ensure_ascii=False, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    found = Fingerprint(digest, task_name(masked, model, digest), masked, tools, rf, model, prompt)
    with _lock:
        _cache[key] = found
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return found


def task_name(masked: str, model: str | None, digest: str) -> str:
    """``<slug of the prompt's first words>-<6 hex digits of the digest>``; with no prompt,
    the requested model's name (or ``chat``) stands for the words."""
    words = [w for w in _WORD.findall(masked[:400].lower()) if w not in _PLACEHOLDERS]
    while words and words[0] in _FILLER:
        words.pop(0)
    slug = "-".join(words[:_SLUG_WORDS])[:48].strip("-")
    if not slug:
        slug = "-".join(_WORD.findall((model or "chat").lower()))[:48] or "chat"
    return f"{slug}-{digest[:6]}"


__all__ = ["Fingerprint", "fingerprint", "format_of", "mask", "prompt_text", "task_name"]
