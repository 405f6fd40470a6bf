"""Running the app under uvicorn as a server that can face a network: uvicorn's own limits
(keep-alive timeout, `limit_concurrency`, a graceful-shutdown timeout, a cap on header size),
a deadline for a request's headers (uvicorn has none), a file-descriptor limit raised to fit
the connection cap, accept errors logged once, and library warnings demoted to DEBUG."""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("vitkit.serve")
SPARE_FDS = 128  # descriptors kept for files, the model and logging beside the connections
# Past max_connections the connections waiting longest for headers are closed; requests past
# max_connections + SPARE_FDS / 2 (connections that all sent headers) get uvicorn's 503.


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how many: seconds for a request's headers, for an idle keep-alive
    connection and for a graceful shutdown; open connections (more get 503); header bytes."""

    header_timeout: float = 10.0
    keep_alive_timeout: int = 15  # over httpx's 5 s keep-alive expiry: no reuse race
    shutdown_timeout: int = 10
    max_connections: int = 2048
    max_header_bytes: int = 16384

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keep_alive_timeout", "shutdown_timeout",
                     "max_connections", "max_header_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def header_deadline_protocol(seconds: float, max_connections: int) -> type:
    """uvicorn's h11 protocol with a deadline: a connection whose request headers are not all
    in `seconds` after it opens (or after its last response) is closed (slowloris). Past
    `max_connections` open, the connections waiting longest for headers are closed at once,
    so slow clients cannot use up the file descriptors a good client needs."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        waiting: dict = {}  # connections that may still be waiting for headers, oldest first

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()
            if len(self.connections) > max_connections:
                self._shed(len(self.connections) - max_connections)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(seconds, self._headers_late)
            self.waiting.pop(self, None)
            self.waiting[self] = None

        def _waiting_for_headers(self) -> bool:
            return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

        def _headers_late(self) -> None:
            if self._waiting_for_headers():
                self.transport.close()

        def _shed(self, excess: int) -> None:
            for other in list(self.waiting):
                if excess <= 0:
                    return
                if not other._waiting_for_headers():
                    self.waiting.pop(other, None)  # past its headers (or closing): keep it
                elif other is not self:
                    other.transport.close()
                    excess -= 1

        def on_response_complete(self) -> None:
            self._deadline.cancel()
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            self.waiting.pop(self, None)
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file soft limit towards `wanted` (never past the hard
    limit); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class _DemoteToDebug(logging.Filter):
    """Turns a library's warnings (python-multipart's, one per bad upload) into DEBUG records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(record.levelno)


def demote_library_warnings() -> None:
    """python-multipart's per-request warnings go to the log at DEBUG (idempotent)."""
    logger = logging.getLogger("python_multipart.multipart")
    if not any(isinstance(f, _DemoteToDebug) for f in logger.filters):
        logger.addFilter(_DemoteToDebug())


class AcceptErrors:
    """An event-loop exception handler that logs the first accept() failure (out of file
    descriptors) once, counts the rest, and passes every other error to the default."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if "accept" not in str(context.get("message", "")):
            loop.default_exception_handler(context)
            return
        self.count += 1
        if self.count == 1:
            log.error("accepting connections failed (%s); new connections wait until some "
                      "close; later failures are counted, not logged",
                      context.get("exception") or context.get("message"))


def run_app(app: Any, host: str, port: int, limits: ConnectionLimits | None = None) -> None:
    """Serve `app` on host:port with `limits` until SIGINT/SIGTERM (then at most
    `limits.shutdown_timeout` seconds for requests in flight)."""
    import uvicorn

    limits = limits or ConnectionLimits()
    fds = raise_fd_limit(limits.max_connections + SPARE_FDS)
    max_connections = min(limits.max_connections, max(16, fds - SPARE_FDS))
    if max_connections < limits.max_connections:
        log.warning("open-file limit %d: serving at most %d connections, not %d", fds,
                    max_connections, limits.max_connections)
    demote_library_warnings()
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        http=header_deadline_protocol(limits.header_timeout, max_connections),
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=limits.shutdown_timeout,
        limit_concurrency=max_connections + SPARE_FDS // 2,
        h11_max_incomplete_event_size=limits.max_header_bytes)
    server = uvicorn.Server(config)
    handler = AcceptErrors()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(handler)
        await server.serve()

    asyncio.run(main())


def serve_checkpoint(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, *,
                     device: str | None = None, fp32: bool = False, max_batch: int = 32,
                     max_delay_ms: float = 5.0, default_top_k: int = 5,
                     limits: Any = None, connections: ConnectionLimits | None = None,
                     allowed_hosts: tuple[str, ...] = (), docs: bool = False,
                     backend: str = "auto", calibration: tuple[str, ...] = (),
                     calibration_limit: int = 512) -> None:
    """Load `checkpoint` (a vitkit checkpoint or an .onnx file) and serve it on host:port
    until stopped: `create_app` with `limits` (ServeLimits) under `run_app`. A checkpoint
    runs on `backend` (`vitkit.infer.backends`; int8 calibrated on `calibration` files)."""
    from .app import create_app
    from .backends import load_backend

    connections = connections or ConnectionLimits()
    backend = load_backend(checkpoint, device=device, fp32=fp32, backend=backend,
                           max_batch=max_batch, calibration=calibration,
                           calibration_limit=calibration_limit)
    app = create_app(backend, max_batch=max_batch, max_delay_ms=max_delay_ms,
                     default_top_k=default_top_k, limits=limits, host=host,
                     allowed_hosts=allowed_hosts, docs=docs)
    log.info("serving %s (%s %s, %d classes) on http://%s:%d/ (batching: up to %d images, "
             "%g ms)", backend.name, backend.kind, backend.path, len(backend.class_names),
             host, port,
             max_batch, max_delay_ms)
    run_app(app, host, port, connections)
