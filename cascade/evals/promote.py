"""``cascade tasks promote``: a policy file for a discovered task, from its recorded answers.

The policy matches the task's requests by their fingerprint, climbs the ladder its calls
were observed on, starts in ``mode: observe`` (so promoting changes no answer), and checks
what the strong model's answers had in common: a JSON schema when nearly all are JSON objects
(keys present in nearly all of them required, their types, an enum for a small set of string
values), a ``match:`` regex when they are a small set of labels, else length bounds; none for
a task whose requests offer tools, which the request's own checks judge (a check learnt from
its text answers would reject its tool-call turns). Each inference is written with a comment
saying how many answers it rests on. The file is compiled before it is written: a policy
that would not load is never written.

What a client controls (its system prompt, tool names, the model it asked for, the keys of
the answers it steered) reaches the comments only through ``_shown``: cut to a hundred
characters and with every unprintable character escaped, so that no line break YAML knows
(``\\n``, ``\\r``, ``\\x85``, ``\\u2028``, ``\\u2029``) can end a comment line and write a
policy field of its own. The fields themselves are written by ``yaml.safe_dump``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._answer import one_line
from ..discovery import DEFAULTS
from ..exceptions import CascadeError, PolicyError
from ..policy import Policy

if TYPE_CHECKING:
    from ..events import CallRecord
    from ..stores import Store

__all__ = ["Promotion", "infer_validators", "promote"]

_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # fullmatch: "$" takes "x\\n"
_TRUNCATED = "…[truncated "
NEARLY_ALL = 0.95  # a key present in at least this share of the answers is required
JSON_SHARE = 0.9  # this share of JSON-object answers makes a schema
MAX_LABELS = 10  # at most this many distinct values make an enum or a label set
MIN_FOR_SET = 20  # ... and only from at least this many answers
SHOWN_CHARS = 100  # a value in a comment is cut to this many characters
SHOWN_NAMES = 10  # ... and a list of names to this many
_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
          (list, "array"), (dict, "object"), (type(None), "null"))  # fmt: skip


class Promotion:
    """What ``promote`` wrote: ``path``, the policy ``text``, and the ``answers`` it read."""

    def __init__(self, path: Path, text: str, answers: int) -> None:
        self.path = path
        self.text = text
        self.answers = answers


def strong_answers(records: list[CallRecord], strongest: str | None) -> list[str]:
    """The whole (not truncated) answers of the strongest model in ``records``."""
    out = []
    for r in records:
        for a in r.attempts:
            model = strongest or r.model
            usable = a.error is None and a.output and _TRUNCATED not in a.output
            if usable and a.model == model and a.purpose == "answer":
                out.append(a.output)
    return out


def _strong_tool_calls(records: list[CallRecord], strongest: str | None) -> int:
    """How many answers of the strongest model in ``records`` were tool calls (a record
    keeps no call's arguments, only that the answer ended in them)."""
    return sum(
        a.error is None and a.finish_reason == "tool_calls"
        and a.model == (strongest or r.model) and a.purpose == "answer"
        for r in records for a in r.attempts
    )  # fmt: skip


def _shown(value: object) -> str:
    """``value`` fit for one comment line: at most ``SHOWN_CHARS`` characters (then "…"),
    each unprintable one (line breaks, controls, separators: Unicode Cc, Cf, Zl, Zp, Zs but
    the space) escaped as Python writes it, ``\\n``, ``\\u2028``."""
    return one_line(value, SHOWN_CHARS)


def _names(values: list[str]) -> str:
    """At most ``SHOWN_NAMES`` of ``values``, each ``_shown``, then how many are left out."""
    shown = ", ".join(_shown(v) for v in values[:SHOWN_NAMES])
    more = len(values) - SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown or "none"


def _tool_notes(tools: list[str], texts: int, calls: int) -> list[str]:
    return [
        f"no inferred validator: its requests offer tools ({_names(tools)}), and every",
        "  call is checked against their names and parameters (derive: the request's own",
        "  checks); a check inferred from text answers would reject its tool-call turns",
        f"  (of the strong model's recorded answers, {calls} are tool calls, {texts} text)",
    ]


def _type_of(value: Any) -> str:
    return next(name for cls, name in _TYPES if type(value) is cls)


def _infer_schema(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    n = len(objects)
    seen: Counter[str] = Counter(k for o in objects for k in o)
    properties: dict[str, Any] = {}
    notes = []
    for key, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0])):
        values = [o[key] for o in objects if key in o]
        types = sorted({_type_of(v) for v in values})
        if "integer" in types and "number" in types:
            types.remove("integer")
        prop: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
        if types == ["string"]:
            distinct = sorted(set(values))
            if len(values) >= MIN_FOR_SET and len(distinct) <= MAX_LABELS:
                prop["enum"] = distinct
                note = f"{_shown(key)}: one of {len(distinct)} values in {len(values)} answers"
                notes.append(note)
        properties[key] = prop
    required = [k for k, c in seen.items() if c >= NEARLY_ALL * n]
    for key in sorted(required):
        notes.append(f"{_shown(key)}: required, present in {seen[key]} of {n} answers")
    schema = {"type": "object", "properties": properties, "required": sorted(required)}
    return schema, notes


def infer_validators(answers: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The validators the ``answers`` support, and a comment line for each inference."""
    n = len(answers)
    objects = []
    for text in answers:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            objects.append(value)
    if objects and len(objects) >= JSON_SHARE * n:
        schema, notes = _infer_schema(objects)
        head = f"json_schema: {len(objects)} of {n} answers are JSON objects"
        return [{"type": "json_schema", "schema": schema}], [head, *notes]
    labels = sorted({a.strip() for a in answers})
    if n >= MIN_FOR_SET and len(labels) <= MAX_LABELS:
        pattern = r"^\s*(?:" + "|".join(re.escape(label) for label in labels) + r")\s*$"
        note = f"structure.match: each of {n} answers is one of {len(labels)} labels"
        return [{"type": "structure", "match": [pattern]}], [note]
    shortest, longest = min(map(len, answers)), max(map(len, answers))
    low, high = shortest // 2, math.ceil(longest * 2)
    note = (f"structure: {n} answers of {shortest} to {longest} characters; bounds at half "
            f"the shortest ({low}) and twice the longest ({high})")  # fmt: skip
    return [{"type": "structure", "min_chars": low, "max_chars": high}], [note]


def promote(
    store: Store, task: str, directory: Path | str, *, force: bool = False, limit: int = 5000
) -> Promotion:
    """Write ``<directory>/<task>.yaml`` for the discovered ``task`` from its ``limit`` newest
    records in ``store``. Raises ``CascadeError`` when the task has no discovered records or
    no strong answers, when the file exists (unless ``force``), and ``PolicyError`` when the
    policy would not load (then nothing is written)."""
    if not _TASK_NAME.fullmatch(task):
        raise CascadeError(f"{task!r} is not a task name")
    records = list(store.records(task=task, limit=limit, newest_first=True))
    if not records:
        raise CascadeError(
            f"{task}: no call of that name is stored whole (in cascade mode only escalated "
            "calls and a sample of the passing ones are; observe mode stores every observed one)"
        )
    info = next((r.extra["discovered"] for r in records if "discovered" in r.extra), None)
    if not isinstance(info, dict) or not info.get("fingerprint"):
        raise CascadeError(f"{task}: no recorded call of a discovered task by that name")
    # A name has 24 bits of the digest: two fingerprints (one perhaps ground to match) may
    # share it, and a policy learnt from both would match one and judge it by the other's.
    digests = sorted(
        {
            str(r.extra["discovered"].get("fingerprint"))
            for r in records
            if isinstance(r.extra.get("discovered"), dict)
        }
    )
    if len(digests) > 1:
        raise CascadeError(
            f"{task}: its records come from {len(digests)} fingerprints that share the name "
            f"({', '.join(d[:16] for d in digests)}); write the policy of the one you mean "
            "by hand, with `match: {fingerprint: ...}` (`cascade tasks --format json`)"
        )
    models = [str(m) for m in info.get("models") or ()]
    strongest = models[-1] if models else None
    answers = strong_answers(records, strongest)
    tools = [str(t) for t in info.get("tools") or ()]
    calls = _strong_tool_calls(records, strongest) if tools else 0
    if not answers and not calls:
        raise CascadeError(
            f"{task}: no recorded answer of the strong model yet (observe mode records them)"
        )
    validators: list[dict[str, Any]]
    if tools:
        validators, notes = [], _tool_notes(tools, len(answers), calls)
    else:
        validators, notes = infer_validators(answers)
    read = len(answers) + calls
    path = Path(directory) / f"{task}.yaml"
    if path.exists() and not force:
        raise CascadeError(f"{path} exists; pass --force to replace it")
    escalate = list(DEFAULTS["escalate_status"])
    header = [
        f"Promoted from the discovered task {task} by `cascade tasks promote`,",
        f"from {read} recorded answers of {_shown(strongest or 'the strong model')}.",
        f"match: the fingerprint of its requests (system prompt, masked: "
        f"'{_shown(info.get('prompt') or '')}';",
        f"  tools: {_names(tools)}; requested model: {_shown(info.get('model') or 'none')}).",
        "mode: observe, so that promoting changes no answer; switch when `cascade tasks`",
        "  recommends it.",
        f"escalate_status: {escalate}, as under discovery: the first rung is one the",
        "  application never chose, and may refuse what the requested model takes.",
        "What each validator rests on:",
        *(f"  {note}" for note in notes),
    ]
    data = {
        "models": models,
        "mode": "observe",
        "match": {"fingerprint": str(info["fingerprint"])},
        "escalate_status": escalate,
        "validators": validators,
    }
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        Policy.from_dict(yaml.safe_load(text), task=task, path=path)
    except PolicyError as e:
        raise PolicyError(f"the promoted policy would not load, not written: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return Promotion(path, text, read)
