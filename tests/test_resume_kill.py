"""Long runs: `vitkit train` killed with SIGKILL at random moments (mid-epoch, often
mid-checkpoint-write, since it checkpoints every step) and restarted with --resume ends with
the same weights as a run that never stopped, and no checkpoint on disk is ever half-written;
the same for data streamed from shards by decoding worker processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

ARGS = ["train", "--model", "vit_digits_patch2_8",
        "--model-arg", "embed_dim=32", "--model-arg", "depth=2", "--model-arg", "num_heads=2",
        "--model-arg", "mlp_dim=64", "--epochs", "4", "--batch-size", "64", "--no-progress",
        "--save-every", "1", "--seed", "5"]


@pytest.fixture(params=["memory", "streamed"])
def data_args(request, tmp_path) -> list[str]:
    """digits in memory, or as shards streamed (budget 0) and decoded by 2 worker processes."""
    if request.param == "memory":
        return ["--data", "digits"]
    from vitkit.cli.main import main

    assert main(["shards", "--data", "digits", "--out", str(tmp_path / "shards")]) == 0
    return ["--data", str(tmp_path / "shards"), "--memory-budget", "0", "--workers", "2"]


def _start(out, data_args, *extra) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every process
    code = "import sys; from vitkit.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *ARGS, *data_args, "--out", str(out),
                             *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _state(out) -> dict:
    return torch.load(out / "state" / "last.pt", map_location="cpu", weights_only=True)


def test_sigkill_at_random_moments_then_resume(tmp_path, data_args):
    reference = _start(tmp_path / "ref", data_args)
    rng = random.Random(1234)
    out, kills = tmp_path / "killed", []
    for _ in range(2):
        state_file = out / "state" / "last.pt"
        seen = _state(out)["step"] if state_file.exists() else -1
        proc = _start(out, data_args, *(["--resume"] if state_file.exists() else []))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:  # wait for a new step
            if state_file.exists() and _state_step_safe(out) > seen:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))  # then a random moment later
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(_state(out)["step"])  # always a whole, loadable checkpoint
    print(f"killed at steps {kills}; resumed each time")
    final = _start(out, data_args, "--resume")
    assert final.wait(timeout=120) == 0, final.stderr.read().decode()
    assert reference.wait(timeout=120) == 0, reference.stderr.read().decode()
    a, b = _state(tmp_path / "ref"), _state(out)
    assert a["step"] == b["step"] == 88 and all(0 < k < 88 for k in kills), kills
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{name} differs after kills {kills}"
    for name, tensor in a["optimizer"]["state"].items():
        assert torch.equal(tensor["exp_avg"], b["optimizer"]["state"][name]["exp_avg"])


def _state_step_safe(out) -> int:
    try:
        return _state(out)["step"]
    except Exception:  # pragma: no cover - a rename in flight; never a half-written file
        return -1
