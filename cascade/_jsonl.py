"""Reading JSON Lines input files with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["objects"]


def objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of ``path``.

    Raises ValueError naming the file and the line when a line is not JSON or not an object.
    """
    with Path(path).open(encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{no}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{no}: need a JSON object, got {type(row).__name__}")
            yield no, row
