"""Routing before the first call: ``start_at:`` rules send some requests straight up the ladder.

A rule names a rung (``model``) and conditions, all of which must hold::

    start_at:
      - {model: gpt-4o, prompt_tokens_over: 4000}   # long context
      - {model: gpt-4o, match: "(?i)stack trace"}   # RE2, searched in every message's text
      - {model: gpt-4o, tools_over: 5}              # complex tool calling

The first rule that matches decides; a request no rule matches starts at the cheapest model.
Rules can only skip rungs (a call still climbs from where it starts), so the answer is never
weaker than the cascade's. The decision is a pure function of the request: the engine makes
it before the first call, with no I/O. ``prompt_tokens`` is estimated as characters / 4 (no
tokenizer on the hot path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ..discovery import compile_linear
from ..exceptions import PolicyError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ..events import Request

__all__ = ["StartRule", "check_start", "start_index"]


class StartRule(BaseModel):
    """One ``start_at:`` rule: start at ``model`` when every condition given holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str = Field(min_length=1, description="The rung to start at.")
    prompt_tokens_over: int | None = Field(
        default=None, ge=0, description="The prompt is longer (characters / 4) than this."
    )
    match: str | None = Field(
        default=None, description="A regex (RE2, linear time) found in a message's text."
    )
    tools_over: int | None = Field(default=None, ge=0, description="More tools offered.")
    _pattern: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compiled(self) -> StartRule:
        if self.prompt_tokens_over is None and self.match is None and self.tools_over is None:
            raise ValueError("a start_at rule needs a condition (prompt_tokens_over, match, ...)")
        if self.match is not None:
            self._pattern = compile_linear(self.match)
        return self

    def applies(self, request: Request, text: str) -> bool:
        """Whether every condition holds for ``request`` (``text``: its messages' text)."""
        if self.tools_over is not None and len(request.tools) <= self.tools_over:
            return False
        if self.prompt_tokens_over is not None and len(text) // 4 <= self.prompt_tokens_over:
            return False
        return self._pattern is None or self._pattern.search(text) is not None


def _text(request: Request) -> str:
    parts = []
    for m in request.messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
    return "\n".join(parts)


def start_index(
    rules: Sequence[StartRule], models: Sequence[str], request: Request
) -> tuple[int, int | None]:
    """(the rung to start at, the index of the rule that chose it, or None: no rule did)."""
    if not rules:
        return 0, None
    text = _text(request)
    for i, rule in enumerate(rules):
        if rule.applies(request, text):
            return models.index(rule.model), i
    return 0, None


def check_start(rules: Sequence[StartRule], models: Sequence[str], path: Path | None) -> None:
    """Raise PolicyError when a rule names a model that is not a rung of the ladder."""
    for i, rule in enumerate(rules):
        if rule.model not in models:
            raise PolicyError(
                f"{rule.model!r} is not one of the models {list(models)}",
                path=path,
                field=f"start_at[{i}].model",
            )
