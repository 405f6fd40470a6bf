"""What the serve tests share: a tiny classifier saved as a checkpoint, image bytes of every
kind a client may send (good, not an image, truncated, a decompression bomb), and a live
`vitkit serve` on a free loopback port."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

import vitkit
from tests.conftest import tiny_vit

CLASSES = ["cat", "dog", "emu"]


def tiny_checkpoint(folder: Path) -> Path:
    """A 3-class, 32x32 ViT with random weights saved in vitkit's format."""
    model = tiny_vit()
    model.meta.preprocessing = model.meta.preprocessing.replace(crop_pct=0.875)
    vitkit.save_pretrained(model, folder, class_names=CLASSES)
    return folder


def png_bytes(seed: int = 0, size: tuple[int, int] = (40, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size[1])[None, :, None] * rng.uniform(0.2, 1, (1, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 30, (*size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_png() -> bytes:
    data = png_bytes(1, (64, 64))
    return data[: len(data) * 2 // 3]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def bomb_png(side: int = 30000) -> bytes:
    """A small PNG whose header claims side x side pixels (900M: over Pillow's limit)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * side
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(row * 4)) + _chunk(b"IEND", b""))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(checkpoint: Path, *extra: str, timeout: float = 60.0):
    """`vitkit serve` in a subprocess on a free loopback port; yields its base URL."""
    with live_process(checkpoint, *extra, timeout=timeout) as (url, _process):
        yield url


@contextlib.contextmanager
def live_process(checkpoint: Path, *extra: str, timeout: float = 60.0, log=None,
                 open_files: int | None = None):
    """`vitkit serve` in a subprocess on a free loopback port, its output to the open file
    `log` (default: a pipe), at most `open_files` descriptors if given; yields (base URL,
    the Popen)."""
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(vitkit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "vitkit", "serve", "--checkpoint", str(checkpoint),
               "--port", str(port), "--threads", "1", *extra]
    def limit_files() -> None:
        if open_files is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    process = subprocess.Popen(command, env=env, stdout=log or subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, preexec_fn=limit_files)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else "(see its log)"
                raise RuntimeError(f"vitkit serve exited: {output}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("vitkit serve did not answer /healthz in time")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def blank_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A PNG of one flat colour: a few hundred bytes whatever its size (thin images, and
    images near a pixel limit)."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (90, 140, 200, 255)[:len(mode)]).save(buffer, format="PNG")
    return buffer.getvalue()


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident memory (VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
