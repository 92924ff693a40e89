"""Compiled JSON schemas, cached, with a fast check for the schemas structured output uses.

``compile_schema`` gives a jsonschema validator whose ``is_valid`` runs, for a schema of the
common subset (``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``enum``, ``const``, ``anyOf``, ``allOf``, ``oneOf``, ``not``, length and range bounds, local
``$ref`` into ``$defs``), a check built once from closures; any other keyword (``format``,
``pattern``, ``$schema``, ...) keeps jsonschema's own. Only the verdict comes from the fast
check: why an answer fails is always jsonschema's words (``iter_errors``).

``cached_schema`` keeps each distinct schema compiled once. A request's schema is looked up
first by the object's identity, confirmed by equality with a copy of what was compiled (a
dict comparison, far cheaper than writing the schema out as JSON, and safe against a schema
changed in place; the object is kept while cached, so its id is no other's), then by its
canonical JSON text (``schema_text``), whose entry keeps the copy that an equal schema in a
new object (the proxy decodes every request afresh) shares; both caches are bounded, oldest
out.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from jsonschema import exceptions as js_exceptions
from jsonschema import validators as js_validators

from ._json import json_path
from ._refs import ref_problem, registry_for
from ._schema_regex import check_patterns, linear

Check = Callable[[Any], bool]

_CACHE_SIZE = 256
# canonical text -> (a copy of the schema, its compiled validator or None yet)
_by_text: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
# id -> (the object, a copy of it, its canonical text, its compiled validator or None)
_by_id: dict[int, tuple[Any, Any, str, Any]] = {}
_lock = threading.Lock()
# json.dumps(value, sort_keys=True) makes a new encoder per call; this one is made once.
_CANONICAL = json.JSONEncoder(sort_keys=True)

# Keywords the fast check ignores (annotations) and those it implements; any other keyword
# anywhere in a schema leaves the whole schema to jsonschema.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
     "writeOnly", "$defs", "definitions", "strict"}
)  # fmt: skip
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}
_MAX_DEPTH = 64  # of the schema itself; deeper ones keep jsonschema's check


class _Unsupported(Exception):
    """The schema uses what the fast check does not implement."""


def compile_schema(schema: Any) -> Any:
    """A jsonschema validator for ``schema`` (its ``$schema`` dialect, else the latest),
    checking ``format`` too, with the fast ``is_valid`` when the schema allows one. Raises
    ``ValueError`` when the schema itself is invalid, or a ``$ref`` of it cannot be followed
    (remote, missing, or looping in place: see ``_refs``)."""
    if not isinstance(schema, dict | bool):
        raise ValueError(f"a JSON schema is an object, got {type(schema).__name__}")
    cls = js_validators.validator_for(schema)
    if isinstance(schema, dict):  # true and false are schemas with nothing to check
        try:
            cls.check_schema(schema)
        except js_exceptions.SchemaError as e:
            raise ValueError(
                f"invalid JSON schema at {json_path(e.absolute_path)}: {e.message}"
            ) from None
        check_patterns(schema)  # patterns run on RE2: refuse those it cannot take
        problem = ref_problem(schema, schema.get("$schema"))
        if problem is not None:
            raise ValueError(f"invalid JSON schema: {problem}")
    cls = linear(cls)
    # No registry of its own, jsonschema would fetch a remote (or file:) $ref by itself.
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER, registry=registry_for(schema))
    check = fast_check(schema)
    return validator if check is None else _Fast(validator, check)


class _Fast:
    """A jsonschema validator whose ``is_valid`` is the fast check; the rest is its own."""

    __slots__ = ("check", "slow")

    def __init__(self, slow: Any, check: Check) -> None:
        self.slow = slow
        self.check = check

    def is_valid(self, instance: Any) -> bool:
        try:
            return self.check(instance)
        except RecursionError:  # an instance nested past Python's stack: jsonschema's word
            return bool(self.slow.is_valid(instance))

    def iter_errors(self, instance: Any) -> Any:
        return self.slow.iter_errors(instance)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.slow, name)


def fast_check(schema: Any) -> Check | None:
    """A predicate equal to jsonschema's ``is_valid`` for ``schema`` (already checked as a
    valid schema of the latest dialect), or None when the schema uses anything else."""
    if isinstance(schema, dict) and "$schema" in schema:
        return None  # another dialect may mean other rules (draft 3's integer, ...)
    defs = schema.get("$defs") if isinstance(schema, dict) else None
    refs: dict[str, Check] = {}
    try:
        check = _build(schema, defs if isinstance(defs, dict) else {}, refs, 0)
    except _Unsupported:
        return None
    return check


def _build(schema: Any, defs: dict[str, Any], refs: dict[str, Check], depth: int) -> Check:
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        raise _Unsupported
    checks: list[Check] = []
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        builder = _KEYWORDS.get(key)
        if builder is None:
            raise _Unsupported
        checks.append(builder(value, schema, defs, refs, depth))
    return _all(checks)


def _all(checks: list[Check]) -> Check:
    """A check passing when every one of ``checks`` does: chained ``and`` for the usual two
    or three (a generator per call costs more than the checks themselves)."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) and b(v)
    if len(checks) == 3:
        a, b, c = checks
        return lambda v: a(v) and b(v) and c(v)
    every = tuple(checks)

    def check(v: Any) -> bool:
        for c in every:  # noqa: SIM110  # all() over a generator costs more than the checks
            if not c(v):
                return False
        return True

    return check


def _always(v: Any) -> bool:
    return True


def _never(v: Any) -> bool:
    return False


def _type(value: Any, *_: Any) -> Check:
    names = [value] if isinstance(value, str) else value
    checks = [_TYPES[n] for n in names]  # check_schema admits only the seven names
    if len(checks) == 1:
        return checks[0]
    return lambda v: any(c(v) for c in checks)


def _properties(value: Any, schema: Any, defs: Any, refs: Any, depth: int) -> Check:
    subs = tuple((k, _build(s, defs, refs, depth + 1)) for k, s in value.items())

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for k, c in subs:  # noqa: SIM110  # as in _all
            if k in v and not c(v[k]):
                return False
        return True

    return check


def _required(value: Any, *_: Any) -> Check:
    keys = tuple(value)
    return lambda v: not isinstance(v, dict) or all(map(v.__contains__, keys))


def _additional(value: Any, schema: Any, defs: Any, refs: Any, depth: int) -> Check:
    if "patternProperties" in schema:
        raise _Unsupported
    known = frozenset(schema.get("properties", {}))
    if value is False:
        return lambda v: not isinstance(v, dict) or known.issuperset(v)
    sub = _build(value, defs, refs, depth + 1)
    return lambda v: not isinstance(v, dict) or all(sub(x) for k, x in v.items() if k not in known)


def _items(value: Any, schema: Any, defs: Any, refs: Any, depth: int) -> Check:
    if "prefixItems" in schema:
        raise _Unsupported
    sub = _build(value, defs, refs, depth + 1)
    return lambda v: not isinstance(v, list) or all(map(sub, v))


def _enum_key(x: Any) -> Any:
    """A hashable key with JSON Schema's equality: booleans apart from numbers, 1 == 1.0."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, int | float) and not (isinstance(x, float) and math.isnan(x)):
        return ("number", x)
    raise _Unsupported  # arrays, objects, NaN: jsonschema's own comparison


def _enum(value: Any, *_: Any) -> Check:
    keys = frozenset(_enum_key(x) for x in value)

    def check(v: Any) -> bool:
        try:
            return _enum_key(v) in keys
        except _Unsupported:  # an array or an object: no enum of scalars holds one
            return False

    return check


def _const(value: Any, *_: Any) -> Check:
    return _enum([value])


def _subs(value: Any, defs: Any, refs: Any, depth: int) -> list[Check]:
    return [_build(s, defs, refs, depth + 1) for s in value]


def _any_of(value: Any, schema: Any, defs: Any, refs: Any, depth: int) -> Check:
    subs = _subs(value, defs, refs, depth)
    return lambda v: any(c(v) for c in subs)


def _all_of(value: Any, schema: Any, defs: Any, refs: Any, depth: int) -> Check:
    subs = _subs(value, defs, refs, depth)
    return lambda v: all(c(v) for c in subs)


def _one_of(value: Any, schema: Any, defs: Any, refs: Any, depth: int) -> Check:
    subs = _subs(value, defs, refs, depth)
    return lambda v: sum(1 for c in subs if c(v)) == 1


def _not(value: Any, schema: Any, defs: Any, refs: Any, depth: int) -> Check:
    sub = _build(value, defs, refs, depth + 1)
    return lambda v: not sub(v)


def _ref(
    value: Any, schema: Any, defs: dict[str, Any], refs: dict[str, Check], depth: int
) -> Check:
    prefix = "#/$defs/"
    name = value[len(prefix) :] if isinstance(value, str) and value.startswith(prefix) else None
    if name is None or "/" in name or "~" in name or "%" in name or name not in defs:
        raise _Unsupported
    if name not in refs:  # built once; a recursive definition finds itself through refs
        refs[name] = _never  # replaced below, before any check runs
        built = _build(defs[name], defs, refs, depth + 1)
        refs[name] = built
    return lambda v: refs[name](v)


def _bound(kind: Check, test: Callable[[Any, Any], bool]) -> Callable[..., Check]:
    def builder(value: Any, *_: Any) -> Check:
        return lambda v: not kind(v) or test(v, value)

    return builder


_KEYWORDS: dict[str, Callable[..., Check]] = {
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "anyOf": _any_of,
    "allOf": _all_of,
    "oneOf": _one_of,
    "not": _not,
    "$ref": _ref,
    "minimum": _bound(_TYPES["number"], lambda v, b: v >= b),
    "maximum": _bound(_TYPES["number"], lambda v, b: v <= b),
    "exclusiveMinimum": _bound(_TYPES["number"], lambda v, b: v > b),
    "exclusiveMaximum": _bound(_TYPES["number"], lambda v, b: v < b),
    "minLength": _bound(_TYPES["string"], lambda v, b: len(v) >= b),
    "maxLength": _bound(_TYPES["string"], lambda v, b: len(v) <= b),
    "minItems": _bound(_TYPES["array"], lambda v, b: len(v) >= b),
    "maxItems": _bound(_TYPES["array"], lambda v, b: len(v) <= b),
    "minProperties": _bound(_TYPES["object"], lambda v, b: len(v) >= b),
    "maxProperties": _bound(_TYPES["object"], lambda v, b: len(v) <= b),
}


def schema_text(value: Any) -> str:
    """``value`` as JSON with sorted keys (``json.dumps(value, sort_keys=True)``), looked up
    by identity first (see the module docstring). Raises TypeError/ValueError as dumps does."""
    return _entry(value)[2]


def _entry(value: Any) -> tuple[Any, Any, str, Any]:
    """(value, a copy of it, its canonical text, its compiled validator or None yet)."""
    found = _by_id.get(id(value))
    if found is not None and found[0] is value and found[1] == value:
        return found
    text = _CANONICAL.encode(value)
    # The copies are never changed, only compared: equal schemas may share one.
    known = _by_text.get(text)
    if known is None:
        known = (json.loads(text), None)
        _remember(text, known)
    entry = (value, known[0], text, known[1])
    _keep(entry)
    return entry


def _remember(text: str, known: tuple[Any, Any]) -> None:
    with _lock:
        _by_text[text] = known
        _by_text.move_to_end(text)
        if len(_by_text) > _CACHE_SIZE:
            _by_text.popitem(last=False)


def _keep(entry: tuple[Any, Any, str, Any]) -> None:
    # The object itself is kept, so that its id cannot be another object's while cached.
    with _lock:
        _by_id[id(entry[0])] = entry
        if len(_by_id) > _CACHE_SIZE:
            del _by_id[next(iter(_by_id))]


def cached_schema(schema: Any) -> Any:
    """The compiled validator of ``schema`` (``compile_schema``), or a string saying why it
    cannot be compiled; each distinct schema is compiled once (see the module docstring)."""
    try:
        entry = _entry(schema)
    except (TypeError, ValueError, RecursionError) as e:
        return f"cannot be read ({e})"
    if entry[3] is not None:
        return entry[3]
    text = entry[2]
    known = _by_text.get(text)
    compiled = None if known is None else known[1]
    if compiled is None:
        try:
            compiled = compile_schema(schema)
        except ValueError as e:
            compiled = str(e)
        except RecursionError:  # jsonschema checks a schema recursively
            compiled = "the schema is nested too deeply to be checked"
    _remember(text, (entry[1], compiled))
    _keep((schema, entry[1], text, compiled))
    return compiled


__all__ = ["cached_schema", "compile_schema", "fast_check", "schema_text"]
