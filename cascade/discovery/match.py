"""``match:`` in a policy file: which requests reach the policy with no header or route.

Every condition given must hold: ``system`` (a regex searched in the system and developer
prompt), ``fingerprint`` (a discovered task's fingerprint, or its first 12+ hex digits),
``model`` (the requested model, or one of a list), ``metadata`` (these keys with these values;
``null``: the key is present), ``tools`` (the request offers every one of these tools).

Policy files are written by people and prompts by anyone who calls the proxy, so the regex
runs on RE2, whose time is linear in the prompt's length whatever the pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..validators import LinearRegex

_HEX = frozenset("0123456789abcdef")


def compile_linear(pattern: str) -> LinearRegex:
    """``pattern`` compiled by RE2 (linear time). Raises ``ValueError`` saying why not."""
    return LinearRegex(pattern)


class MatchSpec(BaseModel):
    """The ``match:`` section of a policy. See the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str | None = Field(
        default=None, description="A regex (RE2) searched in the system/developer prompt."
    )
    fingerprint: str | None = Field(
        default=None, description="A discovered task's fingerprint (at least 12 hex digits)."
    )
    model: str | list[str] | None = Field(default=None, description="The requested model(s).")
    metadata: dict[str, str | None] | None = Field(
        default=None, description="Request metadata: these keys with these values (null: any)."
    )
    tools: list[str] | None = Field(
        default=None, description="The request offers every one of these tools (by name)."
    )
    _system: Any = PrivateAttr(default=None)

    @field_validator("system")
    @classmethod
    def _linear(cls, value: str | None) -> str | None:
        if value is not None:
            compile_linear(value)
        return value

    @field_validator("fingerprint")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and (len(value) < 12 or not set(value.lower()) <= _HEX):
            raise ValueError("a fingerprint is at least 12 hex digits (see `cascade tasks`)")
        return None if value is None else value.lower()

    @model_validator(mode="after")
    def _something(self) -> MatchSpec:
        if (
            all(v is None for v in (self.system, self.fingerprint, self.model, self.metadata))
            and not self.tools
        ):
            raise ValueError(
                "match needs at least one of system, fingerprint, model, metadata, tools"
            )
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Compile the regex once."""
        if self.system is not None:
            self._system = compile_linear(self.system)

    def matches(
        self,
        *,
        prompt: str,
        digest: str,
        model: Any,
        metadata: Any,
        tools: tuple[str, ...],
    ) -> bool:
        """True when the request meets every condition."""
        if self.model is not None:
            if isinstance(self.model, str) and model != self.model:
                return False
            if isinstance(self.model, list) and model not in self.model:
                return False
        if self.fingerprint is not None and not digest.startswith(self.fingerprint):
            return False
        if self.metadata:
            if not isinstance(metadata, Mapping):
                return False
            for key, value in self.metadata.items():
                if key not in metadata or (value is not None and metadata[key] != value):
                    return False
        if self.tools and not set(self.tools) <= set(tools):
            return False
        return self._system is None or self._system.found(prompt)


__all__ = ["MatchSpec", "compile_linear"]
