"""Parity with timm and transformers: the same random weights give the same logits (fp32,
max |diff| <= 1e-4) after loading into vitkit, and again after exporting back."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from tests.conftest import TOLERANCE, logits, max_diff, random_hf, random_timm, randomise
from vitkit.weights import export_hf, export_timm

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

# (timm name, extra arguments): the pooling variants run at 64x64 to keep the tests quick.
TIMM_CASES = {
    "tiny16": ("vit_tiny_patch16_224", {}),
    "small32": ("vit_small_patch32_224", {}),
    "base16": ("vit_base_patch16_224", {}),
    "avg_pool_fc_norm": ("vit_tiny_patch16_224", {"global_pool": "avg", "img_size": 64}),
    "avg_pool_no_class_token": ("vit_tiny_patch16_224", {
        "global_pool": "avg", "class_token": False, "fc_norm": False, "img_size": 64}),
}


@pytest.mark.parametrize("case", list(TIMM_CASES))
def test_timm_weights_give_timms_logits_and_export_back(case, tmp_path) -> None:
    name, kwargs = TIMM_CASES[case]
    source = random_timm(name, num_classes=7, **kwargs)
    size = kwargs.get("img_size", 224)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    expected = logits(source, x)
    assert expected.std() > 0.1  # real logits, not zeros from a zero head
    save_file(source.state_dict(), tmp_path / "timm.safetensors")

    model = vitkit.create_model(name, pretrained=tmp_path / "timm.safetensors")
    assert model.config.num_classes == 7 and model.config.global_pool == kwargs.get(
        "global_pool", "token")
    assert max_diff(logits(model, x), expected) <= TOLERANCE

    export_timm(model, tmp_path / "back.safetensors")
    with torch.device("meta"):
        back = timm.create_model(name, num_classes=7, **kwargs)
    back = back.to_empty(device="cpu")
    back.load_state_dict(timm.models.load_state_dict(str(tmp_path / "back.safetensors")))
    assert max_diff(logits(back.eval(), x), expected) <= TOLERANCE


def test_timm_pretrained_cfg_overlay_reads_the_export(tmp_path) -> None:
    model = vitkit.create_model("vit_tiny_patch16_224", num_classes=5, depth=2)
    randomise(model).eval()
    export_timm(model, tmp_path / "mine.safetensors")
    # num_classes in the overlay too, or timm drops a head whose size differs from 1000.
    overlay = dict(file=str(tmp_path / "mine.safetensors"), num_classes=5)
    loaded = timm.create_model(
        "vit_tiny_patch16_224", pretrained=True, num_classes=5, depth=2,
        pretrained_cfg_overlay=overlay,
    ).eval()
    x = torch.randn(2, 3, 224, 224)
    assert max_diff(logits(loaded, x), logits(model, x)) <= TOLERANCE


def test_a_wrong_mapping_would_fail_the_tolerance(tmp_path) -> None:
    """The parity check can fail: swapping query and key rows moves the logits far beyond 1e-4."""
    source = random_timm("vit_tiny_patch16_224", num_classes=7, depth=2)
    state = dict(source.state_dict())
    qkv = state["blocks.0.attn.qkv.weight"]
    state["blocks.0.attn.qkv.weight"] = torch.cat([qkv[192:384], qkv[:192], qkv[384:]])
    save_file(state, tmp_path / "swapped.safetensors")
    model = vitkit.create_model(None, pretrained=tmp_path / "swapped.safetensors")
    x = torch.randn(2, 3, 224, 224)
    assert max_diff(logits(model, x), logits(source, x)) > 100 * TOLERANCE


# (HF config, vitkit preset name or None to read config.json)
HF_CASES = {
    "tiny16": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                   intermediate_size=768, image_size=224, patch_size=16),
    "small32": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                    intermediate_size=1536, image_size=224, patch_size=32),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_folder_gives_transformers_logits_and_exports_back(case, tmp_path) -> None:
    source = random_hf(transformers.ViTForImageClassification, num_labels=4,
                       id2label={0: "ant", 1: "bee", 2: "cat", 3: "dog"},
                       label2id={"ant": 0, "bee": 1, "cat": 2, "dog": 3}, **HF_CASES[case])
    source.save_pretrained(tmp_path / "hf")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    expected = logits(source, x)
    assert expected.std() > 0.1

    model = vitkit.create_model(None, pretrained=tmp_path / "hf")
    assert model.config.layer_norm_eps == 1e-12  # HF's default, read from config.json
    assert model.meta.class_names == ["ant", "bee", "cat", "dog"]
    assert max_diff(logits(model, x), expected) <= TOLERANCE

    export_hf(model, tmp_path / "back")
    back = transformers.ViTForImageClassification.from_pretrained(tmp_path / "back").eval()
    assert back.config.id2label[2] == "cat"
    assert max_diff(logits(back, x), expected) <= TOLERANCE


def test_representation_layer_matches_hf_pooler(tmp_path) -> None:
    """HF's ViTModel pooler (dense + tanh on the [class] token) is the paper's pre-logits
    layer; a head on top of it gives the reference logits."""
    config = dict(HF_CASES["tiny16"], num_hidden_layers=4, pooler_output_size=96)
    source = random_hf(transformers.ViTModel, **config)
    generator = torch.Generator().manual_seed(3)
    head_w, head_b = torch.randn(5, 96, generator=generator), torch.randn(5, generator=generator)
    source.save_pretrained(tmp_path / "hf")
    state = {f"vit.{k}": v for k, v in source.state_dict().items()}
    state.update({"classifier.weight": head_w, "classifier.bias": head_b})
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "hf" / "model.safetensors")
    x = torch.randn(2, 3, 224, 224, generator=generator)
    with torch.no_grad():
        pooled = source(pixel_values=x).pooler_output
    expected = torch.nn.functional.linear(pooled, head_w, head_b)

    model = vitkit.create_model(None, pretrained=tmp_path / "hf")
    assert model.config.representation_size == 96 and model.config.num_classes == 5
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
    assert max_diff(features, pooled) <= TOLERANCE
    assert max_diff(logits(model, x), expected) <= TOLERANCE

    export_hf(model, tmp_path / "back")  # pooler and head both survive the round trip
    again = vitkit.create_model(None, pretrained=tmp_path / "back")
    assert max_diff(logits(again, x), expected) <= TOLERANCE
    hf_back = transformers.ViTModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert max_diff(hf_back(pixel_values=x).pooler_output, pooled) <= TOLERANCE


def test_transformers_in_memory_names_without_config_json(tmp_path) -> None:
    """torch.save(model.state_dict()) of transformers >= 5 uses its module names (q_proj, ...)
    rather than the hub's; both map, and HF's LayerNorm eps 1e-12 is assumed without a config."""
    source = random_hf(transformers.ViTForImageClassification, hidden_size=192,
                       num_hidden_layers=2, num_attention_heads=3, intermediate_size=768,
                       image_size=32, patch_size=16, num_labels=3)
    torch.save(source.state_dict(), tmp_path / "pytorch_model.bin")
    model = vitkit.create_model(None, pretrained=tmp_path / "pytorch_model.bin")
    assert model.config.num_heads == 3 and model.config.layer_norm_eps == 1e-12
    x = torch.randn(2, 3, 32, 32)
    assert max_diff(logits(model, x), logits(source, x)) <= TOLERANCE
