"""The Responses API through the cascade: translation to and from chat completions.

The cascade's engine judges chat completion requests, so a Responses request is translated
(``to_chat``) into the chat request every rung is asked, and the accepted chat completion back
into a Response (``to_response``) or its server-sent events (``events``, ``sse``). A request
the cascade cannot judge (upstream state, built-in tools, background mode) is an ``Unjudged``
naming why: the fronts send it to the requested model unchanged.
"""

from __future__ import annotations

from ._events import events, sse
from ._request import ChatRequest, Unjudged, to_chat
from ._response import to_response

__all__ = ["ChatRequest", "Unjudged", "events", "sse", "to_chat", "to_response"]
