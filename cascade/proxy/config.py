"""The proxy's configuration file (YAML), its environment, and how a request finds its task.

::

    routes:                         # first match wins; a route needs `model` and/or `metadata`
      - {model: gpt-4o, task: support_summary}
      - {metadata: {feature: invoices}, task: invoice_extraction}
    default_task: null              # the task of requests no route matches (null: pass through)
    proxy_keys: [sk-proxy-1]        # client keys; CASCADE_PROXY_KEYS (comma-separated) adds more
    dashboard_keys: []              # keys of /dashboard (none: the proxy keys open it)
    max_body_bytes: 4194304         # larger request bodies are refused with 413
    upstream_timeout: null          # seconds per upstream request (null: CASCADE_TIMEOUT, else 60)
    max_header_bytes: 65536         # a longer request line + headers: 431, before it is read
    upstream_http: null             # direct | aiohttp | httpx; null: direct when aiohttp is
                                    # installed, else httpx (see cascade.transports.direct)
    providers:                      # endpoints the policies' rungs name ({provider: local}),
      local: {base_url: "http://127.0.0.1:8000/v1", api_key_env: VLLM_API_KEY}
    discover: {mode: observe}       # tasks discovered from traffic: their defaults policy
                                    # (any policy fields); false: unnamed requests pass through
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from .._files import FileFormatError
from .._files import load as load_file
from ..discovery import DEFAULTS
from ..exceptions import CascadeError, PolicyError
from ..policy import Endpoint, Policy


class ConfigError(CascadeError, ValueError):
    """The proxy's configuration is invalid or unsafe (no keys on a public interface)."""


class Route(BaseModel):
    """Send requests for ``model`` and/or carrying these ``metadata`` values to ``task``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    task: str
    model: str | None = None
    metadata: dict[str, str] | None = None

    @model_validator(mode="after")
    def _something_to_match(self) -> Route:
        if self.model is None and not self.metadata:
            raise ValueError("a route needs `model` and/or `metadata` to match on")
        return self

    def matches(self, model: Any, metadata: Any) -> bool:
        """True when the request's model and metadata are what this route asks for."""
        if self.model is not None and model != self.model:
            return False
        if self.metadata:
            if not isinstance(metadata, Mapping):
                return False
            return all(metadata.get(k) == v for k, v in self.metadata.items())
        return True


class ProxyConfig(BaseModel):
    """What ``cascade serve`` needs beyond the policies and the store. See the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    routes: tuple[Route, ...] = ()
    default_task: str | None = None
    proxy_keys: tuple[str, ...] = ()
    dashboard_keys: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="A request whose line and headers exceed this is answered 431 and closed "
        "as soon as that many bytes arrived (not after the whole head is read).",
    )
    reasons_header_chars: int = Field(
        default=512, ge=16, description="Longer x-cascade-reasons values are truncated."
    )
    upstream_http: Literal["direct", "aiohttp", "httpx"] | None = Field(
        default=None,
        description="Upstream chat calls: direct (aiohttp, no SDK request building), or the "
        "openai SDK on its aiohttp or httpx transport; None: direct when aiohttp is installed "
        "(the proxy extra), else httpx.",
    )

    upstream_timeout: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds per upstream request; None: CASCADE_TIMEOUT, else 60.",
    )
    providers: dict[str, Endpoint] = Field(
        default_factory=dict,
        description="Endpoints named for every policy's rungs, as in policies/_providers.yaml.",
    )

    discover: bool | dict[str, Any] = Field(
        default=True,
        description="Tasks discovered from traffic: the policy fields of their defaults "
        "policy (over mode: observe and models gpt-4o-mini then the requested model); "
        "true: those defaults; false: requests no header, route or match names pass through.",
    )

    @model_validator(mode="after")
    def _discover_compiles(self) -> ProxyConfig:
        if isinstance(self.discover, dict):
            # A rung may name a provider of policies/_providers.yaml, which only the proxy
            # reads (``proxy_cascade`` compiles the defaults again, with it, at start-up).
            named = {**_stand_ins(self.discover), **self.providers}
            try:
                Policy.from_dict({**DEFAULTS, **self.discover}, task="discovered", providers=named)
            except PolicyError as e:
                raise ValueError(f"discover: not a valid defaults policy: {e}") from None
        return self

    def task_for(self, body: Mapping[str, Any]) -> str | None:
        """The task of a chat request from the routes, else ``default_task``, else None."""
        model, metadata = body.get("model"), body.get("metadata")
        for route in self.routes:
            if route.matches(model, metadata):
                return route.task
        return self.default_task

    def dashboard_access(self) -> tuple[str, ...]:
        """The keys that open ``/dashboard``: ``dashboard_keys``, else the proxy keys (none:
        open, which ``check_exposure`` allows on loopback only)."""
        return self.dashboard_keys or self.proxy_keys

    def key_checker(self) -> KeyChecker | None:
        """A constant-time checker of client keys, or None when no key is configured."""
        return KeyChecker(self.proxy_keys) if self.proxy_keys else None


def _stand_ins(fields: Mapping[str, Any]) -> dict[str, Endpoint]:
    # An endpoint for each provider the defaults' rungs name, standing in for one that
    # _providers.yaml may define: only the rest of ``discover:`` is checked at load.
    models = fields.get("models")
    rungs = models if isinstance(models, list) else []
    return {
        r["provider"]: Endpoint()
        for r in rungs
        if isinstance(r, Mapping) and isinstance(r.get("provider"), str)
    }


class KeyChecker:
    """Checks a presented key against every configured one in constant time.

    Both sides are hashed first, so comparisons take the same time whatever the lengths,
    and every configured key is compared (no early exit that would reveal which matched).
    """

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._digests = tuple(_digest(k) for k in keys)

    def __call__(self, presented: str) -> bool:
        given = _digest(presented)
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(given, d)
        return ok


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> ProxyConfig:
    """Read the YAML file at ``path`` (if any) and add the keys of ``CASCADE_PROXY_KEYS``.

    Raises ConfigError naming the file and the field at fault.
    """
    data: Any = {}
    if path is not None:
        try:
            data = load_file(Path(path), as_json=False) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except FileFormatError as e:
            raise ConfigError(f"{path}: {e}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    env = os.environ if environ is None else environ
    extra = [k.strip() for k in env.get("CASCADE_PROXY_KEYS", "").split(",") if k.strip()]
    try:
        config = ProxyConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{path or 'config'}: {where}: {msg}") from None
    if extra:
        config = config.model_copy(update={"proxy_keys": (*config.proxy_keys, *extra)})
    return config


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(config: ProxyConfig, host: str) -> bool:
    """Refuse to serve without client keys on a non-loopback interface.

    Returns True when the proxy is open (no keys, loopback: the caller should warn);
    raises ConfigError when it would be open to the network.
    """
    if config.proxy_keys:
        return False
    if not is_loopback(host):
        raise ConfigError(
            f"no proxy keys configured: refusing to listen on {host} without authentication; "
            "set CASCADE_PROXY_KEYS or `proxy_keys:` in the config, or listen on 127.0.0.1"
        )
    return True


__all__ = [
    "ConfigError",
    "KeyChecker",
    "ProxyConfig",
    "Route",
    "check_exposure",
    "is_loopback",
    "load_config",
]
