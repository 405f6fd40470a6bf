"""`torchrun -m vitkit train` as a user runs it: two CPU processes (gloo) train one model, and
only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import vitkit

TORCHRUN = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed")
def test_torchrun_two_processes_train_digits(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VITKIT_CACHE": str(tmp_path / "cache")}
    command = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "vitkit", "train",
               "--data", "digits", "--out", str(out), "--epochs", "1", "--batch-size", "128",
               "--model", "vit_digits_patch2_8", "--model-arg", "depth=1",
               "--model-arg", "embed_dim=32", "--model-arg", "mlp_dim=64",
               "--no-progress", "--no-randaugment", "--warmup-epochs", "0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 1,437 training digits at a global batch of 128: 11 full steps, logged once (rank 0)
    assert rows[-1]["step"] == 11 and len({row["step"] for row in rows}) == len(rows)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == 11 and 0.0 <= summary["test_top1"] <= 1.0
    assert done.stdout.count("checkpoint:") == 1  # rank 0 alone reports
    model = vitkit.create_model(None, pretrained=out / "checkpoint")
    assert model.config.depth == 1 and model.config.num_classes == 10


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# No per-sample randomness, so the runs see the same inputs; fp32 forced (the comparison's
# tolerance is fp32's).
SAME_INPUTS = ["--data", "digits", "--epochs", "1", "--batch-size", "128", "--model",
               "vit_digits_patch2_8", "--model-arg", "depth=1", "--model-arg", "embed_dim=32",
               "--model-arg", "mlp_dim=64", "--no-progress", "--precision", "fp32",
               "--crop", "none", "--no-hflip", "--no-randaugment", "--mixup", "0", "--cutmix",
               "0", "--random-erasing", "0", "--drop-path", "0", "--no-ema", "--warmup-epochs",
               "0"]


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed")
def test_two_nodes_on_localhost_match_one_process(tmp_path):
    """`torchrun --nnodes 2 --rdzv-backend c10d` started twice, as on two hosts, trains the
    same weights as one process at the same global batch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VITKIT_CACHE": str(tmp_path / "cache")}
    port = _free_port()
    node = [TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "vitkit-test",
            "-m", "vitkit", "train", "--out", str(tmp_path / "nodes"), *SAME_INPUTS]
    nodes = [subprocess.Popen(node, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    single = subprocess.run([sys.executable, "-m", "vitkit", "train", "--out",
                             str(tmp_path / "single"), *SAME_INPUTS], env=env,
                            capture_output=True, text=True, timeout=300)
    for process in nodes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    assert single.returncode == 0, single.stderr[-2000:]
    import torch

    states = [torch.load(tmp_path / name / "state" / "last.pt", weights_only=True)
              for name in ("nodes", "single")]
    assert states[0]["step"] == states[1]["step"] == 11
    for key, tensor in states[1]["model"].items():
        torch.testing.assert_close(states[0]["model"][key], tensor, rtol=1e-3, atol=1e-4)
