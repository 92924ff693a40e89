"""json_schema and pydantic validators, and the JSON extraction they share."""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from cascade.events import Completion, Request
from cascade.validators import JsonSchema, PydanticModel, build_validator
from cascade.validators._compiled import cached_schema
from cascade.validators._json import NotJSON, extract_json, json_path

if TYPE_CHECKING:
    from pathlib import Path

REQUEST = Request(messages=[{"role": "user", "content": "Invoice INV-1, total 10 EUR"}])
SCHEMA = {
    "type": "object",
    "required": ["invoice_number", "total"],
    "properties": {
        "invoice_number": {"type": "string"},
        "total": {"type": "number"},
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer"}}},
        },
    },
}


def answer(text: str) -> Completion:
    return Completion(model="m", text=text, request=REQUEST)


def schema_validator(**options: Any) -> JsonSchema:
    v = build_validator("json_schema", "json_schema", options, policy_dir=None)
    assert isinstance(v, JsonSchema)
    return v


class Invoice(BaseModel):
    invoice_number: str
    total: float

    @field_validator("invoice_number")
    @classmethod
    def _not_void(cls, value: str) -> str:
        if value == "VOID":
            raise TypeError("a user validator that raises something odd")
        return value


# --- extraction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  \n[1, 2]\n ", [1, 2]),
        ("42", 42),
        ('Here it is:\n```json\n{"a": 1}\n```\nDone.', {"a": 1}),
        ('```\n{"b": 2}\n```', {"b": 2}),
        ('```python\nx = 1\n```\n```json\n{"c": 3}\n```', {"c": 3}),
        ('The result is {"a": {"b": [1]}} as asked.', {"a": {"b": [1]}}),
        ('Broken {"a": then a good one {"a": 2}', {"a": 2}),
        ('{"a": 1} and some trailing words', {"a": 1}),
    ],
)
def test_extract_json_finds_the_value(text: str, expected: Any) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no json here at all", "no JSON found in the answer"),
        ("", "no JSON found in the answer"),
        ('{"a": 1,', "invalid JSON: Expecting property name"),
        ('```json\n{"a": }\n```', "invalid JSON: Expecting value"),
        ("[" * 100_000, "invalid JSON: nested too deeply"),
    ],
)
def test_extract_json_says_why_there_is_none(text: str, reason: str) -> None:
    with pytest.raises(NotJSON) as info:
        extract_json(text)
    assert str(info.value).startswith(reason)


def test_extract_json_without_scan_only_takes_the_whole_text_or_a_fence() -> None:
    assert extract_json("see [1]") == [1]
    with pytest.raises(NotJSON):
        extract_json("see [1]", scan=False)
    assert extract_json('```json\n{"a": 1}\n```', scan=False) == {"a": 1}


def test_json_path_reads_like_jsonpath() -> None:
    assert json_path([]) == "$"
    assert json_path(["items", 0, "price"]) == "$.items[0].price"
    assert json_path(["odd key"]) == '$["odd key"]'


# --- json_schema ----------------------------------------------------------------------------


def test_valid_json_passes_and_carries_the_parsed_value() -> None:
    v = schema_validator(schema=SCHEMA)
    verdict = v(answer('{"invoice_number": "INV-1", "total": 10}'))
    assert verdict.passed
    assert verdict.validator == "json_schema"
    assert verdict.reason == ""
    assert verdict.parsed == {"invoice_number": "INV-1", "total": 10}


def test_json_inside_prose_is_found() -> None:
    v = schema_validator(schema=SCHEMA)
    verdict = v(answer('Sure!\n```json\n{"invoice_number": "INV-1", "total": 10}\n```'))
    assert verdict.passed
    assert verdict.parsed["total"] == 10


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I could not find an invoice.", "no JSON found in the answer"),
        ('{"invoice_number": "INV-1", "total": 1', "invalid JSON: "),
        (
            '{"invoice_number": "INV-1", "total": "abc"}',
            "schema: at $.total: 'abc' is not of type 'number'",
        ),
        ('{"total": 1}', "schema: at $: 'invoice_number' is a required property"),
        (
            '{"invoice_number": "A", "total": 1, "items": [{"qty": 1.5}]}',
            "schema: at $.items[0].qty: 1.5 is not of type 'integer'",
        ),
    ],
)
def test_invalid_answers_fail_with_a_reason(text: str, reason: str) -> None:
    verdict = schema_validator(schema=SCHEMA)(answer(text))
    assert not verdict.passed
    assert verdict.reason.startswith(reason)
    assert verdict.parsed is None


def test_formats_are_checked() -> None:
    v = schema_validator(schema={"type": "object", "properties": {"d": {"format": "date"}}})
    assert v(answer('{"d": "2026-12-15"}')).passed
    assert "is not a 'date'" in v(answer('{"d": "next tuesday"}')).reason


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"$ref": "urn:example:nowhere"}, "its $ref 'urn:example:nowhere' cannot be resolved"),
        ({"$ref": "#/$defs/nope"}, "its $ref '#/$defs/nope' cannot be resolved"),
        ({"$ref": "#"}, "a $ref loops back to itself"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
          "$ref": "#/$defs/a"}, "a $ref loops back to itself"),
        ({"anyOf": [{"type": "string"}, {"$ref": "#"}]}, "a $ref loops back to itself"),
        ({"required": ["a"], "properties": {"a": {"$ref": "#/required"}}}, "points at no schema"),
    ],
)  # fmt: skip
def test_a_ref_that_cannot_be_followed_is_refused_when_the_policy_is_read(
    schema: dict[str, Any], reason: str
) -> None:
    # Such a schema made every answer "cannot be checked" (or a RecursionError per answer).
    with pytest.raises(ValidationError, match=re.escape(reason)):
        schema_validator(schema=schema)


def test_a_remote_or_file_ref_is_never_fetched(tmp_path: Path) -> None:
    # jsonschema, left to itself, retrieves a remote $ref with urlopen: http and file:
    # alike. A schema is data others send (response_format, tools): nothing is fetched.
    (tmp_path / "int.json").write_text('{"type": "integer"}')
    fetched: list[str] = []

    class Schemas(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            super().do_GET()

    handler = functools.partial(Schemas, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        remote = f"http://127.0.0.1:{server.server_address[1]}/int.json"
        try:
            for ref in (remote, (tmp_path / "int.json").as_uri()):
                with pytest.raises(ValidationError, match="cannot be resolved within the schema"):
                    schema_validator(schema={"$ref": ref})
                problem = cached_schema({"properties": {"n": {"$ref": ref}}})
                assert problem.endswith("cannot be resolved within the schema")
        finally:
            server.shutdown()
    assert fetched == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"name": {"type": "string"},
         "kids": {"type": "array", "items": {"$ref": "#"}}}, "required": ["name"]},
        {"$defs": {"x": {"$anchor": "num", "type": "integer"}},
         "properties": {"name": {"$ref": "#num"}}},
        {"$id": "https://example.com/anchored.json", "properties": {"name": {"$ref": "#num"}},
         "$defs": {"x": {"$anchor": "num", "type": "integer"}}},
        {"$defs": {f"d{i}": {"$anchor": f"a{i}", "type": "integer"} for i in range(300)},
         "properties": {"name": {"$ref": "#a299"}, **{f"p{i}": {"$ref": f"#a{i}"}
                                                      for i in range(300)}}},
        {"$id": "https://example.com/root.json", "properties": {"name": {"$ref": "n.json"}},
         "$defs": {"n": {"$id": "n.json", "type": "integer"}}},
        {"$schema": "http://json-schema.org/draft-07/schema#",
         "properties": {"name": {"$ref": "#/definitions/n"}},
         "definitions": {"n": {"type": "integer"}}},
    ],
)  # fmt: skip
def test_a_ref_that_resolves_keeps_validating_a_recursive_one_too(schema: dict[str, Any]) -> None:
    v = schema_validator(schema=schema)
    passed = {"name": 1, "kids": [{"name": 2}]} if "kids" not in json.dumps(schema) else None
    if passed is None:
        assert v(answer('{"name": "a", "kids": [{"name": "b", "kids": []}]}')).passed
        assert "at $.kids[0].name" in v(answer('{"name": "a", "kids": [{"name": 2}]}')).reason
    else:
        assert v(answer('{"name": 1}')).passed
        assert "at $.name" in v(answer('{"name": "x"}')).reason


def test_schema_file_is_read_relative_to_the_policy_dir(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "inv.json").write_text(json.dumps(SCHEMA))
    v = build_validator(
        "inv", "json_schema", {"schema_file": "schemas/inv.json"}, policy_dir=tmp_path
    )
    assert v(answer('{"invoice_number": "INV-1", "total": 10}')).passed
    assert not v(answer('{"invoice_number": "INV-1"}')).passed


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"schema": {"type": 12}}, "schema", "invalid JSON schema at $.type"),
        ({"schema_file": "missing.json"}, "schema_file", "cannot read"),
        ({"schema_file": "not-json.json"}, "schema_file", "is not JSON"),
        ({"schema_file": "bad-schema.json"}, "schema_file", "invalid JSON schema"),
        ({"schema": SCHEMA, "schema_file": "inv.json"}, "schema_file", "not both"),
        ({}, "schema_file", "needs `schema` or `schema_file`"),
        ({"schema": SCHEMA, "strict": True}, "strict", "Extra inputs"),
    ],
)
def test_bad_options_name_the_field(
    tmp_path: Path, options: dict[str, Any], field: str, message: str
) -> None:
    (tmp_path / "inv.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "not-json.json").write_text("type: object")
    (tmp_path / "bad-schema.json").write_text('{"type": "nonsense"}')
    with pytest.raises(ValidationError) as info:
        build_validator("s", "json_schema", options, policy_dir=tmp_path)
    (error,) = info.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


# --- pydantic -------------------------------------------------------------------------------


def model_validator(path: str | None = None) -> PydanticModel:
    v = build_validator("pd", "pydantic", {"model": path or f"{__name__}:Invoice"}, policy_dir=None)
    assert isinstance(v, PydanticModel)
    return v


def test_pydantic_model_passes_with_the_instance_as_parsed() -> None:
    verdict = model_validator()(answer('{"invoice_number": "INV-1", "total": 10}'))
    assert verdict.passed
    assert verdict.parsed == Invoice(invoice_number="INV-1", total=10)


def test_dotted_import_path_is_accepted_too() -> None:
    assert model_validator(f"{__name__}.Invoice")(
        answer('{"invoice_number": "A", "total": 1}')
    ).passed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nothing", "no JSON found in the answer"),
        (
            '{"invoice_number": "A", "total": "ten"}',
            "pydantic: total: Input should be a valid number",
        ),
        ("[1]", "pydantic: (root): Input should be a valid dictionary"),
        ('{"invoice_number": "VOID", "total": 1}', "pydantic: TypeError: a user validator"),
    ],
)
def test_pydantic_failures_are_verdicts(text: str, reason: str) -> None:
    verdict = model_validator()(answer(text))
    assert not verdict.passed
    assert verdict.reason.startswith(reason)


def test_pydantic_reason_quotes_at_most_three_errors() -> None:
    class Wide(BaseModel):
        a: int
        b: int
        c: int
        d: int
        e: int

    globals()["Wide"] = Wide  # importable by path for the test's duration
    try:
        verdict = model_validator(f"{__name__}:Wide")(answer("{}"))
    finally:
        del globals()["Wide"]
    assert verdict.reason == (
        "pydantic: a: Field required; b: Field required; c: Field required; and 2 more"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz:Model", "cannot import 'no_such_module_xyz:Model'"),
        (f"{__name__}:Nope", "cannot import"),
        (f"{__name__}:answer", "is not a pydantic BaseModel subclass"),
        ("Invoice", "is not an import path"),
    ],
)
def test_bad_model_path_names_it(path: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        build_validator("pd", "pydantic", {"model": path}, policy_dir=None)
    (error,) = info.value.errors()
    assert error["loc"] == ("model",)
    assert message in error["msg"]
