"""Editing policy files in place: one value changed, every other byte kept."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..exceptions import PolicyError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CERTIFIED", "certified_validators", "write_threshold"]

# The mark `calibrate --write` leaves on the min: line it certified; the report reads it so
# that it never suggests lowering a certified threshold.
CERTIFIED = "# certified by cascade calibrate"
_MARK = re.compile(r"\s*# certified by cascade calibrate[^\n]*")


def write_threshold(path: Path, index: int, value: float, *, note: str | None = None) -> None:
    """Set ``validators[index].min`` in a YAML policy file, keeping comments and layout.

    ruamel.yaml locates the value; only that token is rewritten (or one ``min:`` line is
    added after the entry's first key), so every other byte of the file stays as it was.
    With ``note`` (say ``"target 0.97, delta 0.05"``) the line is marked ``CERTIFIED``,
    replacing an earlier mark; without it an earlier mark is removed.
    """
    from ruamel.yaml import YAML

    text = path.read_text(encoding="utf-8")
    entry = YAML().load(text)["validators"][index]
    lines = text.splitlines(keepends=True)
    shown = f"{value:g}" if float(f"{value:g}") == value else repr(value)
    if "e" in shown and "." not in shown:  # YAML 1.1 (PyYAML) reads 4e-06 as a string
        shown = shown.replace("e", ".0e", 1)
    if "min" in entry:
        row, col = entry.lc.value("min")
        old = re.match(r"[^\s#,}\]]+", lines[row][col:])
        end = col + (old.end() if old else 0)
        lines[row] = lines[row][:col] + shown + lines[row][end:]
    else:
        first = next(iter(entry))
        row, col = entry.lc.key(first)
        if entry.fa.flow_style():
            raise PolicyError(f"add min: to validators[{index}] by hand (flow style)", path=path)
        row += 1
        lines.insert(row, " " * col + f"min: {shown}\n")
    body = lines[row].rstrip("\n")
    ending = lines[row][len(body) :]
    body = _MARK.sub("", body)
    if note is not None and not entry.fa.flow_style():
        body += f"  {CERTIFIED} ({note})"
    lines[row] = body + ending
    path.write_text("".join(lines), encoding="utf-8")


def certified_validators(path: Path) -> set[int]:
    """The indexes of the validators whose ``min:`` line carries the ``CERTIFIED`` mark."""
    from ruamel.yaml import YAML

    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found: set[int] = set()
    for i, entry in enumerate((YAML().load(text) or {}).get("validators") or ()):
        if hasattr(entry, "lc") and "min" in entry:
            row, _ = entry.lc.value("min")
            if CERTIFIED in lines[row]:
                found.add(i)
    return found
