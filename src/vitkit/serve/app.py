"""The HTTP API (FastAPI): predict, explain, model facts, health, Prometheus metrics and the
web page, over a `Backend`. Predict decodes on a bounded lane and runs through a
`DynamicBatcher`; explain has a lane of its own. Every refused request gets a 4xx/503 with a
JSON `{"error": ...}` body, and the server goes on."""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations
# (Request, Query) at definition time, from the function's scope.

import base64
import json
import logging
import tempfile
from collections.abc import Iterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import torch

from ..errors import require
from .backends import Backend
from .batcher import DynamicBatcher
from .guard import HostGuard
from .lanes import Busy, Lane
from .limits import BodyLimit, ServeLimits
from .metrics import Measure, ServerMetrics
from .overlay import overlay_png
from .uploads import BadRequest, ClientGone, Upload, check_uploads, decode_uploads, receive_uploads

log = logging.getLogger("vitkit.serve")
TOP_K_HEADER_BYTES = 2048  # X-Vitkit-Top-K keeps the best rows that fit in this
LOW_PRIORITY = 10  # niceness of the large-image and explain lanes' threads


def top_k_rows(logits: torch.Tensor, names: list[str], k: int) -> list[list[dict[str, Any]]]:
    top = logits.float().softmax(dim=1).topk(min(k, len(names)), dim=1)
    return [[{"label": names[j], "score": round(p, 6)} for p, j in zip(ps, js, strict=True)]
            for ps, js in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


def top_k_header(rows: list[dict[str, Any]]) -> str:
    """The JSON of the best rows that fit in TOP_K_HEADER_BYTES (ASCII, so a valid header)."""
    kept = 0
    while kept < len(rows) and len(json.dumps(rows[:kept + 1])) <= TOP_K_HEADER_BYTES:
        kept += 1
    return json.dumps(rows[:kept])


class Server:
    """The app's state: the backend, its lanes, its batcher and its metrics."""

    def __init__(self, backend: Backend, max_batch: int, max_delay_ms: float,
                 limits: ServeLimits) -> None:
        self.backend, self.limits = backend, limits
        self.metrics = ServerMetrics()
        self.batcher = DynamicBatcher(backend.logits, max_batch, max_delay_ms / 1000.0,
                                      on_batch=self.metrics.observe_batch)
        self.decode = Lane("predict", limits.decode_workers, limits.max_queue)
        # Costly work runs at a lower CPU priority, so it cannot slow small predicts much.
        self.large = Lane("large-image", 1, limits.large_queue, niceness=LOW_PRIORITY)
        self.explainer = Lane("explain", 1, limits.explain_queue, niceness=LOW_PRIORITY)

    async def pixels(self, uploads: list[Upload]) -> torch.Tensor:
        """The uploads decoded after their headers pass: on the large lane when they have
        more than `large_pixels` pixels in all (so big images cannot hold up small ones)."""
        total = check_uploads(uploads, self.backend, self.limits.max_pixels)
        lane = self.large if total > self.limits.large_pixels else self.decode
        with lane.admit():
            return await lane.run(decode_uploads, uploads, self.backend)

    async def predict(self, request: Any, top_k: int) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="vitkit-upload-") as folder:
            uploads = await receive_uploads(request, folder, self.limits.max_images,
                                            self.limits.body_timeout)
            pixels = await self.pixels(uploads)
        logits = await self.batcher.submit(self.backend.inputs(pixels))
        rows = top_k_rows(logits, self.backend.class_names, top_k)
        return {"model": self.backend.name, "predictions": rows,
                "files": [upload.name for upload in uploads]}

    async def explain(self, request: Any, top_k: int) -> tuple[list[dict[str, Any]], bytes]:
        if not self.backend.can_explain:
            raise BadRequest(501, f"{self.backend.kind} models have no attention maps to "
                                  "explain with; serve a vitkit checkpoint for /v1/explain")
        # Admitted before its body is read: a full explain lane costs a refusal nothing.
        with self.explainer.admit(), \
                tempfile.TemporaryDirectory(prefix="vitkit-upload-") as folder:
            one = BadRequest(422, "/v1/explain takes one image, got more", close=True)
            uploads = await receive_uploads(request, folder, 1, self.limits.body_timeout, one)
            pixels = await self.pixels(uploads)
            logits, png = await self.explainer.run(self._explain, pixels)
        return top_k_rows(logits, self.backend.class_names, top_k)[0], png

    def _explain(self, pixels: torch.Tensor) -> tuple[torch.Tensor, bytes]:
        """Logits and the rollout overlay of one image, on the explain lane's thread."""
        inputs = self.backend.inputs(pixels)
        logits = self.backend.logits(inputs)
        return logits, overlay_png(pixels[0], self.backend.rollout(inputs)[0])

    def close(self) -> None:
        for lane in (self.decode, self.large, self.explainer):
            lane.close()


def _handlers(app: Any, server: Server) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Any, error: BadRequest) -> Any:
        if isinstance(error, Busy):
            server.metrics.busy.labels(lane=error.lane).inc()
        return JSONResponse({"error": error.message}, status_code=error.status,
                            headers=error.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Any, _error: ClientGone) -> Any:
        server.metrics.disconnects.inc()
        client = request.client.host if request.client else "a client"
        log.info("%s left before its %s request was read", client, request.url.path)
        return Response(status_code=499)  # nobody reads it; counted as 499 in /metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Any, error: RequestValidationError) -> Any:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                 for e in error.errors()]
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Any, error: HTTPException) -> Any:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)


def create_app(backend: Backend, max_batch: int = 32, max_delay_ms: float = 5.0,
               max_body_mb: float | None = None, default_top_k: int = 5, *,
               limits: ServeLimits | None = None, host: str = "127.0.0.1",
               allowed_hosts: Iterable[str] = (), docs: bool = False) -> Any:
    """The FastAPI app serving `backend` (`uvicorn.run(app)` or FastAPI's TestClient), served
    at `host` (Host headers naming anything else but loopback and `allowed_hosts` get 403);
    `max_body_mb`, when given, replaces `limits.max_body_mb`; `docs` serves /docs."""
    fastapi = require("fastapi", "serve", "vitkit serve")
    require("python_multipart", "serve", "vitkit serve (python-multipart)")
    from dataclasses import replace

    from fastapi import Query, Request
    from fastapi.responses import HTMLResponse, Response

    limits = limits or ServeLimits()
    if max_body_mb is not None:
        limits = replace(limits, max_body_mb=max_body_mb)
    server = Server(backend, max_batch, max_delay_ms, limits)

    @asynccontextmanager
    async def lifespan(_app: Any):  # noqa: ANN202
        await server.batcher.start()
        yield
        server.close()
        await server.batcher.stop()

    app = fastapi.FastAPI(title="vitkit", lifespan=lifespan, docs_url="/docs" if docs else None,
                          redoc_url=None, openapi_url="/openapi.json" if docs else None)
    app.state.server = server
    app.add_middleware(BodyLimit, limit=limits.max_body)
    app.add_middleware(HostGuard, served_host=host, allowed_hosts=allowed_hosts)
    app.add_middleware(Measure, metrics=server.metrics)  # outermost: sees every answer
    _handlers(app, server)
    top_k_query = Query(default_top_k, ge=1, le=1000, description="classes per image")

    @app.post("/v1/predict")
    async def predict(request: Request, top_k: int = top_k_query) -> Any:
        return await server.predict(request, top_k)

    @app.post("/v1/explain")
    async def explain(request: Request, top_k: int = top_k_query,
                      format: str = Query("json", pattern="^(json|png)$")) -> Any:  # noqa: A002
        top, png = await server.explain(request, top_k)
        if format == "png":
            return Response(png, media_type="image/png",
                            headers={"X-Vitkit-Top-K": top_k_header(top)})
        encoded = base64.b64encode(png).decode("ascii")
        return {"top_k": top, "overlay": f"data:image/png;base64,{encoded}"}

    @app.get("/v1/model")
    async def model() -> Any:
        return server.backend.describe()

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Any:
        body, content_type = server.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> Any:
        return HTMLResponse(resources.files("vitkit.serve").joinpath("static/index.html")
                            .read_text(encoding="utf-8"))

    return app
