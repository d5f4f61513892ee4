"""A cap on request bodies for ``dit serve``: a body over the cap is answered 413 before the app reads it.

Why: the JSON API needs a few hundred bytes per request (the longest is a list of class names), but
without a cap a client can send megabytes that are parsed, validated and echoed back in the error.
The cap is checked on the declared ``Content-Length`` (nothing is read) and, for a body sent in
chunks without one, on the bytes as they arrive; an accepted body is handed on unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 16 * 1024  # the largest valid request (1,000 class ids) is ~5 KB


def too_large_body(limit: int) -> bytes:
    return json.dumps(
        {"error": f"the request body is larger than {limit:,} bytes; a generation request needs far less"}
    ).encode()


class BodyLimit:
    """ASGI middleware: HTTP requests whose body exceeds ``limit`` bytes get 413 ``{"error": ...}``."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        if declared is not None or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)  # the server stops reading at Content-Length
            return
        body, more = bytearray(), True  # chunked: read it all (at most the limit), then replay it
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > self.limit:
                await self._refuse(send)
                return
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body)}], receive), send)

    async def _refuse(self, send: Send) -> None:
        content = too_large_body(self.limit)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        headers.append((b"connection", b"close"))  # the unread rest of the body is not waited for
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` first, then whatever the client sends next (a disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
