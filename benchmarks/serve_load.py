"""Load test of `vitkit serve` on the loopback interface: 32 concurrent clients send 2,000
POST /v1/predict requests of real image files; p50/p99 latency, requests/s, mean batch size
(from the server's /metrics) and errors, with dynamic batching on and then off.

    python benchmarks/serve_load.py [--checkpoint RUN/checkpoint --images data/cifar10/test] \
        [--requests 2000] [--clients 32] [--max-seconds 600] [--no-record]

--hostile runs the hostile mix instead (`serve_hostile.py`): --clients predict clients of
which 20% of requests are bad uploads and 10% near-limit images, beside --explain-clients
explain clients; it reports the good requests' p50/p99, failures and the server's peak memory.

Bounded: each run stops after --requests requests or --max-seconds, whichever comes first,
and the server is stopped after it. Only 127.0.0.1 is ever contacted.
The table is recorded in benchmarks/RESULTS.md (benchmarks/results_writer.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
from results_writer import add_options, table, write_section
from serve_fixture import make_fixture
from serve_hostile import client_session, run_hostile

from vitkit.data import find_images

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(checkpoint: str, port: int, max_batch: int, delay_ms: float,
                 threads: int, log: str | None = None,
                 extra: tuple[str, ...] = ()) -> subprocess.Popen:
    command = [sys.executable, "-m", "vitkit", "serve", "--checkpoint", checkpoint,
               "--host", HOST, "--port", str(port), "--max-batch", str(max_batch),
               "--max-delay-ms", str(delay_ms), "--threads", str(threads), "--fp32",
               "--max-connections", "4096", *extra]
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - the server's lifetime
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("vitkit serve did not start")


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of the server's vitkit_batch_size histogram."""
    text = httpx.get(f"{url}/metrics").text
    values = {}
    for name in ("sum", "count"):
        match = re.search(rf"^vitkit_batch_size_{name} (\S+)$", text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else 0.0
    return values["sum"], values["count"]


async def load(url: str, images: list[bytes], requests: int, clients: int,
               max_seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.perf_counter() + max_seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, errors
        while next_index < requests and time.perf_counter() < deadline:
            index, next_index = next_index, next_index + 1
            data = images[index % len(images)]
            start = time.perf_counter()
            try:
                async with session.post(f"{url}/v1/predict?top_k=1", data=data,
                                        headers={"content-type": "image/png"}) as answer:
                    ok = (answer.status == 200
                          and len((await answer.json())["predictions"]) == 1)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

    async with client_session(clients) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "seconds": wall,
            "rps": len(latencies) / wall, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000}


def run_one(args: argparse.Namespace, images: list[bytes], max_batch: int) -> dict[str, float]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    server = start_server(args.checkpoint, port, max_batch, args.max_delay_ms, args.threads)
    try:
        # warm-up, not counted
        asyncio.run(load(url, images, 64, min(args.clients, 8), 60))
        before = batch_stats(url)
        result = asyncio.run(load(url, images, args.requests, args.clients, args.max_seconds))
        after = batch_stats(url)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    batches = after[1] - before[1]
    result["mean_batch"] = (after[0] - before[0]) / batches if batches else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint folder or .onnx file (default: the "
                        "fixture of benchmarks/serve_fixture.py)")
    parser.add_argument("--images", help="a folder of images to send (default: the fixture's)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    add_options(parser)
    parser.add_argument("--hostile", action="store_true",
                        help="the hostile mix (bad uploads, near-limit images, explain load)")
    parser.add_argument("--explain-clients", type=int, default=200)
    parser.add_argument("--bad-share", type=float, default=0.2)
    parser.add_argument("--near-share", type=float, default=0.1)
    parser.add_argument("--server-log", default=None, help="file for the server's output")
    parser.add_argument("--serve-args", default="", help="more `vitkit serve` flags, quoted")
    args = parser.parse_args()
    if args.checkpoint is None or args.images is None:
        checkpoint, folder = make_fixture()
        args.checkpoint = args.checkpoint or str(checkpoint)
        args.images = args.images or str(folder)
    files = find_images([args.images])[:500]
    images = [Path(f).read_bytes() for f in files]
    if args.hostile:
        port = free_port()
        server = start_server(args.checkpoint, port, args.max_batch, args.max_delay_ms,
                              args.threads, args.server_log, tuple(args.serve_args.split()))
        try:
            run_hostile(args, f"http://{HOST}:{port}", server.pid, images, args.results)
        finally:
            server.terminate()
            server.wait(timeout=30)
        return
    results = {f"on (max batch {args.max_batch}, {args.max_delay_ms:g} ms)":
               run_one(args, images, args.max_batch),
               "off (max batch 1)": run_one(args, images, 1)}
    report(args, results, len(images))


def report(args: argparse.Namespace, results: dict[str, dict[str, float]], count: int) -> None:
    """Print the table of both runs and record it as a RESULTS.md section."""
    rows = [[name, f"{r['requests']:.0f}", f"{r['errors']:.0f}", f"{r['seconds']:.1f}",
             f"{r['rps']:.1f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}", f"{r['mean_batch']:.2f}"]
            for name, r in results.items()]
    on, off = list(results.values())
    body = (table(["batching", "requests", "errors", "seconds", "requests/s", "p50 ms",
                   "p99 ms", "mean batch"], rows, "lrrrrrrr")
            + f"\n\nBatching on / off: {on['rps'] / off['rps']:.2f}x requests/s.")
    print(body)
    if not args.no_record:
        write_section("Serving under load (benchmarks/serve_load.py)", body, path=args.results,
                      facts=[f"server: `vitkit serve --fp32 --threads {args.threads}`; the "
                             "clients run on the same machine",
                             f"{args.clients} concurrent clients on 127.0.0.1, POST /v1/predict "
                             f"with a raw PNG body, {count} distinct images cycled"])

if __name__ == "__main__":
    main()
