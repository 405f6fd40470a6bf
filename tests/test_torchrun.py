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
