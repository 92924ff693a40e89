"""Hostile or broken files people write: policies, ``_providers.yaml``, the proxy config (its
``discover:`` block too). Each fails fast with an error naming the file; none hangs, exhausts
memory, or raises a raw UnicodeDecodeError or RecursionError."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cascade.cli import main
from cascade.exceptions import PolicyError
from cascade.policy import Policy, PolicySet
from cascade.proxy import ConfigError, load_config

if TYPE_CHECKING:
    from pathlib import Path

POLICY = "models: [gpt-4o-mini, gpt-4o]\n"
# "Billion laughs": nine levels of nine aliases, 9**9 strings once expanded.
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
DEEP_YAML = "params: " + "[" * 50_000 + "]" * 50_000 + "\n"
DEEP_JSON = '{"models": ["a", "b"], "params": {"x": ' + "[" * 50_000 + "]" * 50_000 + "}}"


def _policy_error(path: Path) -> str:
    with pytest.raises(PolicyError) as e:
        Policy.load(path)
    assert e.value.path == path
    return str(e.value)


@pytest.mark.parametrize("where", ["top", "params", "validators"])
def test_a_yaml_alias_bomb_fails_fast_naming_the_file(tmp_path, where) -> None:
    path = tmp_path / "t.yaml"
    if where == "top":
        path.write_text(POLICY + BOMB)
    elif where == "params":
        indented = "".join("  " + line + "\n" for line in BOMB.splitlines())
        path.write_text(POLICY + "params:\n" + indented)
    else:
        path.write_text(POLICY + "validators:\n  - &v {type: structure}\n  - *v\n")
    message = _policy_error(path)
    assert str(path) in message and "aliases" in message
    assert len(message) < 500  # never an expanded value


def test_a_non_utf8_file_names_the_file_and_the_byte(tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(POLICY.encode() + b"description: caf\xe9\n")
    message = _policy_error(path)
    assert "not UTF-8" in message and f"offset {len(POLICY) + 16}" in message


@pytest.mark.parametrize(("name", "text"), [("t.yaml", DEEP_YAML), ("t.json", DEEP_JSON)])
def test_a_deeply_nested_file_is_a_policy_error(tmp_path, name, text) -> None:
    path = tmp_path / name
    path.write_text(text if name.endswith(".json") else POLICY + text)
    assert "nested too deeply" in _policy_error(path)


def test_a_long_invalid_value_is_quoted_short(tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(POLICY + "retries: [" + "x" * 100_000 + "]\n")
    message = _policy_error(path)
    assert "retries" in message and len(message) < 500


def test_two_files_for_one_task_name_both(tmp_path, capsys) -> None:
    (tmp_path / "t.yaml").write_text(POLICY)
    (tmp_path / "t.json").write_text('{"models": ["a"]}')
    with pytest.raises(PolicyError) as e:
        PolicySet(tmp_path).get("t")
    assert str(tmp_path / "t.yaml") in str(e.value) and str(tmp_path / "t.json") in str(e.value)
    assert PolicySet(tmp_path).tasks() == ["t"]
    assert main(["check", str(tmp_path)]) != 0
    out, err = capsys.readouterr()
    assert "ok   t" not in out and "t.json" in err


def test_providers_file_is_read_as_safely(tmp_path) -> None:
    (tmp_path / "t.yaml").write_text(POLICY)
    providers = tmp_path / "_providers.yaml"
    for content in (BOMB, b"providers: {x: {base_url: \xff}}", "providers: " + "[" * 50_000):
        providers.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(PolicyError) as e:
            PolicySet(tmp_path).get("t")
        assert str(providers) in str(e.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (BOMB.encode(), "aliases"),
        (b"default_task: caf\xe9\n", "not UTF-8"),
        (("discover: " + "[" * 50_000 + "]" * 50_000).encode(), "nested too deeply"),
        (b"discover:\n  models: &m [a, b]\n  description: *m\n", "aliases"),
    ],
)
def test_the_proxy_config_is_read_as_safely(tmp_path, content, reason) -> None:
    path = tmp_path / "cascade.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={})
    assert str(path) in str(e.value) and reason in str(e.value)
