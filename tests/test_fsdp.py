"""`--fsdp` (FSDP2 `fully_shard`) under torchrun on the CPU: two processes that each hold half
of every tensor train what one process trains, save a whole `save_pretrained` checkpoint, and
resume from a sharded run's state (at another number of processes too)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import vitkit

from .test_torchrun import SAME_INPUTS, TORCHRUN

pytestmark = pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed")
# Two epochs of 11 steps; depth 2 so there are two shard units besides the root.
INPUTS = [*SAME_INPUTS, "--epochs", "2", "--model-arg", "depth=2"]


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "VITKIT_CACHE": str(tmp_path / "cache")}


def _torchrun(tmp_path, out: str, *extra: str) -> subprocess.CompletedProcess:
    command = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "vitkit", "train",
               "--out", str(tmp_path / out), *INPUTS, "--fsdp", *extra]
    return subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)


def _single(tmp_path, out: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitkit", "train", "--out",
                           str(tmp_path / out), *INPUTS, *extra], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)


def _state(tmp_path, out: str) -> dict:
    return torch.load(tmp_path / out / "state" / "last.pt", weights_only=True)


def test_sharded_training_matches_one_process_and_resumes(tmp_path):
    sharded = _torchrun(tmp_path, "fsdp")
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    single = _single(tmp_path, "single")
    assert single.returncode == 0, single.stderr[-2000:]
    fsdp, plain = _state(tmp_path, "fsdp"), _state(tmp_path, "single")
    assert fsdp["step"] == plain["step"] == 22 and fsdp["fsdp"] and not plain["fsdp"]
    assert fsdp["model"].keys() == plain["model"].keys()
    # Whole tensors, as one process has them, and the same values up to the order of the
    # gradient sums, over 22 AdamW steps (twice the two-node test's 11, so twice its atol:
    # Adam's normalised step magnifies rounding where a gradient is near zero).
    for key, tensor in plain["model"].items():
        assert fsdp["model"][key].shape == tensor.shape, key
        torch.testing.assert_close(fsdp["model"][key], tensor, rtol=1e-3, atol=2e-4)
    # The checkpoint is an ordinary save_pretrained folder with the trained weights.
    model = vitkit.create_model(None, pretrained=tmp_path / "fsdp" / "checkpoint")
    assert model.config.depth == 2
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, fsdp["model"][key])

    # Stopped after the first epoch, resumed: the same weights as the uninterrupted run.
    # (Each rank exits with 3, "stopped before the end", which torchrun reports as 1.)
    first = _torchrun(tmp_path, "resumed", "--stop-after", "11")
    assert "exitcode  : 3" in first.stderr, first.stderr[-3000:]
    assert _state(tmp_path, "resumed")["step"] == 11
    second = _torchrun(tmp_path, "resumed", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = _state(tmp_path, "resumed")
    assert resumed["step"] == 22
    for key, tensor in fsdp["model"].items():
        torch.testing.assert_close(resumed["model"][key], tensor, rtol=1e-5, atol=1e-6)
    for key, moments in fsdp["optimizer"]["state"].items():  # AdamW moments, by name
        torch.testing.assert_close(resumed["optimizer"]["state"][key]["exp_avg_sq"],
                                   moments["exp_avg_sq"], rtol=1e-5, atol=1e-9)


def test_fsdp_misuse_is_one_clear_line(tmp_path):
    alone = _single(tmp_path, "alone", "--fsdp")
    assert alone.returncode != 0 and "torchrun" in alone.stderr
    assert "Traceback" not in alone.stderr
    with_ema = _torchrun(tmp_path, "ema", "--ema")
    assert with_ema.returncode != 0 and "--no-ema" in with_ema.stderr
    # A plain run's state does not resume as a sharded one (or the other way round).
    assert _single(tmp_path, "plain", "--stop-after", "3").returncode == 3
    crossed = _torchrun(tmp_path, "plain", "--resume")
    assert crossed.returncode != 0 and "without sharding (no --fsdp)" in crossed.stderr
