"""Clients per endpoint: the rungs a policy serves elsewhere than the default client.

A policy's rung may name its endpoint (``base_url``, ``azure``, or a ``provider`` from
``_providers.yaml``); the engine puts that ``Endpoint`` in its ``Call``. ``EndpointClients``
makes one openai client (and so one connection pool) per endpoint on first use and reuses it
for every later call, from any policy. The key is read from the environment variable the
endpoint names when its client is made; it is never part of an ``Endpoint``, a record, a log
event or an error message (which name the variable, not its value).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import openai

from ..events import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..policy import Endpoint

__all__ = [
    "EndpointClients",
    "MissingKeyError",
    "key_failure",
    "make_client",
    "provider_name",
    "where",
]


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
