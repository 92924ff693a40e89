"""Pass-through: a request the cascade does not handle, sent upstream and answered unchanged.

The HTTP client is the one the openai SDK itself uses (``openai.DefaultAsyncHttpxClient``: httpx
on openai 1.x, httpx2 on 3.x), so forwarding adds no dependency. The client's credentials are
replaced by the proxy's upstream key; the response (status, headers, body bytes, streams
included) is relayed as it arrives, still encoded as the upstream sent it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import openai
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from .._logging import get_logger
from .errors import error_response

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

_log = get_logger()

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself.
_DROP_REQUEST = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
        "openai-organization",
        "openai-project",
        "x-cascade-task",
    }
)
_DROP_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class Forwarder:
    """Sends requests to ``upstream``'s base URL with ``upstream``'s credentials."""

    def __init__(self, upstream: openai.AsyncOpenAI) -> None:
        self._base = str(upstream.base_url).rstrip("/")
        auth = {"authorization": f"Bearer {upstream.api_key}"}
        if upstream.organization:
            auth["openai-organization"] = upstream.organization
        if upstream.project:
            auth["openai-project"] = upstream.project
        self._auth = [(k.encode(), v.encode()) for k, v in auth.items()]
        self._timeout = upstream.timeout
        self._http: Any = None  # built on first use, inside the server's event loop

    async def __call__(self, request: Request, body: bytes) -> Response:
        """Send ``request`` (whose body, already read, is ``body``) upstream; relay the answer."""
        if self._http is None:
            self._http = openai.DefaultAsyncHttpxClient(timeout=self._timeout)
        path = request.url.path
        rest = path[len("/v1") :] if path.startswith("/v1/") else path
        url = self._base + rest
        if request.url.query:
            url += "?" + request.url.query
        headers: list[tuple[bytes, bytes]] = [
            (k, v) for k, v in request.headers.raw if k.decode("latin-1") not in _DROP_REQUEST
        ]
        headers.extend(self._auth)
        try:
            upstream_request = self._http.build_request(
                request.method, url, headers=headers, content=body
            )
            response = await self._http.send(upstream_request, stream=True)
        except Exception as e:  # the HTTP library's own errors; its module differs by version
            _log.warning("cascade.proxy.upstream_unreachable", url=url, error=repr(e))
            return error_response(
                502, f"upstream unreachable: {type(e).__name__}", code="upstream_unreachable"
            )
        relayed = StreamingResponse(
            _relay(response),
            status_code=response.status_code,
            background=BackgroundTask(response.aclose),
        )
        # The raw list keeps repeated headers (set-cookie) that a mapping would merge.
        relayed.raw_headers = [
            (k.lower(), v)
            for k, v in response.headers.raw
            if k.lower().decode("latin-1") not in _DROP_RESPONSE
        ]
        return relayed

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def passthrough(response: Response, reason: str) -> Response:
    """``response`` (forwarded unchanged) with ``x-cascade-passthrough: reason``: why the
    cascade did not judge it."""
    clean = "".join(c if " " <= c < "\x7f" else " " for c in reason)[:300]
    response.raw_headers.append((b"x-cascade-passthrough", clean.encode()))
    return response


async def _relay(response: Any) -> AsyncIterator[bytes]:
    async for chunk in response.aiter_raw():
        yield chunk


__all__ = ["Forwarder", "passthrough"]
