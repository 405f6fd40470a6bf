"""Serve: a vitkit checkpoint or an exported ONNX file over HTTP (FastAPI + uvicorn), with
dynamic batching, bounded decoding, Prometheus metrics and a web page. Needs the `serve`
extra."""

from .app import create_app
from .backends import Backend, OnnxBackend, TorchBackend, load_backend
from .batcher import DynamicBatcher
from .limits import ServeLimits
from .runner import ConnectionLimits, run_app, serve_checkpoint

__all__ = ["Backend", "ConnectionLimits", "DynamicBatcher", "OnnxBackend", "ServeLimits",
           "TorchBackend", "create_app", "load_backend", "run_app", "serve_checkpoint"]
