"""Policy files: loading, the errors a broken file gets, and the published schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import cascade
from cascade.policy import Policy, PolicySet, policy_json_schema

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("models: [gpt-4o-mini]", "models", "at least 2"),
        ("models: [a, b]\nretrys: 1", "retrys", "unknown field"),
        ("models: [a, b]\nretries: -1", "retries", "greater than or equal to 0"),
        ("models: [a, a]", "models", "distinct"),
        ("models: [a, b]\non_exhausted: explode", "on_exhausted", "'explode'"),
        ("models: [a, b]\nvalidators: [{type: nope}]", "validators[0].type", "unknown validator"),
        ("models: [a, b]\nvalidators: [{min: 1}]", "validators[0].type", "missing"),
        (
            "models: [a, b]\nvalidators: [{type: confidence, source: logprobs, min: 1.5}]",
            "validators[0].min",
            "1.5",
        ),
        (
            "models: [a, b]\nvalidators: [{type: structure, maxchars: 5}]",
            "validators[0].maxchars",
            "unknown field",
        ),
        (
            "models: [a, b]\nvalidators: [{type: json_schema, schema: {type: 12}}]",
            "validators[0].schema",
            "",
        ),
        ("task: other\nmodels: [a, b]", "task", "does not match the file name"),
        ("models: [a, b]\nparams: {model: x}", "params", "'model'"),
        ("models: [a, b]\nfatal_status: [400, 40]", "fatal_status[1]", "(got 40)"),
        ("models: [a, b]\nescalate_status: [200]", "escalate_status[0]", "(got 200)"),
    ],
)
def test_broken_policy_names_the_file_and_the_field(tmp_path, text, field, message) -> None:
    path = write(tmp_path, text)
    with pytest.raises(cascade.PolicyError) as info:
        Policy.load(path)
    err = info.value
    assert err.path == path and err.field == field
    assert str(path) in str(err) and field in str(err) and message in str(err)
    assert isinstance(err, ValueError)


def test_yaml_syntax_error_names_the_line(tmp_path) -> None:
    path = write(tmp_path, "models: [a, b\nretries: 0\n")
    with pytest.raises(cascade.PolicyError, match=r"t\.yaml: invalid YAML at line \d+"):
        Policy.load(path)


def test_a_file_that_is_not_a_mapping(tmp_path) -> None:
    with pytest.raises(cascade.PolicyError, match="expected a mapping"):
        Policy.load(write(tmp_path, "- a\n- b\n"))


def test_json_policy_files_are_accepted(tmp_path) -> None:
    p = Policy.load(write(tmp_path, json.dumps({"models": ["gpt-4o-mini", "gpt-4o"]}), "j.json"))
    assert p.task == "j" and p.models == ("gpt-4o-mini", "gpt-4o")


def test_schema_file_is_relative_to_the_policy(tmp_path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "inv.json").write_text(json.dumps({"type": "object"}))
    text = (
        "models: [gpt-4o-mini, gpt-4o]\n"
        "validators: [{type: json_schema, schema_file: schemas/inv.json}]"
    )
    p = Policy.load(write(tmp_path, text))
    assert p.validators[0].name == "json_schema"


def test_validators_of_one_type_get_distinct_names(tmp_path) -> None:
    text = (
        "models: [gpt-4o-mini, gpt-4o]\nvalidators: [{type: structure}, "
        "{type: structure, max_chars: 9}, {type: structure, name: short}]"
    )
    p = Policy.load(write(tmp_path, text))
    assert [v.name for v in p.validators] == ["structure#1", "structure#2", "short"]


def test_policy_set_caches_and_lists(tmp_path) -> None:
    write(tmp_path, "models: [gpt-4o-mini, gpt-4o]", "a.yaml")
    write(tmp_path, "models: [gpt-4o-mini, gpt-4o]", "b.yml")
    (tmp_path / "notes.txt").write_text("not a policy")
    ps = PolicySet(tmp_path)
    assert ps.tasks() == ["a", "b"]
    assert ps.get("a") is ps.get("a")
    assert [p.task for p in ps.load_all()] == ["a", "b"]


def test_the_example_policies_load() -> None:
    policies = PolicySet(REPO / "policies").load_all()
    assert {p.task for p in policies} >= {
        "invoice_extraction",
        "support_summary",
        "ticket_classification",
    }


def test_published_schema_accepts_the_examples_and_rejects_typos() -> None:
    schema = policy_json_schema()
    assert "strongest" in schema["properties"]["escalate_status"]["description"]
    jsonschema.validate({"models": ["a", "b"], "escalate_status": [400]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"models": ["a", "b"], "escalate_status": [200]}, schema)
    for path in (REPO / "policies").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"models": ["a", "b"], "retrys": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"models": ["a", "b"], "validators": [{"type": "structure", "maxchars": 1}]}, schema
        )
