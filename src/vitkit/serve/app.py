"""The HTTP API (FastAPI): predict, explain, model facts, health, Prometheus metrics and the
web page, over a `Backend` fed through a `DynamicBatcher`. Every refused request gets a 4xx
with a JSON `{"error": ...}` body, and the server goes on."""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations
# (Request, Query) at definition time, from the function's scope.

import asyncio
import base64
import json
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import torch

from ..errors import require
from .backends import Backend
from .batcher import DynamicBatcher
from .limits import BodyLimit
from .metrics import ServerMetrics
from .overlay import overlay_png
from .uploads import IMAGE_FIELDS, BadRequest, decode_upload

MAX_FILES = 64


async def read_uploads(request: Any) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in the request: multipart fields `file`/`files`, or the
    raw body for any other content type."""
    from starlette.datastructures import UploadFile

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        data = await request.body()
        if not data:
            raise BadRequest(400, "the request has no image: send it as the body, or as "
                                  "multipart/form-data field 'file'")
        return [("body", data)]
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
    except BadRequest:
        raise
    except Exception as error:  # noqa: BLE001 - starlette/python-multipart parse errors
        raise BadRequest(400, f"could not read the multipart body: {error}") from error
    uploads, unknown = [], []
    for key, value in form.multi_items():
        if key in IMAGE_FIELDS and isinstance(value, UploadFile):
            uploads.append((value.filename or key, await value.read()))
        else:
            unknown.append(key)
    if unknown:
        raise BadRequest(422, f"unexpected form field(s) {', '.join(sorted(set(unknown)))}: "
                              f"send images as 'file' or 'files' (top_k goes in the query)")
    if not uploads:
        raise BadRequest(422, "no image in the form: send it as field 'file' (or 'files')")
    return uploads


def top_k_rows(logits: torch.Tensor, names: list[str], k: int) -> list[list[dict[str, Any]]]:
    top = logits.float().softmax(dim=1).topk(min(k, len(names)), dim=1)
    return [[{"label": names[j], "score": round(p, 6)} for p, j in zip(ps, js, strict=True)]
            for ps, js in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


class Server:
    """The app's state: the backend, its batcher and its metrics."""

    def __init__(self, backend: Backend, max_batch: int, max_delay_ms: float) -> None:
        self.backend = backend
        self.metrics = ServerMetrics()
        self.batcher = DynamicBatcher(backend.logits, max_batch, max_delay_ms / 1000.0,
                                      on_batch=self.metrics.observe_batch)

    async def pixels(self, request: Any) -> tuple[list[str], torch.Tensor]:
        uploads = await read_uploads(request)
        decoded = [await asyncio.to_thread(decode_upload, data, name, self.backend.load)
                   for name, data in uploads]
        return [name for name, _ in uploads], torch.stack(decoded)

    async def predict(self, request: Any, top_k: int) -> dict[str, Any]:
        names, pixels = await self.pixels(request)
        logits = await self.batcher.submit(self.backend.inputs(pixels))
        rows = top_k_rows(logits, self.backend.class_names, top_k)
        return {"model": self.backend.name, "predictions": rows, "files": names}

    async def explain(self, request: Any, top_k: int) -> tuple[list[dict[str, Any]], bytes]:
        if not self.backend.can_explain:
            raise BadRequest(501, f"{self.backend.kind} models have no attention maps to "
                                  "explain with; serve a vitkit checkpoint for /v1/explain")
        names, pixels = await self.pixels(request)
        if len(names) != 1:
            raise BadRequest(422, f"/v1/explain takes one image, got {len(names)}")
        inputs = self.backend.inputs(pixels)
        logits = await self.batcher.submit(inputs)
        rollout = await self.batcher.call(self.backend.rollout, inputs)
        png = await asyncio.to_thread(overlay_png, pixels[0], rollout[0])
        return top_k_rows(logits, self.backend.class_names, top_k)[0], png


def _handlers(app: Any, server: Server) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Any, error: BadRequest) -> Any:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Any, error: RequestValidationError) -> Any:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                 for e in error.errors()]
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Any, error: HTTPException) -> Any:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.middleware("http")
    async def measure(request: Any, call_next: Any) -> Any:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        server.metrics.observe_request(endpoint, response.status_code,
                                       time.perf_counter() - start)
        return response


def create_app(backend: Backend, max_batch: int = 32, max_delay_ms: float = 5.0,
               max_body_mb: float = 20.0, default_top_k: int = 5) -> Any:
    """The FastAPI app serving `backend` (`uvicorn.run(app)` or FastAPI's TestClient)."""
    fastapi = require("fastapi", "serve", "vitkit serve")
    require("python_multipart", "serve", "vitkit serve (python-multipart)")
    from fastapi import Query, Request
    from fastapi.responses import HTMLResponse, Response

    server = Server(backend, max_batch, max_delay_ms)

    @asynccontextmanager
    async def lifespan(_app: Any):  # noqa: ANN202
        await server.batcher.start()
        yield
        await server.batcher.stop()

    app = fastapi.FastAPI(title="vitkit", lifespan=lifespan)
    app.state.server = server
    app.add_middleware(BodyLimit, limit=int(max_body_mb * 1e6))
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
                            headers={"X-Vitkit-Top-K": json.dumps(top)})
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
