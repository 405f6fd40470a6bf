"""The hostile mix for `benchmarks/serve_load.py --hostile`: predict clients of which 20% of
requests are bad uploads (not an image, truncated, empty, a decompression bomb, a 30000x1
PNG, a wrong form field) and 10% near-limit images (a 7000x7000 RGBA PNG: 49M pixels, under
the default --max-pixels of 50M), beside explain clients that never back off. Reports the good
requests' latency and failures, what the others got, and the server's peak memory (VmHWM).
Loopback only; bounded by --requests good requests or --max-seconds."""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from PIL import Image

BAD_SHARE, NEAR_SHARE = 0.2, 0.1
NEAR_SIDE = 7000


def flat_png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (90, 140, 200, 255)[:len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb(side: int = 30000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (side + 1) * 4)) + chunk(b"IEND", b""))


@dataclass(frozen=True)
class Upload:
    """One request's body: raw bytes with a content type, or a multipart form of one file."""

    body: bytes
    content_type: str = "image/png"
    form_field: str | None = None  # a multipart upload under this field name

    def kwargs(self) -> dict:
        """aiohttp's keyword arguments for it (a FormData is made anew: it is used once)."""
        if self.form_field is None:
            return dict(data=self.body, headers={"content-type": self.content_type})
        form = aiohttp.FormData()
        form.add_field(self.form_field, self.body, filename="a.png",
                       content_type=self.content_type)
        return dict(data=form)


def bad_requests(good: bytes) -> list[Upload]:
    """Each kind of bad upload."""
    return [Upload(b"hello, not a picture"), Upload(good[: len(good) // 2]), Upload(b""),
            Upload(_bomb()), Upload(flat_png(30000, 1)), Upload(good, form_field="image")]


def client_session(connections: int) -> aiohttp.ClientSession:
    """The load clients' HTTP session. aiohttp, not httpx: on the same 2 cores as the server,
    httpx spent 8.3 ms of CPU per request (more than the server's 7.5 ms) and its event loop,
    not the server, set the latency; aiohttp spends about 0.15 ms."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=60))


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Tally:
    """What the mix saw: status counts by kind of request, good latencies, server memory."""

    limit: int
    deadline: float
    bad_share: float = BAD_SHARE
    near_share: float = NEAR_SHARE
    latency: list[float] = field(default_factory=list)
    status: dict[str, Counter] = field(
        default_factory=lambda: {kind: Counter() for kind in ("good", "bad", "near", "explain")})
    rss_mb: float = 0.0

    def running(self) -> bool:
        return len(self.latency) < self.limit and time.perf_counter() < self.deadline


async def _status(session: aiohttp.ClientSession, url: str, upload: Upload) -> int | str:
    """The answer's status, or the name of the error that stood for one."""
    try:
        async with session.post(url, **upload.kwargs()) as answer:
            await answer.read()
            return answer.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        return type(error).__name__


async def _predict_client(session: aiohttp.ClientSession, url: str, images: list[bytes],
                          bad: list[Upload], near: bytes, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    while tally.running():
        draw = rng.random()
        kind = ("bad" if draw < tally.bad_share else
                "near" if draw < tally.bad_share + tally.near_share else "good")
        upload = (rng.choice(bad) if kind == "bad" else
                  Upload(near if kind == "near" else rng.choice(images)))
        start = time.perf_counter()
        status = await _status(session, f"{url}/v1/predict?top_k=1", upload)
        tally.status[kind][status] += 1
        if kind == "good":
            tally.latency.append(time.perf_counter() - start)


async def _explain_client(session: aiohttp.ClientSession, url: str, images: list[bytes],
                          tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    while tally.running():
        status = await _status(session, f"{url}/v1/explain", Upload(rng.choice(images)))
        tally.status["explain"][status] += 1


async def _memory(pid: int, tally: Tally) -> None:
    while tally.running():
        tally.rss_mb = max(tally.rss_mb, peak_rss_mb(pid, "VmRSS"))
        await asyncio.sleep(0.25)


async def hostile(url: str, pid: int, images: list[bytes], args: argparse.Namespace) -> Tally:
    """Run the mix against the server at `url` (process `pid`) until the tally stops."""
    bad, near = bad_requests(images[0]), flat_png(NEAR_SIDE, NEAR_SIDE, "RGBA")
    tally = Tally(args.requests, time.perf_counter() + args.max_seconds, args.bad_share,
                  args.near_share)
    async with client_session(args.clients) as predict, \
            client_session(args.explain_clients) as explain:
        await asyncio.gather(
            _memory(pid, tally),
            *(_predict_client(predict, url, images, bad, near, tally, seed)
              for seed in range(args.clients)),
            *(_explain_client(explain, url, images, tally, 1000 + seed)
              for seed in range(args.explain_clients)))
    return tally


def _counts(counter: Counter) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(counter.items(), key=str))


def run_hostile(args: argparse.Namespace, url: str, pid: int, images: list[bytes],
                results: Path) -> None:
    """Run the hostile mix, print its table and record it (benchmarks/results_writer.py)."""
    from results_writer import write_section

    start = time.perf_counter()
    tally = asyncio.run(hostile(url, pid, images, args))
    seconds = time.perf_counter() - start
    latency = sorted(tally.latency)
    good = tally.status["good"]
    failed = sum(count for status, count in good.items() if status != 200)
    p99 = latency[min(len(latency) - 1, int(0.99 * len(latency)))]
    row = (f"| {args.clients} ({args.bad_share:.0%} bad, {args.near_share:.0%} near-limit) + "
           f"{args.explain_clients} explain | {seconds:.0f} | {len(latency)} "
           f"| {failed} | {statistics.median(latency) * 1000:.0f} | {p99 * 1000:.0f} | "
           f"{latency[-1] * 1000:.0f} | {_counts(tally.status['bad'])} | "
           f"{_counts(tally.status['near'])} | {_counts(tally.status['explain'])} | "
           f"{peak_rss_mb(pid):.0f} |")
    header = ("| clients | s | good requests | good failed | good p50 ms | good p99 ms | "
              "good max ms | bad uploads | near-limit images | explain | server peak RSS MB |")
    text = "\n".join([header, "|---" * header.count("|", 1) + "|", row])
    print(text)
    if not args.no_record:
        write_section("Serving under a hostile mix (benchmarks/serve_load.py --hostile)", text,
                      path=results,
                      facts=[f"server: `vitkit serve --checkpoint {args.checkpoint} --fp32 "
                             f"--threads {args.threads}` (default limits, --backend auto)",
                             "clients: one aiohttp process on the same machine, 127.0.0.1"])
