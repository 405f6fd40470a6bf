"""`vitkit serve --checkpoint PATH`: an HTTP API and a web page for a vitkit checkpoint or an
exported .onnx file (FastAPI + uvicorn), on the loopback interface unless --host says so."""

from __future__ import annotations

import argparse
import re
import sys

from ..errors import install_hint
from .backend_args import add_backend_options, check_backend_options
from .main import CommandError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# ServeLimits / ConnectionLimits field -> the flag that sets it
FLAGS = {"max_body_mb": "--max-body-mb", "max_images": "--max-images",
         "max_pixels": "--max-pixels", "max_queue": "--max-queue",
         "explain_queue": "--explain-queue", "decode_workers": "--decode-workers",
         "large_pixels": "--large-pixels", "large_queue": "--large-queue",
         "body_timeout": "--body-timeout", "header_timeout": "--header-timeout",
         "keep_alive_timeout": "--keep-alive-timeout", "shutdown_timeout": "--shutdown-timeout",
         "max_connections": "--max-connections"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve a model over HTTP, with a web page",
        description="Serve CHECKPOINT (a vitkit checkpoint folder or an .onnx file from `vitkit "
        "export`): POST /v1/predict, POST /v1/explain, GET /v1/model, /healthz, /metrics, and a "
        "web page at /. Requests arriving within --max-delay-ms run as one batch. Needs the "
        f"`serve` extra: {install_hint('serve')}.")
    add = parser.add_argument
    add("--checkpoint", required=True, help="checkpoint folder or .onnx file")
    add("--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)")
    add("--port", type=int, default=8000, help="port (default 8000)")
    add("--allowed-host", action="append", default=[], metavar="NAME",
        help="another name clients may use in the Host header (and as a page's origin), "
             "beside the address served and loopback names; repeatable")
    add("--docs", action="store_true", help="serve the OpenAPI pages at /docs")
    add("--max-batch", type=int, default=32,
        help="most images per model run (default 32; 1 turns batching off)")
    add("--max-delay-ms", type=float, default=5.0,
        help="how long a request waits for others to batch with (default 5)")
    add("--max-body-mb", type=float, default=20.0,
        help="largest request body accepted (default 20 MB)")
    add("--max-images", type=int, default=16, help="most images in one request (default 16)")
    add("--max-pixels", type=int, default=50_000_000,
        help="most pixels in all of one request's images, read from their headers before "
             "decoding (default 50,000,000)")
    add("--max-queue", type=int, default=128,
        help="predict requests decoding or waiting for the model; more get 503 (default 128)")
    add("--explain-queue", type=int, default=4,
        help="explain requests inside their own lane; more get 503 (default 4)")
    add("--decode-workers", type=int, default=1, help="threads decoding uploads (default 1)")
    add("--large-pixels", type=int, default=4_000_000,
        help="requests with more pixels than this decode one at a time on a lane of their "
             "own (default 4,000,000)")
    add("--large-queue", type=int, default=2,
        help="large-image requests inside their lane; more get 503 (default 2)")
    add("--body-timeout", type=float, default=30.0,
        help="seconds a client may take to send a request body (default 30)")
    add("--header-timeout", type=float, default=10.0,
        help="seconds a client may take to send a request's headers (default 10)")
    add("--keep-alive-timeout", type=int, default=15,
        help="seconds an idle keep-alive connection stays open (default 15: longer than "
             "clients keep idle connections, so a reused one is not closed under them)")
    add("--shutdown-timeout", type=int, default=10,
        help="seconds requests in flight get after SIGTERM (default 10)")
    add("--max-connections", type=int, default=2048,
        help="open connections; past it new requests get 503 (default 2048)")
    add("--top-k", type=int, default=5, help="default top_k (5)")
    add("--threads", type=int, default=None, help="CPU threads for the model")
    add("--fp32", action="store_true",
        help="compute in fp32 even where bf16 is native (PyTorch backend)")
    add("--device", default=None, help="cpu, cuda ... (PyTorch backend)")
    add_backend_options(add, serving=True)
    parser.set_defaults(func=run)


def _limits(args: argparse.Namespace) -> tuple:
    from vitkit.serve import ConnectionLimits, ServeLimits

    try:
        return (ServeLimits(max_body_mb=args.max_body_mb, max_images=args.max_images,
                            max_pixels=args.max_pixels, max_queue=args.max_queue,
                            explain_queue=args.explain_queue,
                            decode_workers=args.decode_workers,
                            large_pixels=args.large_pixels, large_queue=args.large_queue,
                            body_timeout=args.body_timeout),
                ConnectionLimits(header_timeout=args.header_timeout,
                                 keep_alive_timeout=args.keep_alive_timeout,
                                 shutdown_timeout=args.shutdown_timeout,
                                 max_connections=args.max_connections))
    except ValueError as error:
        message = re.sub(r"^(\w+)", lambda m: FLAGS.get(m.group(1), m.group(1)), str(error))
        raise CommandError(message) from error


def run(args: argparse.Namespace) -> int:
    from vitkit.errors import require

    require("uvicorn", "serve", "vitkit serve")
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    if args.top_k < 1:
        raise CommandError(f"--top-k must be at least 1, got {args.top_k}")
    check_backend_options(args)
    limits, connections = _limits(args)
    import torch  # after the flags are checked: it takes seconds to import

    from vitkit.serve import serve_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.host not in LOOPBACK:
        print(f"vitkit serve: listening on {args.host}: reachable from other machines",
              file=sys.stderr)
    serve_checkpoint(args.checkpoint, args.host, args.port, device=args.device, fp32=args.fp32,
                     max_batch=args.max_batch, max_delay_ms=args.max_delay_ms,
                     default_top_k=args.top_k, limits=limits, connections=connections,
                     allowed_hosts=tuple(args.allowed_host), docs=args.docs,
                     backend=args.backend, calibration=tuple(args.calibration or ()),
                     calibration_limit=args.max_calibration_images)
    return 0
