"""Every error the library raises on purpose.

::

    CascadeError
    ├── PolicyError (ValueError)        a policy file or option is invalid; names file and field
    ├── UnknownTaskError (LookupError)  no policy file for the task; names directory and tasks
    ├── ScorerError (LookupError)       an eval/calibrate scorer that is unknown or does not load
    ├── InvalidRequestError (ValueError) the call's messages or arguments are malformed
    ├── ProviderError                   the provider refused in a way a stronger model cannot fix
    ├── EscalationExhausted             every rung failed and the policy says on_exhausted: raise
    └── StoreError                      a store could not be read (writes never raise)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .events import Attempt, Failure, Result


class CascadeError(Exception):
    """Root of every error raised by the library."""


class PolicyError(CascadeError, ValueError):
    """A policy file, or one of its fields, is invalid.

    ``path`` is the file (or None for an in-memory policy), ``field`` the dotted location
    of the bad value (``validators[1].min``), or None when the whole file is at fault.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, field: str | None = None):
        self.path = Path(path) if path is not None else None
        self.field = field
        where = ": ".join(str(p) for p in (path, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownTaskError(CascadeError, LookupError):
    """No policy file exists for the task."""

    def __init__(self, task: str, directory: Path, available: Sequence[str]):
        self.task = task
        self.directory = directory
        self.available = tuple(available)
        found = ", ".join(self.available) if self.available else "none"
        super().__init__(
            f"no policy for task {task!r} in {directory} (tasks found: {found}); "
            f"create {directory / (task + '.yaml')}"
        )

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0])


class ScorerError(CascadeError, LookupError):
    """A ``--scorer`` that names no comparator, or a ``module:function`` that does not load
    or is not a function; raised before any model call."""

    def __str__(self) -> str:  # as UnknownTaskError's
        return str(self.args[0])


class InvalidRequestError(CascadeError, ValueError):
    """The call's messages or keyword arguments are malformed; no API call was made."""


class ProviderError(CascadeError):
    """The provider rejected a request in a way a stronger model cannot fix (400, 401, 403).

    ``__cause__`` is the SDK's exception; ``status`` its HTTP status, ``model`` the rung.
    """

    def __init__(self, message: str, *, model: str, status: int | None):
        self.model = model
        self.status = status
        super().__init__(message)


class EscalationExhausted(CascadeError):
    """Every model in the policy failed validation or errored (``on_exhausted: raise``, or
    no model gave an answer at all).

    ``attempts`` lists every call made; ``result`` is the Result that would have been returned
    (None when no model answered; ``unanswered`` is then the call as the store records it,
    and ``failure`` the last provider error, whose ``exception`` is the upstream's answer: the
    fronts relay its status, error body and ``retry-after``).
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[Attempt],
        result: Result | None,
        unanswered: Result | None = None,
        failure: Failure | None = None,
    ):
        self.attempts = tuple(attempts)
        self.result = result
        self.unanswered = unanswered
        self.failure = failure
        super().__init__(message)


class StoreError(CascadeError):
    """A store could not be opened or read. Writing never raises: records spool instead."""

    def __init__(self, message: str, **context: Any):
        self.context = context
        super().__init__(message)
