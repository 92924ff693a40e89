"""JSON Schema's ``pattern``, ``patternProperties`` and ``additionalProperties`` on RE2.

jsonschema runs these keywords' regexes with Python's ``re``, which backtracks: a schema's
``pattern`` (from a policy, or from any request's ``response_format``) could take seconds
per answer. ``linear(cls)`` is the jsonschema validator class with those three keywords
replaced by the same checks on ``LinearRegex`` (jsonschema's documented ``extend``), and
``check_patterns`` refuses, when the schema is compiled, a pattern RE2 cannot take.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jsonschema import ValidationError
from jsonschema import validators as js_validators

from ._json import json_path, short
from ._regex import LinearRegex

if TYPE_CHECKING:
    from collections.abc import Iterator


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> LinearRegex:
    return LinearRegex(pattern)


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _regex(pattern).found(instance):
        yield ValidationError(f"{short(instance)} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        for k, v in instance.items():
            if regex.found(k):
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def _additional(instance: Any, schema: Any) -> Iterator[Any]:
    properties = schema.get("properties", {})
    regexes = [_regex(p) for p in schema.get("patternProperties", {})]
    for name in instance:
        if name not in properties and not any(r.found(name) for r in regexes):
            yield name


def _additional_properties(validator: Any, ap: Any, instance: Any, schema: Any) -> Any:
    # jsonschema's own check, with the property names matched on RE2.
    if not validator.is_type(instance, "object"):
        return
    extras = set(_additional(instance, schema))
    if validator.is_type(ap, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], ap, path=extra)
    elif not ap and extras:
        joined = ", ".join(short(each) for each in sorted(extras)[:20])
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            patterns = ", ".join(repr(p) for p in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(
                f"Additional properties are not allowed ({joined} {verb} unexpected)"
            )


_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}
_LINEAR: dict[Any, Any] = {}


def linear(cls: Any) -> Any:
    """``cls`` (a jsonschema validator class) with its regex keywords on RE2."""
    found = _LINEAR.get(cls)
    if found is None:
        ours = {k: v for k, v in _KEYWORDS.items() if k in cls.VALIDATORS}
        found = _LINEAR[cls] = js_validators.extend(cls, ours)  # type: ignore[no-untyped-call]
    return found


def check_patterns(schema: Any) -> None:
    """Raise ``ValueError`` naming the place of the first ``pattern`` or
    ``patternProperties`` key in ``schema`` that RE2 cannot take (walked without recursion,
    so a deeply nested schema cannot exhaust the stack)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            try:
                if isinstance(node.get("pattern"), str):
                    _regex(node["pattern"])
                for key in node.get("patternProperties") or ():
                    _regex(key)
            except ValueError as e:
                raise ValueError(f"invalid JSON schema at {json_path(path)}: {e}") from None
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node))


__all__ = ["check_patterns", "linear"]
