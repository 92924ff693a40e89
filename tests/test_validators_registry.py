"""The registry of validator types, custom validators, and how built-ins meet the policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import pytest

import cascade.validators as validators
from cascade.events import Completion, Request, Verdict
from cascade.exceptions import PolicyError
from cascade.policy import Policy, policy_json_schema
from cascade.validators import (
    BaseValidator,
    Validator,
    build_validator,
    register_validator,
    registered,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REQUEST = Request(messages=[{"role": "user", "content": "hi"}])
MODELS = ["gpt-4o-mini", "gpt-4o"]


def answer(text: str) -> Completion:
    return Completion(model="m", text=text, request=REQUEST)


def test_public_names_are_sorted_and_complete() -> None:
    public = {n for n in vars(validators) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(validators, n)).__name__ == "module"}
    assert sorted(validators.__all__) == validators.__all__
    assert set(validators.__all__) == public - modules
    for name in validators.__all__:
        assert getattr(validators, name).__doc__, name


def test_builtins_are_registered_by_their_kind() -> None:
    known = registered()
    expected: dict[str, type[BaseValidator]] = {
        "json_schema": validators.JsonSchema,
        "pydantic": validators.PydanticModel,
        "structure": validators.Structure,
        "tool_calls": validators.ToolCalls,
        "confidence": validators.Confidence,
    }
    for kind, cls in expected.items():
        assert known[kind] is cls
        assert cls.kind == kind


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(LookupError, match=r"unknown validator type 'nope'; known: .*json_schema"):
        build_validator("x", "nope", {}, policy_dir=None)


def test_a_function_validator_gets_the_policy_name() -> None:
    def shouty(c: Completion) -> Verdict:
        return Verdict("whatever", c.text.isupper(), "" if c.text.isupper() else "not caps")

    v = build_validator("loud", "shouty", {}, policy_dir=None, extra={"shouty": shouty})
    assert isinstance(v, Validator)
    assert v(answer("HI")) == Verdict("loud", True, "")
    assert v(answer("hi")) == Verdict("loud", False, "not caps")
    with pytest.raises(TypeError, match="takes no options"):
        build_validator("loud", "shouty", {"level": 3}, policy_dir=None, extra={"shouty": shouty})


def test_a_function_may_return_a_bool() -> None:
    v = build_validator(
        "short", "short", {}, policy_dir=None, extra={"short": lambda c: len(c.text) < 5}
    )
    assert v(answer("ok")).passed
    assert v(answer("far too long")) == Verdict("short", False, "short returned False")


def test_a_plain_class_is_called_with_the_options() -> None:
    class Contains:
        def __init__(self, word: str) -> None:
            self.word = word

        def __call__(self, c: Completion) -> Verdict:
            return Verdict("contains", self.word in c.text)

    v = build_validator(
        "has_total", "contains", {"word": "total"}, policy_dir=None, extra={"contains": Contains}
    )
    assert v(answer("the total is 3")) == Verdict("has_total", True)
    assert not v(answer("nothing")).passed
    with pytest.raises(TypeError):
        build_validator(
            "x", "contains", {"wrod": "total"}, policy_dir=None, extra={"contains": Contains}
        )


class Words(BaseValidator):
    """At most ``most`` words."""

    kind: ClassVar[str] = "words"
    most: int = 10

    def __call__(self, completion: Completion, /) -> Verdict:
        n = len(completion.text.split())
        return self.verdict(n <= self.most, f"{n} words > {self.most}" if n > self.most else "", n)


@pytest.fixture
def words_registered() -> Iterator[None]:
    register_validator("words", Words)
    yield
    del registered()["words"]  # type: ignore[attr-defined]


def test_a_registered_base_validator_subclass_takes_options_and_names(
    words_registered: None,
) -> None:
    v = build_validator("brief", "words", {"most": 2}, policy_dir=None)
    assert isinstance(v, Words)
    assert v.name == "brief"
    assert v(answer("one two three")) == Verdict("brief", False, "3 words > 2", 3)
    with pytest.raises(ValueError, match="most"):
        build_validator("brief", "words", {"most": "many"}, policy_dir=None)


def test_register_validator_works_as_a_decorator() -> None:
    @register_validator("always_no")  # type: ignore[untyped-decorator]
    def always_no(c: Completion) -> Verdict:
        return Verdict("always_no", False, "no")

    try:
        assert registered()["always_no"] is always_no
    finally:
        del registered()["always_no"]  # type: ignore[attr-defined]


# --- through a policy -----------------------------------------------------------------------


def test_policy_errors_name_the_validator_field(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("x")
    data = {"models": MODELS, "validators": [{"type": "json_schema", "schema_file": "nope.json"}]}
    with pytest.raises(PolicyError) as info:
        Policy.from_dict(data, task="t", path=path)
    assert info.value.field == "validators[0].schema_file"
    assert "cannot read" in str(info.value)


def test_the_engine_sees_the_hooks_each_source_needs() -> None:
    entries: list[dict[str, Any]] = [
        {"type": "structure"},
        {"type": "confidence", "source": "logprobs", "min": 0.5, "name": "lp"},
        {"type": "confidence", "source": "self_rated", "min": 0.5, "name": "rated"},
        {"type": "confidence", "source": "verify", "min": 0.5, "name": "check"},
    ]
    p = Policy.from_dict({"models": MODELS, "validators": entries}, task="t")
    # The request's own checks come last, after the policy's validators.
    assert [v.name for v in p.checks] == ["structure", "lp", "request"]  # type: ignore[attr-defined]
    assert [v.name for v in p.cleaners] == ["rated"]  # type: ignore[attr-defined]
    assert [v.name for v in p.follow_ups] == ["check"]  # type: ignore[attr-defined]
    assert len(p.preparers) == 2


def test_published_schema_describes_builtin_options() -> None:
    variants = policy_json_schema()["properties"]["validators"]["items"]["oneOf"]
    by_type = {v["properties"]["type"]["const"]: v for v in variants}
    assert "schema" in by_type["json_schema"]["properties"]
    assert "schema_" not in by_type["json_schema"]["properties"]
    assert set(by_type["confidence"]["properties"]) >= {"source", "min", "aggregate"}
    assert by_type["structure"]["additionalProperties"] is False
