"""Reading the files people write (policies, ``_providers.yaml``, the proxy config) safely.

A hostile or broken file fails fast with the reason, never with a raw ``UnicodeDecodeError``
or ``RecursionError`` and never by hanging: the text must be UTF-8 (the error gives the byte
offset), YAML aliases (``*name``) are refused (a "billion laughs" file expands a few
hundred bytes into gigabytes through them), and nesting deeper than ``MAX_DEPTH`` is refused.
A field the file's model refuses is named as written (``validators[0].min``), with its value.
"""

from __future__ import annotations

import json
import reprlib
from typing import TYPE_CHECKING, Any

import yaml

from .exceptions import PolicyError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from pydantic import ValidationError

MAX_DEPTH = 64  # policies nest a few levels (a schema inside a validator); 64 is generous


class FileFormatError(ValueError):
    """The file cannot be read as data; the message says why (without the path)."""


class _NoAliases(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise FileFormatError(
                f"YAML aliases (*name) are not allowed, at line {mark.line + 1} column "
                f"{mark.column + 1}: write the value out"
            )
        return super().compose_node(parent, index)


def load(path: Path, *, as_json: bool | None = None) -> Any:
    """The data of the YAML (or, for ``.json`` or ``as_json``, JSON) file at ``path``.
    Raises ``OSError`` when it cannot be read, ``FileFormatError`` when it is not data."""
    return parse(decode(path.read_bytes()), path.suffix == ".json" if as_json is None else as_json)


def decode(data: bytes) -> str:
    """``data`` as UTF-8 text. Raises ``FileFormatError`` naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(
            f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} ({e.reason})"
        ) from None


def parse(text: str, as_json: bool = False) -> Any:
    """YAML (without aliases) or JSON text as data, at most ``MAX_DEPTH`` levels deep.
    Raises ``FileFormatError``."""
    try:
        data = json.loads(text) if as_json else yaml.load(text, Loader=_NoAliases)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise FileFormatError(f"invalid JSON at {where}: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise FileFormatError(f"invalid YAML{where}: {str(problem)[:200]}") from None
    except RecursionError:
        raise FileFormatError(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    _check_depth(data)
    return data


def _check_depth(data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise FileFormatError(f"nested too deeply (more than {MAX_DEPTH} levels)")
            values = node.values() if isinstance(node, dict) else node
            stack.extend((v, depth + 1) for v in values)


def _short(value: Any) -> str:
    # A value may be huge (a file's whole section): the message quotes its start only.
    text = reprlib.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _loc(parts: Sequence[int | str]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def policy_error(
    e: ValidationError, path: Path | None, prefix: Sequence[int | str] = ()
) -> PolicyError:
    """The first of ``e``'s errors (and how many more), its field under ``prefix``."""
    # A rung is a name or a mapping: of the union's two errors, the one of what was written.
    errors = [x for x in e.errors() if x["loc"][-1:] != ("str",)] or e.errors()
    first = errors[0]
    loc = _loc([*prefix, *(p for p in first["loc"] if p != "Rung")])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] != "missing" and "input" in first:
        msg += f" (got {_short(first['input'])})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return PolicyError(msg + more, path=path, field=loc or None)


__all__ = ["MAX_DEPTH", "FileFormatError", "decode", "load", "parse", "policy_error"]
