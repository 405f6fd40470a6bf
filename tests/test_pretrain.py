"""Masked patch prediction (paper Section 4.6): the corruption and the colour targets, and
`vitkit pretrain` then `vitkit finetune --pretrained` end to end on digits."""

from __future__ import annotations

import json

import pytest
import torch

import vitkit
from tests.conftest import TINY, tiny_model
from vitkit.cli.main import main
from vitkit.models import MaskedPatchPrediction, Preprocessing

pytestmark = pytest.mark.usefixtures("private_cache")


def test_targets_are_the_3_bit_mean_colours_of_the_patches():
    vit = vitkit.create_model("vit_digits_patch2_8", in_chans=3, num_classes=0, **TINY)
    vit.meta.preprocessing = Preprocessing(mean=(0.0,) * 3, std=(1.0,) * 3)
    model = MaskedPatchPrediction(vit)
    images = torch.zeros(1, 3, 8, 8)
    images[0, 0, :2, :2] = 1.0  # patch 0: red
    images[0, 2, :2, 2:4] = 0.5  # patch 1: blue at half: level 4 of 8
    targets = model.targets(images)[0]
    assert targets.shape == (16,)
    assert int(targets[0]) == 7 * 64 and int(targets[1]) == 4 and int(targets[2]) == 0


def test_half_the_patches_are_corrupted_and_only_they_are_predicted():
    torch.manual_seed(0)
    model = MaskedPatchPrediction(tiny_model(num_classes=0))
    logits, targets = model(torch.randn(6, 1, 8, 8))
    assert logits.shape == (6 * 8, 2**3) and targets.shape == (6 * 8,)  # 1 channel: 8 levels
    logits.float().logsumexp(1).sum().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


def test_pretrain_then_finetune_on_digits(tmp_path, capsys):
    out = tmp_path / "pre"
    fast = ["--epochs", "1", "--batch-size", "64", "--no-progress", "--precision", "fp32",
            "--model-arg", "depth=1", "--model-arg", "embed_dim=32", "--model-arg", "num_heads=2",
            "--model-arg", "mlp_dim=64"]
    assert main(["pretrain", "--objective", "masked-patch", "--data", "digits", "--out",
                 str(out), *fast]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(row["loss"] < 2 * 3 for row in lines if "loss" in row)  # ln 8 = 2.08 at chance
    backbone = vitkit.load_pretrained(out / "checkpoint")
    assert backbone.config.num_classes == 0 and backbone.meta.class_names is None
    assert main(["finetune", "--pretrained", str(out / "checkpoint"), "--data", "digits",
                 "--out", str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "64",
                 "--no-progress", "--precision", "fp32"]) == 0
    tuned = vitkit.load_pretrained(tmp_path / "ft" / "checkpoint")
    assert tuned.config.num_classes == 10 and tuned.config.depth == 1
    start = backbone.state_dict()["blocks.0.attn.qkv.weight"]
    assert not torch.equal(tuned.state_dict()["blocks.0.attn.qkv.weight"], start)
