"""The validator protocol, the base class of the built-ins, and the registry by name.

A validator is any callable ``(Completion) -> Verdict``. It says "no" with a failed
Verdict and never raises to do so. Three optional hooks, each declared by a protocol below,
let a validator take part in the call itself; the engine looks for them once, when the
policy is compiled:

``Preparer.prepare(request) -> Request``
    adjust the outgoing request (ask for logprobs, add an instruction).
``Cleaner.clean(completion) -> Completion``
    remove what ``prepare`` asked for from the answer (a self-rating line) before any
    validator sees it and before it reaches the caller.
``FollowUp.follow_up(completion) -> Request`` and ``FollowUp.judge(completion, reply)``
    the verdict needs a second call to the same model (self-verification); the engine
    makes it, counts its cost, and passes its reply to ``judge``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from ..events import Completion, Request, Verdict

if TYPE_CHECKING:
    from pathlib import Path


@runtime_checkable
class Validator(Protocol):
    """Judges one completion."""

    def __call__(self, completion: Completion, /) -> Verdict: ...


@runtime_checkable
class Preparer(Protocol):
    """A validator that adjusts the request before the model is called."""

    def prepare(self, request: Request, /) -> Request: ...


@runtime_checkable
class Cleaner(Protocol):
    """A validator that removes what it asked for from the answer, after judging it."""

    def __call__(self, completion: Completion, /) -> Verdict: ...

    def clean(self, completion: Completion, /) -> Completion: ...


@runtime_checkable
class FollowUp(Protocol):
    """A validator whose verdict needs a second call to the same model."""

    def follow_up(self, completion: Completion, /) -> Request: ...

    def judge(self, completion: Completion, reply: Completion, /) -> Verdict: ...


def name_of(validator: object) -> str:
    """The name a validator's verdicts carry."""
    return str(getattr(validator, "name", type(validator).__name__))


class BaseValidator(BaseModel):
    """Base of the built-in validators: the fields are the policy options.

    Subclasses set ``kind`` (the ``type:`` of the policy entry) and implement ``__call__``.
    Compile expensive things (schemas, regexes) in ``model_post_init`` into private attrs.
    The policy's directory, for options that name files, is in the validation context
    under ``"policy_dir"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str]
    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        """The name verdicts carry: the entry's ``name:``, else its ``type``."""
        return self._name or self.kind

    def verdict(
        self,
        passed: bool,
        reason: str = "",
        score: float | None = None,
        parsed: Any = None,
    ) -> Verdict:
        return Verdict(self.name, passed, reason, score, parsed)

    def __call__(self, completion: Completion, /) -> Verdict:
        raise NotImplementedError


Factory = type[BaseValidator] | Callable[..., Any]

_BUILTIN: dict[str, Factory] = {}


def register_validator(name: str, factory: Factory | None = None) -> Any:
    """Register a validator type under ``name`` for use as ``type: name`` in policy files.

    ``factory`` is a ``BaseValidator`` subclass (its fields are the options), any class
    (called with the options as keyword arguments), or a plain ``(Completion) -> Verdict``
    function (which takes no options). Usable as a decorator::

        @cascade.register_validator("has_total")
        def has_total(completion): ...

    Returns the factory. Registering an existing name replaces it.
    """

    def add(f: Factory) -> Factory:
        _BUILTIN[name] = f
        return f

    return add if factory is None else add(factory)


def registered() -> Mapping[str, Factory]:
    """The validator types known process-wide, by name."""
    return _BUILTIN


class _Named:
    """Gives a plain function's verdicts the name the policy uses for it."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable[[Completion], Verdict]):
        self.name = name
        self.fn = fn

    def __call__(self, completion: Completion, /) -> Verdict:
        v = self.fn(completion)
        if not isinstance(v, Verdict):
            return Verdict(self.name, bool(v), "" if v else f"{self.name} returned {v!r}")
        return (
            v
            if v.validator == self.name
            else Verdict(self.name, v.passed, v.reason, v.score, v.parsed)
        )


def build_validator(
    name: str,
    kind: str,
    options: Mapping[str, Any],
    *,
    policy_dir: Path | None,
    extra: Mapping[str, Factory] | None = None,
) -> Validator:
    """Instantiate the validator ``kind`` with ``options``.

    Raises ``LookupError`` for an unknown kind, pydantic's ``ValidationError`` for bad
    options of a ``BaseValidator``, ``TypeError``/``ValueError`` from other factories.
    """
    factory = (extra or {}).get(kind) or _BUILTIN.get(kind)
    if factory is None:
        known = sorted({*_BUILTIN, *(extra or {})})
        raise LookupError(f"unknown validator type {kind!r}; known: {', '.join(known)}")
    if isinstance(factory, type) and issubclass(factory, BaseValidator):
        v = factory.model_validate(dict(options), context={"policy_dir": policy_dir})
        v._name = name
        return v
    if isinstance(factory, type):
        instance = factory(**options)
        if hasattr(instance, "name"):
            return instance  # type: ignore[no-any-return]
        return _Named(name, instance)
    if options:
        raise TypeError(f"validator {kind!r} is a function and takes no options: {sorted(options)}")
    return _Named(name, factory)


__all__ = [
    "BaseValidator",
    "Cleaner",
    "FollowUp",
    "Preparer",
    "Validator",
    "ValidationError",
    "build_validator",
    "name_of",
    "register_validator",
    "registered",
]
