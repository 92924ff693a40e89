"""Endpoints: where a rung is served, as policy files write it, and the clients made for it.

A policy's rung may name its endpoint (``base_url``, ``azure``, or a ``provider`` from
``_providers.yaml``): ``Rung``, ``Endpoint`` and ``ProvidersFile`` are those file formats
(frozen pydantic models, unknown keys refused; ``cascade.policy`` re-exports them and compiles
them with ``rung_endpoints``). The engine puts a rung's ``Endpoint`` in its ``Call``.
``EndpointClients`` makes one openai client (and so one connection pool) per endpoint on
first use and reuses it for every later call, from any policy. The key is read from the
environment variable the endpoint names when its client is made; it is never part of an
``Endpoint``, a record, a log event or an error message (which name the variable, not its
value).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._files import FileFormatError
from .._files import load as load_file
from ..events import Failure
from ..exceptions import PolicyError
from ..pricing import PriceSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "AzureSpec",
    "Endpoint",
    "EndpointClients",
    "ProvidersFile",
    "Rung",
    "rung_endpoints",
    "MissingKeyError",
    "key_failure",
    "load_providers",
    "make_client",
    "provider_name",
    "providers_json_schema",
    "where",
]


class AzureSpec(BaseModel):
    """An Azure OpenAI resource, called through the openai SDK's ``AzureOpenAI`` client."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    endpoint: str = Field(description="https://RESOURCE.openai.azure.com")
    api_version: str = Field(description="The API version, as Azure names it: 2024-10-21.")
    deployment: str | None = Field(
        default=None, description="The deployment; default: the rung's model name."
    )


class Endpoint(BaseModel):
    """Where a rung's calls go: an OpenAI-compatible ``base_url``, an ``azure`` deployment, or
    (neither) the OpenAI API with another key. Only the key's variable name is kept: the key
    is read from the environment when the endpoint's client is made."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    base_url: str | None = Field(default=None, description="http://127.0.0.1:8000/v1")
    azure: AzureSpec | None = None
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the key. Default: none for a base_url "
        "(local servers), AZURE_OPENAI_API_KEY for azure, else OPENAI_API_KEY.",
    )
    timeout: float | None = Field(default=None, gt=0, description="Seconds per call.")
    max_retries: int | None = Field(default=None, ge=0, description="The SDK's retries.")

    @model_validator(mode="after")
    def _one_place(self) -> Endpoint:
        if self.base_url is not None and self.azure is not None:
            raise ValueError("give `base_url` or `azure`, not both")
        return self


_ENDPOINT_FIELDS = tuple(Endpoint.model_fields)


class Rung(Endpoint):
    """One rung of a ladder: a model, where it is served (inline, or a ``provider`` named in
    ``_providers.yaml``), and its price. Without either it is served by the default client."""

    name: str = Field(min_length=1, description="The model, as the endpoint names it.")
    provider: str | None = Field(default=None, description="A name from `providers:`.")
    price: PriceSpec | None = Field(default=None, description="USD per million tokens.")

    @model_validator(mode="after")
    def _provider_or_inline(self) -> Rung:
        if self.provider is not None and self.endpoint() is not None:
            raise ValueError("give `provider` or the endpoint's own fields, not both")
        return self

    def endpoint(self) -> Endpoint | None:
        """The inline endpoint, or None when the rung sets none of its fields."""
        given = {k: getattr(self, k) for k in _ENDPOINT_FIELDS if getattr(self, k) is not None}
        return Endpoint(**given) if given else None


class ProvidersFile(BaseModel):
    """``policies/_providers.yaml`` (and the proxy config's ``providers:``): endpoints named
    once for every policy, ``{name: gpt-4o, provider: NAME}`` in a ladder."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    providers: dict[str, Endpoint] = Field(default_factory=dict)


def rung_endpoints(
    models: Sequence[str | Rung],
    prices: Mapping[str, PriceSpec],
    providers: Mapping[str, Endpoint],
    path: Path | None,
) -> tuple[dict[str, Endpoint], dict[str, PriceSpec]]:
    """Each rung's endpoint (its provider's, or its own) and price, by model name; ``prices``
    is the policy's ``prices:``. Raises ``PolicyError`` naming the file and the field."""
    endpoints: dict[str, Endpoint] = {}
    priced: dict[str, PriceSpec] = {}
    for i, rung in enumerate(models):
        if isinstance(rung, str):
            continue
        if rung.provider is not None:
            if rung.provider not in providers:
                known = ", ".join(sorted(providers)) or "none: see policies/_providers.yaml"
                raise PolicyError(
                    f"unknown provider {rung.provider!r} (known: {known})",
                    path=path,
                    field=f"models[{i}].provider",
                )
            endpoints[rung.name] = providers[rung.provider]
        elif (own := rung.endpoint()) is not None:
            endpoints[rung.name] = own
        if rung.price is not None:
            if rung.name in prices:
                raise PolicyError(
                    f"{rung.name!r} is priced twice, here and in `prices:`",
                    path=path,
                    field=f"models[{i}].price",
                )
            priced[rung.name] = rung.price
    return endpoints, priced


def load_providers(directory: Path, given: Mapping[str, Endpoint]) -> dict[str, Endpoint]:
    """The endpoints named in ``directory/_providers.yaml`` (none when there is no such file)
    and the ``given`` ones (``cascade serve``'s config); a name may be in only one of them.
    Raises ``PolicyError`` naming the file and the field."""
    path = directory / "_providers.yaml"
    if not path.is_file():
        return dict(given)
    try:
        data = load_file(path, as_json=False) or {}
        named = ProvidersFile.model_validate(data).providers
    except OSError as e:
        raise PolicyError(f"cannot read: {e.strerror}", path=path) from None
    except FileFormatError as e:
        raise PolicyError(str(e), path=path) from None
    except ValidationError as e:
        first = e.errors()[0]
        msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        field = ".".join(str(part) for part in first["loc"])
        raise PolicyError(msg, path=path, field=field) from None
    clash = sorted(named.keys() & given.keys())
    if clash:
        raise PolicyError(
            f"provider {clash[0]!r} is also named in the proxy's config",
            path=path,
            field=f"providers.{clash[0]}",
        )
    return {**given, **named}


def providers_json_schema() -> dict[str, Any]:
    """The JSON schema of ``policies/_providers.yaml``."""
    schema = ProvidersFile.model_json_schema()
    schema["title"] = "cascade providers"
    return schema


class MissingKeyError(LookupError):
    """The environment variable an endpoint takes its key from is not set."""


def _key(endpoint: Endpoint, environ: Mapping[str, str]) -> str:
    name = endpoint.api_key_env
    if name is None:
        if endpoint.base_url is not None:
            return "none"  # a local server that asks for no key gets none of ours
        name = "AZURE_OPENAI_API_KEY" if endpoint.azure is not None else "OPENAI_API_KEY"
    key = environ.get(name)
    if not key:
        raise MissingKeyError(f"the environment variable {name} is not set: {where(endpoint)}")
    return key


def where(endpoint: Endpoint) -> str:
    """The endpoint in words, for messages: its URL, never its key."""
    if endpoint.azure is not None:
        return f"azure {endpoint.azure.endpoint}"
    return endpoint.base_url or "the OpenAI API"


def make_client(
    endpoint: Endpoint,
    *,
    asynchronous: bool,
    http_client: Any = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """A new openai client (``OpenAI``, ``AsyncOpenAI`` or their Azure twins) for
    ``endpoint``, its key from the environment. Raises ``MissingKeyError``."""
    key = _key(endpoint, os.environ if environ is None else environ)
    options: dict[str, Any] = {"api_key": key}
    if endpoint.timeout is not None:
        options["timeout"] = endpoint.timeout
    if endpoint.max_retries is not None:
        options["max_retries"] = endpoint.max_retries
    if http_client is not None:
        options["http_client"] = http_client
    azure = endpoint.azure
    if azure is not None:
        kind: Any = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        return kind(
            azure_endpoint=azure.endpoint,
            azure_deployment=azure.deployment,
            api_version=azure.api_version,
            **options,
        )
    if endpoint.base_url is not None:
        options["base_url"] = endpoint.base_url
    return (openai.AsyncOpenAI if asynchronous else openai.OpenAI)(**options)


def provider_name(endpoint: Endpoint | None) -> str:
    """The endpoint's ``gen_ai.provider.name``: ``azure.ai.openai`` or ``openai`` (an
    OpenAI-compatible server speaks OpenAI's API)."""
    return "azure.ai.openai" if endpoint is not None and endpoint.azure is not None else "openai"


def key_failure(model: str, error: MissingKeyError) -> Failure:
    """A call that could not be made for want of its key: as the endpoint would refuse it
    (401, which policies raise on by default rather than escalate)."""
    return Failure(model, "client_error", str(error), 401, 0.0, error)


class EndpointClients:
    """One sync and one async openai client per endpoint, made on first use, then reused.

    Args:
        http_client: makes the ``http_client`` of each async client (the proxy's aiohttp
            transport); None: the SDK's default.
    """

    def __init__(self, *, http_client: Callable[[], Any] | None = None) -> None:
        self._http_client = http_client
        self._sync: dict[Endpoint, openai.OpenAI] = {}
        self._async: dict[Endpoint, openai.AsyncOpenAI] = {}
        self._lock = threading.Lock()

    def sync(self, endpoint: Endpoint) -> openai.OpenAI:
        """The sync client of ``endpoint``. Raises ``MissingKeyError``."""
        client = self._sync.get(endpoint)
        if client is None:
            with self._lock:
                client = self._sync.get(endpoint)
                if client is None:
                    client = make_client(endpoint, asynchronous=False)
                    self._sync[endpoint] = client
        return client

    def async_(self, endpoint: Endpoint) -> openai.AsyncOpenAI:
        """The async client of ``endpoint``. Raises ``MissingKeyError``."""
        client = self._async.get(endpoint)
        if client is None:
            with self._lock:
                client = self._async.get(endpoint)
                if client is None:
                    http = self._http_client() if self._http_client is not None else None
                    client = make_client(endpoint, asynchronous=True, http_client=http)
                    self._async[endpoint] = client
        return client

    def close(self) -> None:
        """Close the sync clients."""
        with self._lock:
            clients, self._sync = list(self._sync.values()), {}
        for client in clients:
            client.close()

    async def aclose(self) -> None:
        """Close the async clients (and the sync ones)."""
        with self._lock:
            clients, self._async = list(self._async.values()), {}
        for client in clients:
            await client.close()
        self.close()
