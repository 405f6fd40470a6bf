"""Fitting a checkpoint to the model asked for: half-precision files, the paper's fine-tuning
head (pre-logits dropped, zero head), the checkpoint's own tensors left alone."""

from __future__ import annotations

import logging

import torch
from safetensors.torch import save_file

import vitkit
from tests.conftest import logits, max_diff, tiny_vit
from vitkit.weights import read_checkpoint


def test_a_half_precision_checkpoint_loads_as_float32(tmp_path) -> None:
    model = tiny_vit()
    save_file({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "h.safetensors")
    loaded = vitkit.create_model(None, pretrained=tmp_path / "h.safetensors")
    assert all(p.dtype == torch.float32 and p.requires_grad for p in loaded.parameters())
    x = torch.randn(2, 3, 32, 32)
    assert max_diff(logits(loaded, x), logits(model, x)) < 5e-3  # fp16 rounding of weights


def test_fine_tuning_drops_the_pre_logits_layer_and_zeroes_the_head(tmp_path, caplog) -> None:
    vitkit.save_pretrained(tiny_vit(representation_size=16), tmp_path / "rep")
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        model = vitkit.create_model(None, pretrained=tmp_path / "rep", num_classes=5)
    assert model.config.representation_size is None and not hasattr(model.pre_logits, "fc")
    assert model.head.weight.shape == (5, 192) and torch.count_nonzero(model.head.weight) == 0
    assert "dropped the checkpoint's representation layer" in caplog.text
    kept = vitkit.create_model(None, pretrained=tmp_path / "rep", num_classes=5,
                               representation_size=16)
    assert kept.pre_logits.fc.weight.abs().sum() > 0


def test_models_from_one_checkpoint_object_do_not_share_tensors(tmp_path) -> None:
    vitkit.save_pretrained(tiny_vit(), tmp_path / "m")
    checkpoint = read_checkpoint(tmp_path / "m")
    first = vitkit.weights.create_pretrained(None, checkpoint, {})
    second = vitkit.weights.create_pretrained(None, checkpoint, {})
    with torch.no_grad():
        first.pos_embed.zero_()
    assert second.pos_embed.abs().sum() > 0
    assert checkpoint.state_dict["pos_embed"].abs().sum() > 0


def test_a_vitkit_safetensors_file_alone_keeps_names_and_preprocessing(tmp_path) -> None:
    vitkit.save_pretrained(tiny_vit(), tmp_path / "m", class_names=["x", "y", "z"],
                           preprocessing={"mean": [0.1, 0.2, 0.3], "std": [1.0, 1.0, 1.0]})
    model = vitkit.create_model(None, pretrained=tmp_path / "m" / "model.safetensors")
    assert model.meta.class_names == ["x", "y", "z"]
    assert model.meta.name == "vit_tiny_patch16_224 (img_size=32, depth=2)"
    assert model.meta.preprocessing.mean == (0.1, 0.2, 0.3) and model.config.depth == 2
