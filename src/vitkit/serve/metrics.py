"""Prometheus metrics of one server: requests by endpoint and status, latency, batch sizes."""

from __future__ import annotations

import time
from typing import Any

from ..errors import require

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """A registry of its own (so several apps in one process do not collide)."""

    def __init__(self) -> None:
        prometheus = require("prometheus_client", "serve", "vitkit serve")
        self._prometheus = prometheus
        self.registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter(
            "vitkit_requests", "HTTP requests by endpoint and status code",
            ["endpoint", "status"], registry=self.registry)
        self.latency = prometheus.Histogram(
            "vitkit_request_seconds", "request latency in seconds, by endpoint", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = prometheus.Histogram(
            "vitkit_batch_size", "images per model run (dynamic batching)",
            buckets=BATCH_BUCKETS, registry=self.registry)
        self.images = prometheus.Counter(
            "vitkit_images", "images classified", registry=self.registry)
        self.disconnects = prometheus.Counter(
            "vitkit_client_disconnects", "clients that left before their request was read",
            registry=self.registry)
        self.busy = prometheus.Counter(
            "vitkit_busy_refusals", "requests refused with 503 because their lane was full",
            ["lane"], registry=self.registry)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)
        self.images.inc(size)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return (self._prometheus.generate_latest(self.registry),
                self._prometheus.CONTENT_TYPE_LATEST)

    def summary(self) -> dict[str, Any]:
        """Batch count and mean batch size so far (for benchmarks and logs)."""
        count = total = 0.0
        for metric in self.batch_size.collect():
            for sample in metric.samples:
                if sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    total = sample.value
        return {"batches": int(count), "mean_batch_size": total / count if count else 0.0}


class Measure:
    """ASGI middleware: each HTTP request's endpoint, status and seconds into `metrics`.
    Plain ASGI, not Starlette's BaseHTTPMiddleware, which costs a task group and memory
    streams per request: under a flood of refused requests that was the event loop's
    largest single cost."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def watched_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:  # the router put the matched route in the scope
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
