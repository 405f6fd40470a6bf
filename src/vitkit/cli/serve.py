"""`vitkit serve --checkpoint PATH`: an HTTP API and a web page for a vitkit checkpoint or an
exported .onnx file (FastAPI + uvicorn), on the loopback interface unless --host says so."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import install_hint
from .main import CommandError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve a model over HTTP, with a web page",
        description="Serve CHECKPOINT (a vitkit checkpoint folder or an .onnx file from `vitkit "
        "export`): POST /v1/predict, POST /v1/explain, GET /v1/model, /healthz, /metrics, and a "
        "web page at /. Requests arriving within --max-delay-ms run as one batch. Needs the "
        f"`serve` extra: {install_hint('serve')}.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or .onnx file")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-batch", type=int, default=32,
                        help="most images per model run (default 32; 1 turns batching off)")
    parser.add_argument("--max-delay-ms", type=float, default=5.0,
                        help="how long a request waits for others to batch with (default 5)")
    parser.add_argument("--max-body-mb", type=float, default=20.0,
                        help="largest request body accepted (default 20 MB)")
    parser.add_argument("--top-k", type=int, default=5, help="default top_k (5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    parser.add_argument("--fp32", action="store_true",
                        help="compute in fp32 even where bf16 is native (PyTorch backend)")
    parser.add_argument("--device", default=None, help="cpu, cuda ... (PyTorch backend)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vitkit.errors import require
    from vitkit.serve import create_app, load_backend

    uvicorn = require("uvicorn", "serve", "vitkit serve")
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    if args.max_body_mb <= 0:
        raise CommandError(f"--max-body-mb must be positive, got {args.max_body_mb}")
    if args.top_k < 1:
        raise CommandError(f"--top-k must be at least 1, got {args.top_k}")
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = load_backend(args.checkpoint, device=args.device, fp32=args.fp32)
    app = create_app(backend, max_batch=args.max_batch, max_delay_ms=args.max_delay_ms,
                     max_body_mb=args.max_body_mb, default_top_k=args.top_k)
    if args.host not in LOOPBACK:
        print(f"vitkit serve: listening on {args.host}: reachable from other machines",
              file=sys.stderr)
    logging.getLogger("vitkit").info(
        "serving %s (%s, %d classes) on http://%s:%d/ (batching: up to %d images, %g ms)",
        backend.name, backend.kind, len(backend.class_names), args.host, args.port,
        args.max_batch, args.max_delay_ms)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
