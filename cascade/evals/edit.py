"""Editing policy files in place: one value changed, every other byte kept."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..exceptions import PolicyError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["write_threshold"]


def write_threshold(path: Path, index: int, value: float) -> None:
    """Set ``validators[index].min`` in a YAML policy file, keeping comments and layout.

    ruamel.yaml locates the value; only that token is rewritten (or one ``min:`` line is
    added after the entry's first key), so every other byte of the file stays as it was.
    """
    from ruamel.yaml import YAML

    text = path.read_text(encoding="utf-8")
    entry = YAML().load(text)["validators"][index]
    lines = text.splitlines(keepends=True)
    shown = f"{value:g}" if float(f"{value:g}") == value else repr(value)
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
        lines.insert(row + 1, " " * col + f"min: {shown}\n")
    path.write_text("".join(lines), encoding="utf-8")
