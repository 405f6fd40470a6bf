"""LoRA through PEFT: adapters on qkv, proj, fc1 and fc2 with the head trainable; the saved
checkpoint is merged (an ordinary model with the adapted model's logits), the training state
is not (a stopped-and-resumed run ends bitwise identical)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import vitkit
from tests.conftest import digits_subset, tiny_model
from vitkit.train import TrainRun, get_recipe, train
from vitkit.train.layer_decay import lr_scales
from vitkit.train.lora import add_lora, lora_parameter_count

pytest.importorskip("peft")

# Every source of randomness on, LoRA dropout included; 8 steps, 4 per epoch.
RECIPE = get_recipe("small-data", epochs=2, batch_size=16, warmup_epochs=0.5, accum_steps=2,
                    ema_decay=0.9, dropout=0.1, lora_rank=4, lora_alpha=8, lora_dropout=0.1)


def _run(out, recipe=RECIPE, val=True, **kwargs) -> TrainRun:
    model = tiny_model(drop_path_rate=recipe.drop_path, drop_rate=recipe.dropout)
    return TrainRun(model=model, train_set=digits_subset(64),
                    val_set=digits_subset(32, "test") if val else None, recipe=recipe,
                    out_dir=out, seed=3, progress=False, **kwargs)


def _state(out) -> dict:
    return torch.load(out / "state" / "last.pt", weights_only=True)


def test_trainable_parameters_are_what_lora_predicts_for_vit_b16():
    with torch.device("meta"):
        model = vitkit.create_model("vit_base_patch16_224", num_classes=10)
    add_lora(model, get_recipe("paper-finetune", lora_rank=8))
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    # per block r * (in + out) of qkv 768->2304, proj 768->768, fc1 768->3072, fc2 3072->768
    adapters = 12 * 8 * ((768 + 2304) + (768 + 768) + (768 + 3072) + (3072 + 768))
    assert adapters == 1_179_648 == lora_parameter_count(model, 8)
    assert sum(trainable.values()) == adapters + 768 * 10 + 10  # and the head
    assert {n for n in trainable if ".lora_" not in n} == {"head.weight", "head.bias"}
    assert not any(n.startswith("patch_embed") for n in trainable)  # its Conv `proj` untouched
    scales = lr_scales(model, 0.5)  # with layer decay, adapters take their block's scale
    assert scales["blocks.11.attn.qkv.lora_A.default.weight"] == 0.5
    assert scales["blocks.0.mlp.fc2.lora_B.default.weight"] == 0.5 ** 12


def test_merged_checkpoint_gives_the_adapted_models_logits(tmp_path):
    recipe = RECIPE.replace(ema=False, lr=0.01, lora_dropout=0.0, dropout=0.0)
    run = _run(tmp_path, recipe, val=False)
    assert train(run).finished
    adapted = run.model.eval()
    state = _state(tmp_path)["model"]
    assert state["blocks.0.attn.qkv.lora_B.default.weight"].abs().max() > 0  # it trained
    merged = vitkit.load_pretrained(tmp_path / "checkpoint")
    assert type(merged) is vitkit.VisionTransformer
    assert not any("lora" in name for name in merged.state_dict())
    assert not torch.equal(merged.blocks[0].attn.qkv.weight,
                           state["blocks.0.attn.qkv.base_layer.weight"])
    images = digits_subset(32, "test").images.float()
    images = (images / 255 - 0.5) / 0.25  # any input: the two models must agree on it
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(images), adapted(images), atol=1e-5, rtol=0)


def test_resume_with_lora_is_bitwise_identical(tmp_path):
    train(_run(tmp_path / "whole"))
    assert not train(_run(tmp_path / "split", stop_after=3)).finished
    assert train(_run(tmp_path / "split", resume=True)).finished
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "split")
    assert any(".lora_A." in name for name in a["model"])  # the state keeps the adapters
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"
    # The saved (merged) checkpoints hold the same tensors and metadata. Not compared as bytes:
    # safetensors writes its metadata map in no fixed order.
    from safetensors import safe_open

    files = [tmp_path / run / "checkpoint" / "model.safetensors" for run in ("whole", "split")]
    opened = [safe_open(str(f), "pt") for f in files]
    assert opened[0].metadata() == opened[1].metadata()
    assert set(opened[0].keys()) == set(opened[1].keys())
    assert all(torch.equal(opened[0].get_tensor(k), opened[1].get_tensor(k))
               for k in opened[0].keys())


def test_resuming_needs_the_runs_lora_rank(tmp_path):
    train(_run(tmp_path, stop_after=1))
    with pytest.raises(ValueError, match="lora_rank=4; resume it with lora_rank=4"):
        train(_run(tmp_path, RECIPE.replace(lora_rank=0), resume=True))


def test_missing_peft_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    with pytest.raises(ValueError, match=r"LoRA \(lora_rank=\) needs peft.*pip install.*lora"):
        add_lora(tiny_model(), RECIPE)


def test_cli_lora_run_resumes_without_repeating_the_flags_and_saves_an_ordinary_checkpoint(
        tmp_path):
    from vitkit.cli.main import main

    args = ["train", "--data", "digits", "--out", str(tmp_path), "--model",
            "vit_digits_patch2_8", "--epochs", "1", "--batch-size", "256", "--no-progress",
            "--val-split", "0.1"]
    assert main([*args, "--lora-rank", "2", "--lora-alpha", "4", "--stop-after", "2"]) == 3
    assert main([*args, "--resume"]) == 0  # the run's LoRA comes from its recipe.json
    saved = json.loads((tmp_path / "recipe.json").read_text())
    assert saved["lora_rank"] == 2 and saved["lora_alpha"] == 4.0
    assert any(".lora_A." in name for name in _state(tmp_path)["model"])
    model = vitkit.load_pretrained(tmp_path / "checkpoint")
    assert not any("lora" in name for name in model.state_dict())
    assert "test_top1" in json.loads((tmp_path / "metrics.json").read_text())
