"""A cap on request bodies, enforced as bytes arrive (a Content-Length over it is refused
before anything is read), answered with 413 and a JSON message."""

from __future__ import annotations

import json
from typing import Any

from .uploads import BadRequest


class BodyTooLarge(BadRequest):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the server's limit of "
                              f"{limit / 1e6:g} MB (--max-body-mb)")


class BodyLimit:
    """ASGI middleware: requests whose body is over `limit` bytes get 413."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _refuse(send, BodyTooLarge(self.limit))
            return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as error:
            if not started:
                await _refuse(send, error)


async def _refuse(send: Any, error: BadRequest) -> None:
    body = json.dumps({"error": error.message}).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
