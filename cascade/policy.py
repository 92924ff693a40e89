"""Policy files (``policies/<task>.yaml``, JSON accepted too): parsed once, compiled, frozen.

``PolicyFile`` is the file format (pydantic, unknown keys rejected); ``Policy`` is what the
engine runs: validators instantiated, prices resolved, hooks sorted out ahead of time so
that nothing on the per-call path looks anything up by name.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import _files
from . import validators as _validators  # registers the built-in validator types
from .compare import AgreementSpec
from .discovery import MatchSpec
from .events import Request  # noqa: TC001  # used by the hook signatures at runtime
from .exceptions import PolicyError, UnknownTaskError
from .judge import Comparison, comparison_of_policy
from .pricing import Price, PriceSpec, price_of
from .routing import StartRule, check_start
from .transports.endpoints import Endpoint, Rung, load_providers, rung_endpoints
from .validators import Cleaner, FollowUp, FromRequest, Preparer, Validator, build_validator

_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SUFFIXES = (".yaml", ".yml", ".json")
_Status = Annotated[int, Field(ge=400, le=599)]  # a failed call's status: 4xx or 5xx


class PolicyFile(BaseModel):
    """The policy file format. ``cascade schema`` prints its JSON schema for editors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str | None = Field(default=None, description="Task name; must match the file name.")
    description: str = ""
    models: list[str | Rung] = Field(
        min_length=2,
        description="Cheapest first; each later model is one escalation step. A name is served "
        "by the default client; a rung may name its endpoint and price.",
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Re-ask the same model, quoting the failed checks, before escalating.",
    )
    validators: list[dict[str, Any]] = Field(
        default_factory=list, description="Checks run on every answer; any failure escalates."
    )
    derive: bool = Field(True, description="Also run the request's own checks (FromRequest).")
    match: MatchSpec | None = Field(None, description="Requests it gets with no header or route.")
    on_exhausted: Literal["return", "raise"] = "return"
    max_attempts: int | None = Field(default=None, ge=1, description="Answer calls per request.")
    max_cost_usd: Decimal | None = Field(default=None, gt=0, description="Spend cap per request.")
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    fatal_status: list[_Status] = Field(
        default=[400, 401, 403],
        description="HTTP statuses that raise ProviderError instead of escalating, on any "
        "rung (but see escalate_status).",
    )
    escalate_status: list[_Status] = Field(
        default_factory=list,
        description="HTTP statuses that escalate instead of raising on every rung but the "
        "strongest (the last of models), even when in fatal_status: a cheap model may refuse "
        "a parameter the strongest takes. The strongest model's own stay fatal.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Default chat.completions.create arguments."
    )
    mode: Literal["cascade", "observe", "strong", "cheap"] = Field(
        default="cascade",
        description="cascade: cheap first, escalate on failure. observe: the strongest model "
        "answers; the cheapest runs beside it and the would-be decision is recorded. "
        "strong / cheap: only that model (validators still run and are recorded).",
    )
    observe_sample: float = Field(
        default=1.0, ge=0, le=1, description="Share of calls observed in observe mode."
    )
    agreement: AgreementSpec = Field(
        default_factory=lambda: AgreementSpec(),
        description="How two answers are compared (observe mode, eval, calibrate).",
    )
    start_at: list[StartRule] = Field(default_factory=list, description="cascade.routing")
    store_inputs: Literal["full", "redacted", "hash", "none"] = "redacted"
    store_outputs: Literal["full", "redacted", "hash", "none"] = Field(
        default="redacted",
        description="How attempt outputs are stored: a model that echoes its prompt would "
        "otherwise undo the input's redaction. full, redacted, hash (sha256) or none.",
    )
    sample_passes: float = Field(default=0.05, ge=0, le=1)
    stored_output_chars: int = Field(default=2000, ge=0)

    @field_validator("models")
    @classmethod
    def _distinct(cls, v: list[str | Rung]) -> list[str | Rung]:
        if not all(isinstance(m, Rung) or m for m in v):
            raise ValueError("every model must be a non-empty name")
        names = [m if isinstance(m, str) else m.name for m in v]
        if len(set(names)) != len(names):
            raise ValueError(f"models must be distinct, got {names}")
        return v

    @field_validator("params")
    @classmethod
    def _no_model(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in ("model", "messages", "stream", "n"):
            if key in v:
                raise ValueError(f"{key!r} cannot be a default parameter")
        return v


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A compiled policy: what the engine runs for one task."""

    task: str
    models: tuple[str, ...]
    validators: tuple[Validator, ...]
    prices: Mapping[str, Price | None]
    spec: PolicyFile
    path: Path | None = None
    # Derived once so the per-call path does no look-ups:
    preparers: tuple[Callable[[Request], Request], ...] = field(default=())
    cleaners: tuple[Cleaner, ...] = field(default=())
    checks: tuple[Validator, ...] = field(default=())
    follow_ups: tuple[FollowUp, ...] = field(default=())
    fatal_status: frozenset[int] = field(default=frozenset())  # on the strongest rung
    fatal_below: frozenset[int] = field(default=frozenset())  # on the rungs below it
    # The extra validator types it was compiled with, so that a changed copy compiles too.
    extra_validators: Mapping[str, Any] = field(default_factory=dict)
    # The endpoint of each rung not served by the default client (empty for a ladder of
    # names), and the named providers it was compiled with.
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    providers: Mapping[str, Endpoint] = field(default_factory=dict)
    judge: Comparison | None = None  # agreement: {comparator: judge | embedding}

    @property
    def strongest(self) -> str:
        return self.models[-1]

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        task: str | None = None,
        path: Path | None = None,
        validators: Mapping[str, Any] | None = None,
        providers: Mapping[str, Endpoint] | None = None,
    ) -> Policy:
        """Validate and compile a policy given as a mapping; ``providers`` are the endpoints
        its rungs may name. Raises ``PolicyError``."""
        try:
            spec = PolicyFile.model_validate(data)
        except ValidationError as e:
            raise _files.policy_error(e, path) from None
        name = task or spec.task
        if name is None:
            raise PolicyError("missing field 'task'", path=path, field="task")
        if spec.task is not None and task is not None and spec.task != task:
            raise PolicyError(
                f"task {spec.task!r} does not match the file name {task!r}", path=path, field="task"
            )
        built = tuple(
            _build(i, entry, spec.validators, path, validators)
            for i, entry in enumerate(spec.validators)
        )
        providers = dict(providers or {})
        endpoints, rung_prices = rung_endpoints(spec.models, spec.prices, providers, path)
        overrides = {
            m: Price(p.input, p.output, p.cached_input)
            for m, p in {**spec.prices, **rung_prices}.items()
        }
        models = tuple(m if isinstance(m, str) else m.name for m in spec.models)
        # The request's own checks run after the policy's, whose `parsed` comes first.
        derived = (FromRequest.beside(built),) if spec.derive else ()
        judge = comparison_of_policy(spec.agreement, path)
        check_start(spec.start_at, models, path)
        priced = [*models, *([judge.model] if judge and judge.model not in models else [])]
        return cls(
            task=name,
            models=models,
            validators=built,
            prices={m: price_of(m, overrides) for m in priced},
            spec=spec,
            path=path,
            preparers=tuple(v.prepare for v in built if isinstance(v, Preparer)),
            cleaners=tuple(v for v in built if isinstance(v, Cleaner)),
            checks=tuple(
                v for v in built if not isinstance(v, Cleaner) and not isinstance(v, FollowUp)
            )
            + derived,
            follow_ups=tuple(v for v in built if isinstance(v, FollowUp)),
            fatal_status=frozenset(spec.fatal_status),
            fatal_below=frozenset(spec.fatal_status) - frozenset(spec.escalate_status),
            extra_validators=dict(validators or {}),
            endpoints=endpoints,
            providers=providers,
            judge=judge,
        )

    def with_changes(self, **fields: Any) -> Policy:
        """A copy whose policy fields are changed as given (``mode="strong"``), compiled with
        the same extra validator types. Raises ``PolicyError`` for invalid values."""
        data = {**self.spec.model_dump(exclude_none=True), **fields}
        return Policy.from_dict(
            data,
            task=self.task,
            path=self.path,
            validators=self.extra_validators,
            providers=self.providers,
        )

    @classmethod
    def load(
        cls,
        path: Path | str,
        *,
        validators: Mapping[str, Any] | None = None,
        providers: Mapping[str, Endpoint] | None = None,
    ) -> Policy:
        """Read, validate and compile one policy file. Raises ``PolicyError``."""
        path = Path(path)
        try:
            data = _files.load(path)
        except OSError as e:
            raise PolicyError(f"cannot read: {e.strerror}", path=path) from None
        except _files.FileFormatError as e:
            raise PolicyError(str(e), path=path) from None
        if not isinstance(data, Mapping):
            raise PolicyError(
                f"expected a mapping of policy fields, got {type(data).__name__}", path=path
            )
        return cls.from_dict(
            data, task=path.stem, path=path, validators=validators, providers=providers
        )


def _build(
    i: int,
    entry: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    path: Path | None,
    extra: Mapping[str, Any] | None,
) -> Validator:
    where = f"validators[{i}]"
    options = dict(entry)
    kind = options.pop("type", None)
    if not isinstance(kind, str):
        raise PolicyError("missing field 'type'", path=path, field=f"{where}.type")
    name = options.pop("name", None)
    if name is None:  # the type, numbered when the policy uses it more than once
        same = [j for j, e in enumerate(entries) if e.get("type") == kind and "name" not in e]
        name = kind if len(same) == 1 else f"{kind}#{same.index(i) + 1}"
    try:
        return build_validator(
            str(name),
            kind,
            options,
            policy_dir=path.parent if path else None,
            extra=extra,
        )
    except ValidationError as e:
        raise _files.policy_error(e, path, prefix=(f"validators[{i}]",)) from None
    except LookupError as e:
        raise PolicyError(str(e).strip("'\""), path=path, field=f"{where}.type") from None
    except (TypeError, ValueError) as e:
        raise PolicyError(str(e), path=path, field=where) from None


class PolicySet:
    """The policies of one directory, loaded on first use of each task and then cached.

    ``validators`` maps extra validator type names to factories for this set only;
    ``providers`` names endpoints for the rungs (``cascade serve``'s config), beside those of
    the directory's ``_providers.yaml``; a name may be given in only one of the two.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        validators: Mapping[str, Any] | None = None,
        providers: Mapping[str, Endpoint] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.validators = dict(validators or {})
        self._given = dict(providers or {})
        self._providers: dict[str, Endpoint] | None = None
        self._cache: dict[str, Policy] = {}
        self._lock = threading.Lock()

    @property
    def providers(self) -> Mapping[str, Endpoint]:
        """The named endpoints: the given ones and the directory's ``_providers.yaml``."""
        if self._providers is None:
            self._providers = load_providers(self.directory, self._given)
        return self._providers

    def tasks(self) -> list[str]:
        """Task names of the policy files in the directory, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(  # _providers.yaml and other `_` files are not tasks
            {
                p.stem
                for p in self.directory.iterdir()
                if p.suffix in _SUFFIXES and p.is_file() and not p.name.startswith("_")
            }
        )

    def add(self, policy: Policy) -> None:
        """Use ``policy`` for its task, ahead of any file."""
        self._cache[policy.task] = policy

    def get(self, task: str) -> Policy:
        """The compiled policy of ``task``. Raises UnknownTaskError or PolicyError."""
        try:
            return self._cache[task]
        except KeyError:
            pass
        with self._lock:
            if task in self._cache:
                return self._cache[task]
            policy = Policy.load(
                self._find(task), validators=self.validators, providers=self.providers
            )
            self._cache[task] = policy
            return policy

    def _find(self, task: str) -> Path:
        if isinstance(task, str) and _TASK_NAME.match(task):
            found = [self.directory / (task + s) for s in _SUFFIXES]
            found = [p for p in found if p.is_file()]
            if len(found) > 1:
                raise PolicyError(
                    f"task {task!r} has {len(found)} policy files ("
                    + ", ".join(str(p) for p in found)
                    + "): keep one",
                    path=found[0],
                )
            if found:
                return found[0]
        raise UnknownTaskError(str(task), self.directory, self.tasks())

    def load_all(self) -> list[Policy]:
        """Compile every policy file (to check a directory); raises on the first bad one."""
        return [self.get(t) for t in self.tasks()]


def policy_json_schema() -> dict[str, Any]:
    """The JSON schema of policy files, with each registered validator type's options."""
    schema = PolicyFile.model_json_schema()
    variants = []
    for kind, factory in sorted(_validators.registered().items()):
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            sub = factory.model_json_schema()
            sub.setdefault("properties", {})
            sub["properties"]["type"] = {"const": kind}
            sub["properties"]["name"] = {"type": "string"}
            sub["required"] = sorted({"type", *sub.get("required", [])})
            variants.append(sub)
        else:
            variants.append({"type": "object", "properties": {"type": {"const": kind}}})
    schema["properties"]["validators"]["items"] = {"oneOf": variants}
    schema["title"] = "cascade policy"
    return schema


__all__ = ["Endpoint", "Policy", "PolicyFile", "PolicySet", "Rung", "policy_json_schema"]
