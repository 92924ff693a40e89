"""``cascade dashboard``: the dashboard app over a store URL, served by uvicorn."""

from __future__ import annotations

import ipaddress

import uvicorn

from ..stores import store_from_url
from .app import DEFAULT_SAMPLE, create_app

__all__ = ["ExposureError", "check_exposure", "serve"]


class ExposureError(ValueError):
    """The dashboard would be open to the network without a key."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(keys: tuple[str, ...], host: str) -> None:
    """Raise ``ExposureError`` when ``host`` is not loopback and no key is configured."""
    if not keys and not is_loopback(host):
        raise ExposureError(
            f"no dashboard key: refusing to listen on {host} without one; set "
            "CASCADE_DASHBOARD_KEYS (comma-separated) or listen on 127.0.0.1"
        )


def serve(
    *,
    store: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8788,
    keys: tuple[str, ...] = (),
    sample: int = DEFAULT_SAMPLE,
) -> None:
    """Serve the dashboard until interrupted; raises ``ExposureError`` before opening
    anything when it would be reachable from the network without a key."""
    check_exposure(keys, host)
    opened = store_from_url(store)
    try:
        uvicorn.run(create_app(opened, keys=keys, sample=sample), host=host, port=port,
                    log_level="info")  # fmt: skip
    finally:
        opened.close()
