"""The HTTP side of ``cascade.testing``: a quiet threaded server and OpenAI's wire format.

Kept apart from the scripting so that other local servers can reuse either half: the server
serves any ``App`` (a function from ``HttpRequest`` to ``HttpResponse``), and the payload
builders turn a ``Reply`` into a chat completion, its stream chunks, or an error body.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from .scripted import Reply

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
DEFAULT_ERROR = "scripted error"  # Reply.error_message's default
_PIECES = re.compile(r"\s*\S+|\s+")  # word-ish tokens that join back to the text


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as the server read it (header names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What to answer: bytes are sent with a Content-Length (the connection is kept alive);
    an iterable of bytes is streamed and the connection closed after it."""

    status: int
    body: bytes | Iterable[bytes]
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connections
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: headers and body leave in one send, flushed after each request
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing: a line per request on stderr would cost more than the request."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = HttpRequest(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length) if length else b"",
        )
        response = self.server.app(request)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        # No length is known up front: the end of the connection is the end of the body.
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in response.body:
            self.wfile.write(chunk)
            self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # never joined: stop() does not wait for a sleeping delayed reply
    request_queue_size = 128  # the default 5 resets connections when many clients connect at once

    def __init__(self, address: tuple[str, int], app: Callable[[HttpRequest], HttpResponse]):
        super().__init__(address, _Handler)
        self.app = app
        self._open: set[Any] = set()
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (a timeout, or stop()): nothing to report
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Wake the handler threads waiting on kept-alive connections, so that they end."""
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)


class HttpServer:
    """Serves ``app`` on ``host:port`` (0: any free port) from a daemon thread until stop()."""

    def __init__(self, app: Callable[[HttpRequest], HttpResponse], host: str, port: int):
        self._httpd = _Server((host, port), app)
        self.port: int = self._httpd.server_address[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(
            target=self._loop, name=f"cascade-testing:{self.port}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        # serve_forever() polls for shutdown every 0.5 s; a wake-up socket makes stop() instant.
        httpd = self._httpd
        with selectors.DefaultSelector() as selector:
            selector.register(httpd, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                events = selector.select()
                if any(key.fileobj is self._wake_r for key, _ in events):
                    return
                try:
                    request, address = httpd.get_request()
                except OSError:
                    continue
                try:
                    httpd.process_request(request, address)
                except Exception:
                    httpd.handle_error(request, address)
                    httpd.shutdown_request(request)

    def stop(self) -> None:
        """Stop accepting, close the listening socket and every kept-alive connection."""
        self._wake_w.send(b"x")
        self._thread.join()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._wake_r.close()
        self._wake_w.close()


# -- OpenAI's wire format ---------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def error(status: int, message: str, code: str | None = None) -> HttpResponse:
    """An answer with this status and OpenAI's error JSON."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if status == 429 and code is None:
        code = "rate_limit_exceeded"
    body = {"message": message, "type": kind, "param": None, "code": code}
    return HttpResponse(status, dumps({"error": body}))


def model_list(names: Iterable[str]) -> HttpResponse:
    """The answer to ``GET /v1/models``."""
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": "cascade-testing"} for m in names
    ]
    return HttpResponse(200, dumps({"object": "list", "data": data}))


def answer(reply: Reply, request: Mapping[str, Any], tag: str) -> HttpResponse:
    """The answer to a chat request: the raw body, an error, a stream or a completion."""
    if reply.body is not None:
        return HttpResponse(reply.status, reply.body.encode())
    if reply.status != 200:
        message = reply.error_message
        if message == DEFAULT_ERROR and reply.content:
            message = reply.content
        return replace(error(reply.status, message), headers=dict(reply.headers))
    if request.get("stream") is True:
        return HttpResponse(200, stream(reply, request, tag), "text/event-stream")
    return HttpResponse(200, dumps(completion(reply, request, tag)))


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(request: Mapping[str, Any]) -> str:
    """The text of the request's last user message ('' when there is none)."""
    for message in reversed(request.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def _estimate(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def _arguments(call: Mapping[str, Any]) -> str:
    args = call.get("arguments", "")
    return args if isinstance(args, str) else json.dumps(args)


def usage(reply: Reply, request: Mapping[str, Any]) -> dict[str, Any]:
    """The usage block: scripted counts, or estimates at four characters a token."""
    prompt = reply.prompt_tokens
    if prompt is None:
        messages = request.get("messages") or ()
        chars = sum(len(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        prompt = _estimate(chars)
    completion = reply.completion_tokens
    if completion is None:
        chars = len(reply.content or "") + sum(len(_arguments(c)) for c in reply.tool_calls)
        completion = _estimate(chars)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
    }


def _token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def logprobs(reply: Reply, request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-token logprob entries: the scripted ones, or the content's words at logprob 0.

    Like the API, alternatives are sent only as many as the request's ``top_logprobs``.
    """
    top = request.get("top_logprobs")
    top = top if isinstance(top, int) else 0
    if reply.logprobs is None:
        pieces = _PIECES.findall(reply.content or "")
        return [{**_token(t, 0.0), "top_logprobs": []} for t in pieces]
    out = []
    for token, logprob, *rest in reply.logprobs:
        alternatives = list(rest[0])[:top] if rest else []
        top_logprobs = [_token(a, float(lp)) for a, lp in alternatives]
        out.append({**_token(token, float(logprob)), "top_logprobs": top_logprobs})
    return out


def _tool_calls(reply: Reply, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id") or f"call_{tag}_{i}",
            "type": "function",
            "function": {"name": call["name"], "arguments": _arguments(call)},
        }
        for i, call in enumerate(reply.tool_calls)
    ]


def completion(reply: Reply, request: Mapping[str, Any], tag: str) -> dict[str, Any]:
    """A ``chat.completion`` object answering ``request`` with ``reply``."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    message["refusal"] = reply.refusal
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls(reply, tag)
    wanted = request.get("logprobs") is True
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": reply.finish_reason,
        "logprobs": {"content": logprobs(reply, request), "refusal": None} if wanted else None,
    }
    return {
        "id": f"chatcmpl-{tag}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model"),
        "choices": [choice],
        "usage": usage(reply, request),
        "system_fingerprint": None,
    }


def stream(reply: Reply, request: Mapping[str, Any], tag: str) -> Iterator[bytes]:
    """The same answer as server-sent ``chat.completion.chunk`` events, then ``[DONE]``."""
    options = request.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    head = {
        "id": f"chatcmpl-{tag}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model"),
        "system_fingerprint": None,
    }
    if with_usage:
        head["usage"] = None  # as the API does: null on every chunk but the last

    def chunk(delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return b"data: " + dumps({**head, "choices": [choice]}) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    content = reply.content or ""
    entries = logprobs(reply, request) if request.get("logprobs") is True else None
    if entries is not None and "".join(e["token"] for e in entries) == content:
        for e in entries:  # one chunk per token, each carrying its logprob
            yield chunk({"content": e["token"]}, lp={"content": [e], "refusal": None})
    else:
        for i, piece in enumerate(_PIECES.findall(content)):
            lp = {"content": entries, "refusal": None} if i == 0 and entries else None
            yield chunk({"content": piece}, lp=lp)
    for i, call in enumerate(_tool_calls(reply, tag)):
        yield chunk({"tool_calls": [{"index": i, **call}]})
    if reply.refusal is not None:
        yield chunk({"refusal": reply.refusal})
    yield chunk({}, reply.finish_reason)
    if with_usage:
        yield b"data: " + dumps({**head, "choices": [], "usage": usage(reply, request)}) + b"\n\n"
    yield b"data: [DONE]\n\n"
