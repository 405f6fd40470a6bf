"""What one request may cost: the server's limits (`ServeLimits`, the `vitkit serve` flags),
and the cap on request bodies, enforced as bytes arrive (a Content-Length over it is refused
before anything is read), answered with 413 and `Connection: close`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .uploads import BadRequest


@dataclass(frozen=True)
class ServeLimits:
    """Per-request and per-server bounds. Images are counted first, then their headers'
    pixels, and only then decoded; requests past a queue limit get 503 with Retry-After."""

    max_body_mb: float = 20.0  # a request body over this gets 413 (spooled to disk past 1 MB)
    max_images: int = 16  # images in one /v1/predict request
    max_pixels: int = 50_000_000  # pixels of all a request's images, from their headers
    max_queue: int = 128  # predict requests decoding or waiting for the model
    explain_queue: int = 4  # explain requests inside their own lane (one worker)
    decode_workers: int = 1  # threads decoding uploads: bounds decode memory
    large_pixels: int = 4_000_000  # requests with more pixels decode on the large lane
    large_queue: int = 2  # requests inside the large lane (one worker)
    body_timeout: float = 30.0  # seconds a request may take to send its whole body

    def __post_init__(self) -> None:
        for name in ("max_body_mb", "max_images", "max_pixels", "max_queue", "explain_queue",
                     "decode_workers", "large_pixels", "large_queue", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 1e6)


class BodyTooLarge(BadRequest):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the server's limit of "
                              f"{limit / 1e6:g} MB (--max-body-mb)", close=True)


class BodyLimit:
    """ASGI middleware: requests whose body is over `limit` bytes get 413, and whatever
    answers a request that went over it (this, or the app's handler) closes the connection."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await refuse(send, BodyTooLarge(self.limit))
            return
        received = 0
        started = over = False

        async def limited_receive() -> dict:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise BodyTooLarge(self.limit)
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if over:
                    message = close_connection(message)
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as error:
            if not started:
                await refuse(send, error)


def close_connection(start: dict) -> dict:
    """An `http.response.start` message with `Connection: close` (the body was not all read)."""
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"connection"]
    return {**start, "headers": [*headers, (b"connection", b"close")]}


async def refuse(send: Any, error: BadRequest) -> None:
    """Answer `error` as JSON from ASGI middleware, closing the connection."""
    body = json.dumps({"error": error.message}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
