"""The fast schema check says what jsonschema says; compiled schemas are cached safely."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cascade.validators import schema_text
from cascade.validators._compiled import (
    _CACHE_SIZE,
    _by_id,
    _by_text,
    _entry,
    cached_schema,
    compile_schema,
    fast_check,
)
from cascade.validators.schema import schema_error

KEYS = ["a", "b", "c"]
TYPES = ["object", "array", "string", "null", "boolean", "number", "integer"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, 1.0, -1.0, 2.5, 1e300, float("inf")])
    | st.sampled_from(["", "a", "ab", "abc", "x"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=8,
)


def _schemas(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyword = st.one_of(
        st.tuples(st.just("type"), st.sampled_from(TYPES) | st.lists(st.sampled_from(TYPES),
                                                                      min_size=1, max_size=3,
                                                                      unique=True)),
        st.tuples(st.just("properties"), st.dictionaries(st.sampled_from(KEYS), inner)),
        st.tuples(st.just("required"), st.lists(st.sampled_from(KEYS), unique=True)),
        st.tuples(st.just("additionalProperties"), inner),
        st.tuples(st.just("items"), inner),
        st.tuples(st.just("enum"), st.lists(scalars, min_size=1, max_size=4)),
        st.tuples(st.just("const"), scalars),
        st.tuples(st.sampled_from(["anyOf", "allOf", "oneOf"]), st.lists(inner, min_size=1,
                                                                         max_size=3)),
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(["minimum", "maximum", "exclusiveMinimum",
                                   "exclusiveMaximum"]), st.sampled_from([0, 1, 1.5, -2])),
        st.tuples(st.sampled_from(["minLength", "maxLength", "minItems", "maxItems",
                                   "minProperties", "maxProperties"]), st.integers(0, 3)),
        st.tuples(st.sampled_from(["title", "description"]), st.just("x")),
        st.tuples(st.just("$ref"), st.just("#/$defs/node")),
    )  # fmt: skip
    return st.booleans() | st.lists(keyword, max_size=4).map(dict)


schemas = st.recursive(st.booleans() | st.just({}), _schemas, max_leaves=6)
NODE = {"type": ["object", "null"], "properties": {"next": {"$ref": "#/$defs/node"}}}


EDGES = [1, 1.0, 1.5, True, False, 0, None, "1", [1], {"a": 1}]


@settings(max_examples=300, deadline=None)
@given(schemas, st.lists(json_values, min_size=1, max_size=6))
@example({"type": "integer"}, EDGES)  # 1.0 is an integer, True is not
@example({"type": "number"}, EDGES)
@example({"type": ["boolean", "null"]}, EDGES)
@example({"enum": [1, "a"]}, EDGES)  # 1.0 is 1; True is not
@example({"enum": [True]}, EDGES)
@example({"const": 0}, EDGES)
@example({"minimum": 1, "exclusiveMaximum": 1.5}, EDGES)
@example({"properties": {"a": False}, "additionalProperties": False}, [{}, {"a": 1}, {"b": 1}])
@example({"additionalProperties": {"type": "string"}, "properties": {"a": {}}},
         [{"a": 1}, {"b": 1}, {"b": "x"}])  # fmt: skip
@example({"oneOf": [{"type": "number"}, {"type": "integer"}]}, EDGES)
def test_the_fast_check_agrees_with_jsonschema(schema: Any, instances: list[Any]) -> None:
    if isinstance(schema, dict):
        schema = {**schema, "$defs": {"node": NODE}}
    check = fast_check(schema)
    assert check is not None, schema
    slow = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for instance in instances:
        assert check(instance) == slow.is_valid(instance), (schema, instance)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "email"},
        {"type": "string", "pattern": "^a"},
        {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"},
        {"patternProperties": {"^a": {}}, "additionalProperties": False},
        {"prefixItems": [{}], "items": False},
        {"$ref": "#/definitions/x", "definitions": {"x": {}}},
        {"properties": {"a": {"uniqueItems": True}}},
        {"enum": [[1], {"a": 1}]},
    ],
)
def test_schemas_beyond_the_subset_keep_jsonschemas_check(schema: dict[str, Any]) -> None:
    assert fast_check(schema) is None
    assert type(compile_schema(schema)).__name__ != "_Fast"


def test_a_failure_is_reported_in_jsonschemas_words() -> None:
    validator = compile_schema({"type": "object", "properties": {"total": {"type": "number"}}})
    assert type(validator).__name__ == "_Fast"
    assert schema_error(validator, {"total": 1}) is None
    assert schema_error(validator, {"total": "x"}) == "at $.total: 'x' is not of type 'number'"


def test_a_recursive_schema_on_a_deeply_nested_instance_is_a_reason() -> None:
    schema = {"$defs": {"node": NODE}, "$ref": "#/$defs/node"}
    validator = compile_schema(schema)
    deep: Any = None
    for _ in range(5000):
        deep = {"next": deep}
    problem = schema_error(validator, deep)
    assert problem is None or problem.startswith("cannot be checked")


def test_the_same_schema_object_is_compiled_once_and_its_copy_too() -> None:
    schema = {"type": "object", "required": ["k"], "properties": {"k": {"type": "integer"}}}
    first = cached_schema(schema)
    assert cached_schema(schema) is first
    assert cached_schema({"properties": {"k": {"type": "integer"}}, "required": ["k"],
                          "type": "object"}) is first  # fmt: skip


def test_a_schema_changed_in_place_is_compiled_again() -> None:
    schema: dict[str, Any] = {"type": "object", "required": ["k"]}
    assert cached_schema(schema).is_valid({"k": 1})
    schema["required"] = ["other"]
    assert not cached_schema(schema).is_valid({"k": 1})
    assert schema_text(schema) == '{"required": ["other"], "type": "object"}'


def test_an_unreadable_or_invalid_schema_is_a_reason_not_an_error() -> None:
    assert cached_schema({"type": 7}).startswith("invalid JSON schema at $.type")
    assert cached_schema({"x": object()}).startswith("cannot be read")


def test_a_freed_schema_does_not_lend_its_entry_to_another() -> None:
    # Another object at a freed object's address must not find the freed object's entry:
    # the cache holds the objects it names, so no address is reused while cached.
    for i in range(50):
        schema = {"enum": [True] if i % 2 else [1]}
        compiled = cached_schema(schema)
        assert compiled.is_valid(True) is bool(i % 2), i
        del schema, compiled  # freed here (reference counting): its address is free


def test_an_equal_schema_in_a_new_object_shares_the_copy_and_the_validator() -> None:
    # The proxy decodes every request afresh: its equal schemas are not copied again.
    schema = {"type": "object", "required": ["k"], "properties": {"k": {"type": "boolean"}}}
    first = _entry(schema)
    again = _entry(json.loads(json.dumps(schema)))
    assert again[1] is first[1] and again[2] == first[2]
    assert cached_schema(json.loads(json.dumps(schema))) is cached_schema(schema)
    # Equal in Python (True == 1) is not the same schema: the text keeps them apart.
    other = {"type": "object", "required": ["k"], "properties": {"k": {"const": True}}}
    assert cached_schema(other).is_valid({"k": True})
    assert not cached_schema({**other, "properties": {"k": {"const": 1}}}).is_valid({"k": True})


def test_the_schema_caches_are_bounded() -> None:
    # Schemas come from requests, so from anyone who calls the proxy.
    for i in range(_CACHE_SIZE + 50):
        cached_schema({"const": i})
        schema_text({"enum": [i]})
    assert len(_by_text) <= _CACHE_SIZE
    assert len(_by_id) <= _CACHE_SIZE
