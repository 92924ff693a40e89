"""uvicorn's HTTP/1.1 protocols with a bound on the request head: ``431 Request Header Fields
Too Large`` as soon as a request line and headers exceed the limit, before the rest arrives.

httptools (the parser uvicorn uses when it is installed) keeps a header value whole until it
ends, so a 64 MiB header would be held in memory before any check of ours could see it; the
bytes of the head are counted here as they arrive instead. h11 keeps its unparsed bytes in a
buffer that is measured before more is added. The limit is uvicorn's own
``h11_max_incomplete_event_size`` (``ProxyConfig.max_header_bytes``; 64 KiB by default), so
one setting bounds both parsers.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
_END = b"\r\n\r\n"


def _refusal(limit: int) -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": f"the request line and headers exceed {limit} bytes",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_header_fields_too_large",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def _limit(config: Any) -> int:
    return int(config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES)


class H11HeadLimit(H11Protocol):
    """``H11Protocol`` answering 431 (not h11's 400) to a head longer than the limit."""

    def data_received(self, data: bytes) -> None:
        """Refuse the request once its unparsed head would exceed the limit."""
        if self.conn.their_state is h11.IDLE:  # between requests: the bytes are a head
            limit = _limit(self.config)
            pending = self.conn.trailing_data[0]
            if len(pending) + len(data) > limit and _END not in (pending + data)[: limit + 4]:
                self.transport.write(_refusal(limit))
                self.transport.close()
                return
        super().data_received(data)


_protocols: list[type[Any]] = [H11HeadLimit]

if find_spec("httptools") is not None:  # the proxy extra; uvicorn prefers it when present
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsHeadLimit(HttpToolsProtocol):
        """``HttpToolsProtocol`` counting each request's head as its bytes arrive."""

        _head: int | None = 0  # bytes of the current head so far; None: in a body

        def data_received(self, data: bytes) -> None:
            """Refuse the request once its head exceeds the limit; else parse as usual."""
            if self._head is not None:
                end = data.find(_END)
                self._head += len(data) if end < 0 else end
                limit = _limit(self.config)
                if self._head > limit:
                    self.transport.write(_refusal(limit))
                    self.transport.close()
                    self._head = None
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            """The head is complete: what follows is the body."""
            self._head = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            """A next request on this connection starts a head of its own."""
            super().on_message_complete()
            self._head = 0

    _protocols.insert(0, HttpToolsHeadLimit)


def protocol() -> type[Any]:
    """The protocol class to give uvicorn's ``http=``: httptools' when installed, else h11's."""
    return _protocols[0]


def uvicorn_options(max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> dict[str, Any]:
    """The uvicorn ``Config`` arguments that bound request heads to ``max_header_bytes``."""
    return {"http": protocol(), "h11_max_incomplete_event_size": max_header_bytes}


__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "H11HeadLimit",
    "protocol",
    "uvicorn_options",
]
