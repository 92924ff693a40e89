"""Editing policy files in place: one value changed, every other byte kept."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..exceptions import PolicyError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CERTIFIED", "certified_validators", "write_learned", "write_threshold"]

# The mark `calibrate --write` leaves on the min: line it certified; the report reads it so
# that it never suggests lowering a certified threshold.
CERTIFIED = "# certified by cascade calibrate"
_MARK = re.compile(r"\s*# certified by cascade calibrate[^\n]*")


def number_text(value: float) -> str:
    """``value`` as the shortest text that reads back as exactly it (``0.9999996``, ``4e-06``).

    What ``write_threshold`` writes, so what a command prints of a threshold is what the file
    holds (``:g`` would round 0.9999996 to ``1``).
    """
    return f"{value:g}" if float(f"{value:g}") == value else repr(value)


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
    shown = number_text(value)
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


def write_learned(
    path: Path, *, model: str, learned: str, above: float, note: str | None = None
) -> None:
    """Make ``start_at`` send calls to ``model`` when the model file ``learned`` puts their
    P(escalate) above ``above``: the rule ``{model, learned, above}`` replaces an earlier
    learned rule written on one line, or is added after the existing rules (which it keeps,
    and which are consulted first), or starts a ``start_at:`` list at the end of the file.

    YAML keeps its comments and layout (only that one line changes); a JSON policy is
    rewritten. Raises ``PolicyError`` where the list is not in a form it can edit.
    """
    if path.suffix == ".json":
        _write_learned_json(path, {"model": model, "learned": learned, "above": above})
        return
    from ruamel.yaml import YAML

    text = path.read_text(encoding="utf-8")
    data: Any = YAML().load(text) or {}
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    mark = f"  # cascade learn ({note})" if note else "  # cascade learn"
    fields = f"model: {json.dumps(model)}, learned: {json.dumps(learned)}, above: {above:g}"
    rule = f"{{{fields}}}{mark}\n"
    rules = data.get("start_at") if hasattr(data, "get") else None
    if rules is None or (hasattr(rules, "fa") and rules.fa.flow_style() and not rules):
        if rules is not None:  # `start_at: []`: the line goes, a block list takes its place
            row, _ = data.lc.key("start_at")
            del lines[row]
        lines += ["start_at:\n", f"  - {rule}"]
        path.write_text("".join(lines), encoding="utf-8")
        return
    if not hasattr(rules, "lc") or rules.fa.flow_style():
        raise PolicyError("add the learned rule to start_at by hand (flow style)", path=path)
    for i, item in enumerate(rules):
        if hasattr(item, "get") and item.get("learned") is not None:
            row, col = rules.lc.item(i)
            if not item.fa.flow_style() or _item_end(lines, row, col) != row + 1:
                raise PolicyError(
                    f"replace the learned rule start_at[{i}] by hand (it spans lines)", path=path
                )
            lines[row] = lines[row][:col] + rule
            path.write_text("".join(lines), encoding="utf-8")
            return
    row, col = rules.lc.item(len(rules) - 1)
    dash = lines[row][:col].rindex("-")
    lines.insert(_item_end(lines, row, col), " " * dash + f"- {rule}")
    path.write_text("".join(lines), encoding="utf-8")


def _item_end(lines: list[str], row: int, col: int) -> int:
    """The line after the block-list item at (``row``, ``col``): the next line, past blank
    and comment lines, indented no deeper than its dash."""
    dash = lines[row][:col].rindex("-")
    end = row + 1
    for i in range(row + 1, len(lines)):
        body = lines[i].strip()
        if not body or body.startswith("#"):
            continue
        if len(lines[i]) - len(lines[i].lstrip()) <= dash:
            break
        end = i + 1
    return end


def _write_learned_json(path: Path, rule: dict[str, Any]) -> None:

    data = json.loads(path.read_text(encoding="utf-8"))
    rules = [r for r in data.get("start_at") or [] if not r.get("learned")]
    data["start_at"] = [*rules, rule]
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
