"""``cascade serve``: a transparent OpenAI-compatible proxy in front of the cascade.

Point any OpenAI client at it (``base_url="http://127.0.0.1:8787/v1"``, ``api_key=<proxy key>``)
and name the task in the ``X-Cascade-Task`` header, or let the server config route requests
by requested ``model`` and/or ``metadata`` fields (or a ``default_task``). A chat or
Responses request with no task, and every other ``/v1`` request, is forwarded upstream
unchanged.

- The policy chooses the models: the request's ``model`` is ignored for a cascaded call.
- The answer is the accepted ChatCompletion (or, for ``POST /v1/responses``, a Response made
  from it: see ``cascade.proxy.responses``), with headers ``x-cascade-task``,
  ``x-cascade-model``, ``x-cascade-escalated``, ``x-cascade-ok``, ``x-cascade-reasons``,
  ``x-cascade-cost-usd``, ``x-cascade-prompt-tokens``, ``x-cascade-completion-tokens``,
  ``x-cascade-attempts``, and the ``cascade`` field in its JSON (``cascade._answer``).
- What the proxy forwards without judging it says why in ``x-cascade-passthrough``.
- Streaming (``stream: true``) is supported, with a trade-off: the cascade must validate the
  whole answer before it can accept it, so the proxy waits for the complete answer (and any
  escalation), then sends it as OpenAI-format server-sent events (role, content, tool calls,
  finish, usage if ``stream_options.include_usage``, ``[DONE]``). Clients that stream keep
  working, but the time to the first token is the time to the whole answer. Pass-through
  requests stream as the upstream streams.
- Upstream credentials (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``) stay in the proxy; clients
  authenticate with proxy keys (``CASCADE_PROXY_KEYS``, comma-separated, or ``proxy_keys:``).
  Without any proxy key the server refuses to listen on anything but loopback.
- ``GET /healthz`` and ``GET /metrics`` (Prometheus text) need no key; unknown task names
  share one ``_unknown`` label there. Request heads over ``max_header_bytes`` get 431 before
  they are read (``cascade.proxy.http``).

Needs the ``proxy`` extra (starlette, uvicorn); names are imported lazily so that
``cascade.proxy.sse`` and ``cascade.proxy.config`` work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Proxy, create_app
    from .config import ConfigError, ProxyConfig, Route, load_config
    from .server import ProxyServer, build, serve

_WHERE = {
    "ConfigError": "config",
    "Proxy": "app",
    "ProxyConfig": "config",
    "ProxyServer": "server",
    "Route": "config",
    "build": "server",
    "create_app": "app",
    "load_config": "config",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ConfigError",
    "Proxy",
    "ProxyConfig",
    "ProxyServer",
    "Route",
    "build",
    "create_app",
    "load_config",
    "serve",
]
