"""Routing before the first call: ``start_at:`` rules send some requests straight up the ladder.

A rule names a rung (``model``) and conditions, all of which must hold::

    start_at:
      - {model: gpt-4o, prompt_tokens_over: 4000}   # long context
      - {model: gpt-4o, match: "(?i)stack trace"}   # RE2, searched in every message's text
      - {model: gpt-4o, tools_over: 5}              # complex tool calling
      - {model: gpt-4o, learned: _t.start.json, above: 0.93}  # written by `cascade learn`

The first rule that matches decides; a request no rule matches starts at the cheapest model.
A ``learned`` rule holds when its model (``cascade.routing.learned``, a file beside the
policy, read once when the policy loads) puts the request's probability of escalating from
the cheapest rung above ``above``; it is scored only when the rule's other conditions hold,
and the probability is kept on the Result (``start_p``) and the record (``extra.start_p``).
Rules can only skip rungs (a call still climbs from where it starts), so the answer is never
weaker than the cascade's. The decision is a pure function of the request: the engine makes
it before the first call, with no I/O. ``prompt_tokens`` is estimated as characters / 4 (no
tokenizer on the hot path).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ..discovery import compile_linear
from ..exceptions import PolicyError
from .assess import Assessment, BreakEven, assess, break_even
from .fit import Example, examples_of, fit, held_out
from .learned import StartModel, load_model

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..events import Request

__all__ = [
    "Assessment",
    "BreakEven",
    "Example",
    "StartModel",
    "StartRule",
    "assess",
    "break_even",
    "check_start",
    "examples_of",
    "fit",
    "held_out",
    "load_model",
    "start_index",
]

_CONDITIONS = "a start_at rule needs a condition (prompt_tokens_over, match, tools_over, learned)"


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
    learned: str | None = Field(
        default=None,
        min_length=1,
        description="A model file of `cascade learn` (relative to the policy's directory).",
    )
    above: float | None = Field(
        default=None, gt=0, lt=1, description="With learned: the P(escalate) it must exceed."
    )
    _pattern: Any = PrivateAttr(default=None)
    _model: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compiled(self) -> StartRule:
        given = (self.prompt_tokens_over, self.match, self.tools_over, self.learned)
        if all(c is None for c in given):
            raise ValueError(_CONDITIONS)
        if (self.learned is None) != (self.above is None):
            raise ValueError("learned and above go together")
        if self.match is not None:
            self._pattern = compile_linear(self.match)
        return self

    def load(self, directory: Path | None, policy: Path | None, field: str) -> None:
        """Read the rule's ``learned`` model file (relative to ``directory``), once."""
        if self.learned is None or self._model is not None:
            return
        path = Path(self.learned)
        if directory is not None and not path.is_absolute():
            path = directory / path
        self._model = load_model(path, policy=policy, field=field)

    def probability(self, request: Request) -> float:
        """The learned model's P(escalate) of ``request`` (the rule must have ``learned``)."""
        if self._model is None:
            raise RuntimeError(f"start_at rule {self.learned!r} was not loaded")
        p: float = self._model.of_messages(request.messages)
        return p

    def applies(self, request: Request, text: str) -> bool:
        """Whether every condition holds for ``request`` (``text``: its messages' text)."""
        if self.tools_over is not None and len(request.tools) <= self.tools_over:
            return False
        if self.prompt_tokens_over is not None and len(text) // 4 <= self.prompt_tokens_over:
            return False
        return self._pattern is None or self._pattern.found(text)


# (the rung to start at, the index of the rule that chose it, the learned probability)
Start = tuple[int, int | None, float | None]


def _text(request: Request) -> str:
    parts = []
    for m in request.messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
    return "\n".join(parts)


def start_index(rules: Sequence[StartRule], models: Sequence[str], request: Request) -> Start:
    """(the rung to start at, the index of the rule that chose it or None: no rule did, the
    probability of the learned rule that chose it or None)."""
    if not rules:
        return 0, None, None
    text = _text(request)
    for i, rule in enumerate(rules):
        if not rule.applies(request, text):
            continue
        if rule.learned is None:
            return models.index(rule.model), i, None
        p = rule.probability(request)
        if p > (rule.above or 0.0):
            return models.index(rule.model), i, p
    return 0, None, None


def check_start(rules: Sequence[StartRule], models: Sequence[str], path: Path | None) -> None:
    """Raise PolicyError when a rule names a model that is not a rung of the ladder, or its
    learned model file is missing or invalid (read here, once per policy load)."""
    for i, rule in enumerate(rules):
        if rule.model not in models:
            raise PolicyError(
                f"{rule.model!r} is not one of the models {list(models)}",
                path=path,
                field=f"start_at[{i}].model",
            )
        rule.load(path.parent if path else None, path, f"start_at[{i}].learned")
