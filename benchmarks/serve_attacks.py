"""The attacks of issue 23, measured on the loopback interface: thin PNGs against `vitkit serve`,
`predict`, `eval` and `train` (time, status, peak memory); 1,100 slow-header connections, with
the server's open-file limit as it is and at 1024 (how long a good request takes); SIGTERM with
a slow upload open (how long the server takes to exit); cross-origin posts (their statuses).

    python benchmarks/serve_attacks.py [--checkpoint CKPT] [--no-record]

CKPT is a vitkit checkpoint (32 px; by default benchmarks/serve_fixture.py's); eval and
train read folders made here, one good image per class of CKPT and the thin ones.
Bounded; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from results_writer import add_options, write_section
from serve_fixture import make_fixture
from serve_hostile import flat_png, peak_rss_mb

HOST = "127.0.0.1"
THIN = [(30000, 1), (1, 120000), (8000, 2)]


def start(checkpoint: str, *extra: str, prefix: str = "") -> tuple[str, subprocess.Popen]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    command = (f"{prefix} exec {sys.executable} -m vitkit serve --checkpoint {checkpoint} "
               f"--port {port} --threads 2 {' '.join(extra)}")
    process = subprocess.Popen(["bash", "-c", command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("vitkit serve did not start")


def good_seconds(url: str, patience: float = 60) -> float:
    """Seconds until a good request answers 200 (retrying refused connections)."""
    start_time = time.perf_counter()
    while time.perf_counter() - start_time < patience:
        try:
            answer = httpx.post(f"{url}/v1/predict", content=flat_png(40, 40), timeout=patience)
            if answer.status_code == 200:
                return time.perf_counter() - start_time
        except httpx.HTTPError:
            time.sleep(0.1)
    return float("inf")


def thin_server(checkpoint: str) -> list[str]:
    url, process = start(checkpoint)
    rows = []
    try:
        for width, height in THIN:
            begin = time.perf_counter()
            answer = httpx.post(f"{url}/v1/predict", content=flat_png(width, height), timeout=120)
            rows.append(f"| server: POST {width}x{height} | {answer.status_code} | "
                        f"{(time.perf_counter() - begin) * 1000:.0f} ms | "
                        f"{peak_rss_mb(process.pid):.0f} |")
    finally:
        process.terminate()
        process.wait(30)
    return rows


def measured(args: list[str]) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS MB by wait4) of a `python -m vitkit` run."""
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "vitkit", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - begin, usage.ru_maxrss / 1024


def thin_commands(checkpoint: str, folder: Path) -> list[str]:
    names = json.loads((Path(checkpoint) / "config.json").read_text())["class_names"]
    data = folder / "data"
    for split in ("train", "test"):
        for name in names:
            (data / split / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (40, 80, 120)).save(data / split / name / "ok.png")
        for width, height in THIN:
            Image.new("RGB", (width, height)).save(data / split / names[0] / f"{width}.png")
    rows = []
    for width, height in THIN:
        code, seconds, peak = measured(["predict", "--checkpoint", checkpoint,
                                        str(data / "test" / names[0] / f"{width}.png")])
        rows.append(f"| predict {width}x{height} | exit {code} | {seconds:.1f} s | {peak:.0f} |")
    code, seconds, peak = measured(["eval", "--checkpoint", checkpoint, "--data", str(data),
                                    "--no-progress", "--out", str(folder / "eval")])
    rows.append(f"| eval (3 thin of {3 + len(names)}) | exit {code} | {seconds:.1f} s | "
                f"{peak:.0f} |")
    code, seconds, peak = measured(["train", "--data", str(data), "--out", str(folder / "t"),
                                    "--model", "vit_cifar_mini_patch4_32", "--epochs", "1",
                                    "--no-progress", "--batch-size", "4"])
    rows.append(f"| train 1 epoch (3 thin of {3 + len(names)}) | exit {code} | {seconds:.1f} s "
                f"| {peak:.0f} |")
    return rows


def slow_connections(checkpoint: str, count: int, prefix: str = "") -> str:
    url, process = start(checkpoint, prefix=prefix)
    sockets = []
    try:
        for _ in range(count):
            try:
                sock = socket.create_connection((HOST, int(url.rsplit(":", 1)[1])), timeout=5)
                sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                sockets.append(sock)
            except OSError:
                break
        seconds = good_seconds(url)
    finally:
        for sock in sockets:
            sock.close()
        process.terminate()
        process.wait(30)
    where = prefix.strip() or "open-file limit as set (raised to fit 2048 connections)"
    return f"| {len(sockets)} slow-header connections, {where} | good request in {seconds:.2f} s |"


def sigterm_with_slow_upload(checkpoint: str) -> str:
    url, process = start(checkpoint)
    with socket.create_connection((HOST, int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000"
                     b"\r\nContent-Type: image/png\r\n\r\n" + b"\0" * 10)
        time.sleep(0.5)
        begin = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return (f"| SIGTERM with a slow upload open (--shutdown-timeout 10) | exited in "
            f"{time.perf_counter() - begin:.1f} s |")


def cross_origin(checkpoint: str) -> str:
    url, process = start(checkpoint)
    try:
        statuses = [httpx.post(f"{url}/v1/predict", content=flat_png(40, 40), headers=h).status_code
                    for h in ({"Origin": "http://127.0.0.1:1"}, {"Origin": "null"},
                              {"Host": "rebind.example"}, {"Origin": url})]
    finally:
        process.terminate()
        process.wait(30)
    return (f"| cross-origin POST / Origin null / foreign Host / same origin | "
            f"{' / '.join(map(str, statuses))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a 32 px vitkit checkpoint (default: the fixture "
                        "of benchmarks/serve_fixture.py)")
    add_options(parser)
    args = parser.parse_args()
    args.checkpoint = args.checkpoint or str(make_fixture()[0])
    with tempfile.TemporaryDirectory() as folder:
        thin = thin_server(args.checkpoint) + thin_commands(args.checkpoint, Path(folder))
    others = [slow_connections(args.checkpoint, 1100),
              slow_connections(args.checkpoint, 1100, prefix="ulimit -n 1024;"),
              sigterm_with_slow_upload(args.checkpoint), cross_origin(args.checkpoint)]
    text = "\n".join(["| attack | answer | time | peak RSS MB |", "|---|---|---|---|", *thin,
                      "", "| attack | result |", "|---|---|", *others])
    print(text)
    if not args.no_record:
        write_section("Attacks on vitkit serve (benchmarks/serve_attacks.py)", text,
                      path=args.results)


if __name__ == "__main__":
    main()
