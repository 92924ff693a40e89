"""Prices per million tokens and the cost of one call.

Arithmetic is done in ``Decimal`` from the prices as written, so that costs reproduce to
the cent at any volume (1,000,000 calls of 800 + 400 tokens cost exactly $6,000 on gpt-4o),
and converted to float only at the edge.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Mapping

_MILLION = Decimal(1_000_000)
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``cached_input`` defaults to ``input`` when unknown."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Price:
        """Build from a mapping of numbers (read through ``str`` so 0.15 stays 0.15)."""
        cached = data.get("cached_input")
        return cls(
            input=Decimal(str(data["input"])),
            output=Decimal(str(data["output"])),
            cached_input=None if cached is None else Decimal(str(cached)),
        )

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Decimal:
        """Exact cost in USD of one call; cached tokens are part of ``prompt_tokens``."""
        cached = min(cached_tokens, prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (prompt_tokens - cached) * self.input
            + cached * cached_price
            + completion_tokens * self.output
        ) / _MILLION


class PriceSpec(BaseModel):
    """USD per million tokens for one model, as policy files write it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)


def _read(path: Path | str) -> dict[str, Price]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {name: Price.of(p) for name, p in data["models"].items()}


@cache
def builtin_prices() -> Mapping[str, Price]:
    """The packaged price table, extended or overridden by the file named in CASCADE_PRICES."""
    table = _read(str(resources.files("cascade") / "prices.json"))
    override = os.environ.get("CASCADE_PRICES")
    if override:
        table.update(_read(override))
    return table


def price_of(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model``: policy overrides first, then the table, then the undated name.

    Returns None, with a warning, when nothing is known: costs are then None, never 0.
    """
    for table in (overrides or {}, builtin_prices()):
        if model in table:
            return table[model]
        base = _DATED.sub("", model)
        if base in table:
            return table[base]
    warnings.warn(
        f"no price known for model {model!r}: its calls will have cost None; add it to the "
        "policy's `prices:` (or its rung's `price:`) or to the file named by CASCADE_PRICES",
        UnknownPriceWarning,
        stacklevel=2,
    )
    return None


class UnknownPriceWarning(UserWarning):
    """A model has no known price."""


def usd(amount: Decimal | None) -> float | None:
    """A Decimal amount as the nearest float (None stays None)."""
    return None if amount is None else float(amount)
