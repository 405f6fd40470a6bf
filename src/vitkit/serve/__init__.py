"""Serve: a vitkit checkpoint or an exported ONNX file over HTTP (FastAPI + uvicorn), with
dynamic batching, Prometheus metrics and a web page. Needs the `serve` extra."""

from .app import create_app
from .backends import Backend, OnnxBackend, TorchBackend, load_backend
from .batcher import DynamicBatcher

__all__ = ["Backend", "DynamicBatcher", "OnnxBackend", "TorchBackend", "create_app",
           "load_backend"]
