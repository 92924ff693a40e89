"""Tasks discovered from traffic: fingerprints, names, policy ``match:``, the router."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import cascade
from cascade.discovery import MatchSpec, Router, fingerprint, mask
from cascade.discovery.fingerprint import _format_key, format_of
from cascade.exceptions import PolicyError
from cascade.policy import Policy, PolicySet
from cascade.testing import ScriptedServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TEMPLATE = (
    "Extract the key fields from ticket {n} filed on {date} by {email}. "
    'See {url} and the customer "{name}" (account {acct}).'
)


def prompt(n: int, date: str, email: str, url: str, name: str, acct: str) -> list[dict[str, Any]]:
    text = TEMPLATE.format(n=n, date=date, email=email, url=url, name=name, acct=acct)
    return [{"role": "system", "content": text}, {"role": "user", "content": "the ticket"}]


A = prompt(17, "2024-05-01", "ann@example.com", "https://x.example/t/1", "Ann", "AC-99812345")
B = prompt(
    9023, "12/31/2025", "bo.b+1@mail.example.org", "http://y.example/q?a=2", "Bob L", "ZX7781204"
)


def test_one_template_with_different_values_is_one_task() -> None:
    assert fingerprint(A, {}, "gpt-4o") == fingerprint(B, {}, "gpt-4o")
    assert mask(A[0]["content"]) == (
        "Extract the key fields from ticket <n> filed on <date> by <email>. "
        "See <url> and the customer <quoted> (account <id>)."
    )


def test_different_templates_tools_formats_and_models_are_different_tasks() -> None:
    base = fingerprint(A, {}, "gpt-4o")
    other = [{"role": "system", "content": "Summarise the ticket for an engineer."}]
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    assert fingerprint(other, {}, "gpt-4o").task != base.task
    assert fingerprint(A, {"tools": [tool]}, "gpt-4o").task != base.task
    assert fingerprint(A, {"response_format": {"type": "json_object"}}, "gpt-4o").task != base.task
    assert fingerprint(A, {}, "gpt-4o-mini").task != base.task


def test_the_name_is_readable_and_stable_across_processes() -> None:
    fp = fingerprint(A, {}, "gpt-4o")
    assert fp.task.startswith("extract-the-key-fields-") and len(fp.task.split("-")[-1]) == 6
    code = (
        "import json, sys; from cascade.discovery import fingerprint; "
        "print(fingerprint(json.loads(sys.argv[1]), {}, 'gpt-4o').task)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(B)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == fp.task


def test_a_request_without_a_system_prompt_is_named_after_its_model() -> None:
    assert fingerprint([{"role": "user", "content": "hi"}], {}, "gpt-4o").task.startswith("gpt-4o-")


@pytest.mark.parametrize(
    "text",
    ["a" * 200_000, "1." * 100_000, "a@" * 100_000, "'" * 200_000, "x-" * 100_000, '"' * 200_000],
)
def test_masking_is_linear_on_adversarial_prompts(text: str) -> None:
    # Quadratic masking would not finish in any reasonable time on these (10^10 steps).
    assert isinstance(mask(text), str)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # An opening quote inside a bounded value would have every opener of a run rescan up
        # to 300 characters (seconds for a few MB): it ends the value instead.
        ("\u201ca \u201cb\u201d c\u201d", "\u201ca <quoted> c\u201d"),
        ("\u201c" * 5 + "x\u201d", "\u201c" * 4 + "<quoted>"),
        # An apostrophe after a non-letter could open a value: it ends the run too.
        ("said 'a 'b' c' ok", "said 'a <quoted> c' ok"),
        ("O'Brien said 'it's fine' ok", "O'Brien said <quoted> ok"),
    ],
)
def test_a_quoted_value_does_not_contain_an_opening_quote(text: str, masked: str) -> None:
    assert mask(text) == masked


def test_an_identifier_is_masked_whatever_its_length() -> None:
    # A growing order number (ORD-999, then ORD-10000) must not split its template's task.
    assert mask("account INV-9, INV-2041, AC99812345, user_1") == ("account <id>, <id>, <id>, <id>")
    assert mask("ticket 17 of 9023, total 1,000.50") == "ticket <n> of <n>, total <n>"
    short = fingerprint(
        prompt(1, "2024-05-01", "a@b.example", "https://x.example", "A", "X-1"), {}, None
    )
    long = fingerprint(
        prompt(1, "2024-05-01", "a@b.example", "https://x.example", "A", "X-12345678"), {}, None
    )
    assert short.digest == long.digest


# -- match: ------------------------------------------------------------------------------------


def test_match_needs_a_condition_and_linear_regexes() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MatchSpec()
    with pytest.raises(ValueError, match="RE2"):
        MatchSpec(system=r"(a)\1")  # a backreference: no linear-time engine accepts it
    with pytest.raises(ValueError, match="12 hex"):
        MatchSpec(fingerprint="xyz")


def test_a_policy_with_match_receives_requests_that_name_no_task(tmp_path: Path) -> None:
    (tmp_path / "tickets.yaml").write_text(
        yaml.safe_dump(
            {
                "models": ["gpt-4o-mini", "gpt-4o"],
                "match": {"system": "^Extract the key fields", "model": ["gpt-4o"]},
            }
        )
    )
    (tmp_path / "broken.yaml").write_text("models: [one]")  # skipped, not fatal
    router = Router.build(PolicySet(tmp_path), True, Policy.from_dict)
    assert router.route(A, {}, "gpt-4o").task == "tickets"
    routed = router.route(A, {}, "gpt-4o-mini")  # another model: discovered
    assert routed.fingerprint is not None and routed.task.startswith("extract-the-key-fields-")
    assert routed.policy.spec.mode == "observe"
    assert Router.build(PolicySet(tmp_path), False, Policy.from_dict).route(A, {}, "x") is None


def test_a_discovered_tasks_ladder_ends_at_the_requested_model(tmp_path: Path) -> None:
    router = Router.build(PolicySet(tmp_path), True, Policy.from_dict)
    assert router.route(A, {}, "gpt-4.1").policy.models == ("gpt-4o-mini", "gpt-4.1")
    assert router.route(A, {}, "gpt-4o-mini").policy.models == ("gpt-4o-mini", "gpt-4o")
    fixed = Router.build(PolicySet(tmp_path), {"models": ["gpt-4o", "gpt-4.1"]}, Policy.from_dict)
    assert fixed.route(A, {}, "gpt-4o-mini").policy.models == ("gpt-4o", "gpt-4.1")


def test_fingerprints_sharing_a_name_keep_their_own_policies_and_records(tmp_path: Path) -> None:
    # A name has 24 bits of the digest: a caller can grind a prompt whose name is another's
    # in minutes. Forced here (the same name for every fingerprint): the attacker's request,
    # asking for gpt-4o, comes first; the victim's, asking for gpt-4.1, must still be
    # answered by its own ladder, and its records must carry its own fingerprint.
    def same_name(messages: Any, params: Any, model: Any) -> cascade.discovery.Fingerprint:
        return dataclasses.replace(fingerprint(messages, params, model), task="shared-000000")

    defaults = Policy.from_dict(dict(cascade.discovery.DEFAULTS), task="discovered")
    router = Router((), defaults, fingerprint=same_name)
    attacker = router.route(B, {}, "gpt-4o")
    victim = router.route(A, {}, "gpt-4.1")
    assert attacker is not None and victim is not None
    assert attacker.task == victim.task == "shared-000000"
    assert victim.policy.models == ("gpt-4o-mini", "gpt-4.1")
    assert attacker.policy.models == ("gpt-4o-mini", "gpt-4o")
    extra = router.record_extra(victim.policy)
    assert extra is not None
    assert extra["discovered"]["fingerprint"] == fingerprint(A, {}, "gpt-4.1").digest
    again = router.route(A, {}, "gpt-4.1")
    assert again is not None and again.policy is victim.policy  # kept, by digest


def test_a_discovered_tasks_name_alone_does_not_select_its_policy(tmp_path: Path, server) -> None:
    # Names are for display and may collide: naming one (a header, run(task=...)) finds only
    # a policy file of that name, never the policy of whichever fingerprint bore it.
    c = cascade.Cascade(tmp_path, client=server.client(), store="memory://")
    routed = c.route(A, {}, "gpt-4.1")
    assert routed is not None and routed.fingerprint is not None
    with pytest.raises(cascade.UnknownTaskError):
        c.run(routed.task, A)
    c.close()


def test_invalid_discovery_defaults_are_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="mode"):
        Router.build(PolicySet(tmp_path), {"mode": "sometimes"}, Policy.from_dict)


# -- cascade.run with no task ----------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def test_run_with_no_task_and_no_policy_discovers_the_task(tmp_path: Path, server) -> None:
    server.script("gpt-4o", '{"summary": "ok"}').script("gpt-4o-mini", '{"summary": "ok"}')
    c = cascade.Cascade(tmp_path, client=server.client(), store="memory://")
    r1 = c.run(None, A, model="gpt-4o")
    r2 = c.run(None, B, model="gpt-4o")
    c.close()
    assert r1.task == r2.task and r1.task.startswith("extract-the-key-fields-")
    assert r1.mode == "observe" and r1.model == "gpt-4o"  # the model the application asked for
    records = list(c.store.records(task=r1.task))
    assert len(records) == 2
    assert records[0].extra["discovered"]["fingerprint"] == fingerprint(A, {}, "gpt-4o").digest


def test_run_with_no_task_and_discovery_off_is_an_error(tmp_path: Path, server) -> None:
    c = cascade.Cascade(tmp_path, client=server.client(), store="memory://", discover=False)
    with pytest.raises(cascade.InvalidRequestError, match="no task"):
        c.run(None, A)


def test_discovery_defaults_may_use_the_cascades_own_validator_types(
    tmp_path: Path, server
) -> None:
    server.script("gpt-4o-mini", "no").script("gpt-4o", "yes")
    c = cascade.Cascade(
        tmp_path,
        client=server.client(),
        store="memory://",
        validators={"says_yes": lambda completion: completion.text == "yes"},
        discover={"mode": "cascade", "validators": [{"type": "says_yes"}]},
    )
    r = c.run(None, A, model="gpt-4o")
    c.close()
    assert (r.model, r.escalated) == ("gpt-4o", True)
    assert "says_yes" in r.reasons[0]


def test_names_of_schema_tasks_are_those_of_earlier_releases() -> None:
    # The schema's text is now written once per schema object; the digest must not change,
    # or every task with a response_format schema would be renamed on upgrade. (These are
    # the names of masking rules version 2, which renamed every task once.)
    messages = [{"role": "system", "content": "Extract the invoice fields as JSON."}]
    schema = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}
    rf = {
        "type": "json_schema",
        "json_schema": {"name": "invoice", "strict": True, "schema": schema},
    }
    assert fingerprint(messages, {"response_format": rf}, "gpt-4o").task == (
        "extract-the-invoice-fields-d7cb68"
    )
    json_object = {"response_format": {"type": "json_object"}}
    assert fingerprint(messages, json_object, "gpt-4o").task == "extract-the-invoice-fields-e8524e"
    # The same schema in another object, keys in another order: the same task.
    reordered = {
        "required": ["total"],
        "properties": {"total": {"type": "number"}},
        "type": "object",
    }
    again = {"type": "json_schema", "json_schema": {"schema": reordered, "name": "invoice"}}
    assert fingerprint(messages, {"response_format": again}, "gpt-4o").task == (
        "extract-the-invoice-fields-d7cb68"
    )


@pytest.mark.parametrize(
    "rf",
    [
        {"type": "json_schema", "json_schema": {"name": 'facture é "n°"', "schema": {"a": [1]}}},
        {"type": "json_schema", "json_schema": {"name": None, "schema": {"b": 1.0, "a": True}}},
        {"type": "json_schema", "json_schema": {"name": 7, "schema": {"x": "\u2028"}}},
        {"type": "json_schema", "json_schema": {"schema": {"y": None}}},
        {"type": "json_schema", "json_schema": "not a mapping"},
        {"type": "json_object"},
        {"type": "text"},
        "not a mapping",
    ],
)
def test_the_format_key_is_the_format_written_as_json(rf: Any) -> None:
    # The key is built from parts cached per schema object; it must be the text it stands
    # for, or names of tasks would change.
    assert _format_key(rf) == (
        None if format_of(rf) is None else json.dumps(format_of(rf), sort_keys=True)
    )
