"""``Router``: the task of a request that no header or route names.

First the policies that declare ``match:`` (in task order), then, when discovery is on, a
task of its own named from the request's fingerprint, run under the defaults policy (the
proxy config's ``discover:``). A discovered task's policy is the defaults with that name; when
the defaults name no ``models``, its ladder is the cheap model then the model the request
asked for (so observe mode answers with the model the application chose).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, overload

from ..exceptions import PolicyError
from .fingerprint import Fingerprint, fingerprint

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ..policy import Policy, PolicySet

# The ladder of discovered tasks when neither the defaults nor the request name a stronger
# model than the cheap one.
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o")
# A 400 from a discovered task's cheap rung escalates: that rung is one the application never
# chose, and may refuse what the requested model takes (``reasoning_effort``, a newer
# parameter). The requested model is the strongest rung, whose 400 stays fatal (the default
# fatal_status) and so reaches the client, in cascade and in observe mode.
DEFAULTS: Mapping[str, Any] = {
    "models": list(DEFAULT_MODELS),
    "mode": "observe",
    "escalate_status": [400],
}
# Discovered tasks whose compiled policy is kept; past this the least recently seen is
# compiled again when it comes back (same fingerprint, same policy).
_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a request goes: its ``task`` and ``policy``; ``fingerprint`` when discovered."""

    task: str
    policy: Policy
    fingerprint: Fingerprint | None = None


@overload
def name_of(task: str | Routed) -> str: ...
@overload
def name_of(task: str | Routed | None) -> str | None: ...
def name_of(task: str | Routed | None) -> str | None:
    """The name of a task as the cascade is handed it: a policy file's name, or a ``Routed``'s
    (for display and records: routing goes by the ``Routed`` itself)."""
    return task.task if isinstance(task, Routed) else task


class Router:
    """Routes by ``match:`` and by fingerprint. See the module docstring.

    Args:
        matching: the policies that declare ``match:``, in the order they are tried.
        defaults: the compiled defaults policy of discovered tasks (None: no discovery).
        fixed_models: the defaults name their own ``models`` (else: per requested model).
        fingerprint: ``(messages, params, model) -> Fingerprint``, ``fingerprint`` unless
            given (a test forces two fingerprints to share a name through it).

    ``active`` is False when no request could be routed (no ``match:``, no discovery).

    Discovered tasks are kept by their fingerprint's full digest, never by their name: a
    name has 24 bits of the digest, which a caller can grind in minutes to make its own
    prompt share another's name, and the policy (the ladder's top is the requested model)
    of one fingerprint must never answer another's requests.
    """

    def __init__(
        self,
        matching: Sequence[Policy] = (),
        defaults: Policy | None = None,
        *,
        fixed_models: bool = False,
        fingerprint: Callable[..., Fingerprint] = fingerprint,
    ) -> None:
        self._fingerprint = fingerprint
        self.matching = tuple(p for p in matching if p.spec.match is not None)
        self.defaults = defaults
        self.fixed_models = fixed_models
        self.active = bool(self.matching) or defaults is not None
        self._found: OrderedDict[str, tuple[Policy, dict[str, Any], Routed]] = OrderedDict()
        # The record extra of each kept policy, by the policy object (Policy hashes by identity).
        self._extra: dict[Policy, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def build(
        cls,
        policies: PolicySet,
        discover: bool | Mapping[str, Any],
        compile: Callable[..., Policy],
    ) -> Router:
        """A router over the policies of ``policies`` that declare ``match:`` (a file that does
        not compile is left out: naming its task still raises its error), with discovery as
        ``discover`` says: False (off), True (``DEFAULTS``), or policy fields over
        ``DEFAULTS``; ``compile`` is ``Policy.from_dict``. The defaults' rungs may name the
        providers of ``policies`` (``_providers.yaml``, the proxy's ``providers:``) and their
        validators its extra types (``Cascade(validators=...)``), as a policy file's may.
        Raises ``PolicyError`` for invalid fields."""
        matching = []
        for task in policies.tasks():
            try:
                matching.append(policies.get(task))
            except PolicyError:
                continue
        if discover is False:
            return cls(matching)
        fields = {} if discover is True else dict(discover)
        defaults = compile(
            {**DEFAULTS, **fields},
            task="discovered",
            providers=policies.providers,
            validators=policies.validators,
        )
        return cls(matching, defaults, fixed_models="models" in fields)

    def route(
        self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], model: Any
    ) -> Routed | None:
        """The task of a chat request (``params``: its other arguments; ``model``: the model
        it asked for), or None when no policy matches and discovery is off."""
        if not self.active or not isinstance(messages, list | tuple):
            return None
        requested = model if isinstance(model, str) else None
        fp = self._fingerprint(messages, params, requested)
        for policy in self.matching:
            spec = policy.spec.match
            assert spec is not None  # filtered in __init__
            if spec.matches(
                prompt=fp.prompt_raw,
                digest=fp.digest,
                model=model,
                metadata=params.get("metadata"),
                tools=fp.tools,
            ):
                return Routed(policy.task, policy)
        if self.defaults is None:
            return None
        found = self._found.get(fp.digest)
        if found is None:
            found = self._discover(fp)
        routed = found[2]
        return routed if routed.fingerprint is fp else Routed(fp.task, found[0], fp)

    def record_extra(self, policy: Policy) -> Mapping[str, Any] | None:
        """What the records of a call run under ``policy`` (a ``Routed.policy`` of a
        discovered task, while this router keeps it) keep beside the call: its fingerprint
        and ladder, for ``promote``. None for any other policy."""
        return self._extra.get(policy)

    def _discover(self, fp: Fingerprint) -> tuple[Policy, dict[str, Any], Routed]:
        defaults = self.defaults
        assert defaults is not None  # checked by the caller
        policy = defaults
        if not self.fixed_models:
            strong = fp.model if fp.model and fp.model != DEFAULT_MODELS[0] else None
            if strong is not None and strong != defaults.models[-1]:
                policy = defaults.with_changes(models=[DEFAULT_MODELS[0], strong])
        policy = replace(policy, task=fp.task)
        extra = {"discovered": {**fp.to_dict(), "models": list(policy.models)}}
        found = (policy, extra, Routed(fp.task, policy, fp))
        with self._lock:
            old = self._found.get(fp.digest)
            if old is not None:  # found by two threads at once: keep the first
                return old
            self._found[fp.digest] = found
            self._extra[policy] = extra
            if len(self._found) > _CACHE_SIZE:
                _, (evicted, _, _) = self._found.popitem(last=False)
                self._extra.pop(evicted, None)
        return found


__all__ = ["DEFAULTS", "DEFAULT_MODELS", "Routed", "Router", "name_of"]
