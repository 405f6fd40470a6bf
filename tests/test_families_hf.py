"""The ViT's descendants against transformers: DeiTForImageClassificationWithTeacher,
Dinov2Model, Dinov2WithRegistersModel, CLIPVisionModel and SiglipVisionModel with random
weights, saved by `save_pretrained`, give the same logits or pooled features (fp32, max |diff|
<= 1e-4) in vitkit, and again after `vitkit convert --to hf` writes them back."""

from __future__ import annotations

import pytest
import torch

import vitkit
from tests.conftest import TOLERANCE, max_diff, randomise
from vitkit.cli.main import main

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2)
# case -> (model class, config class, config, image size, vitkit family)
HF_CASES = {
    "deit_distilled": ("DeiTForImageClassificationWithTeacher", "DeiTConfig",
                       dict(intermediate_size=128, image_size=32, patch_size=16, num_labels=3),
                       32, "deit-distilled"),
    "dinov2": ("Dinov2Model", "Dinov2Config", dict(image_size=56, patch_size=14), 56, "dinov2"),
    "dinov2_registers": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
                         dict(image_size=56, patch_size=14, num_register_tokens=4), 56,
                         "dinov2-reg"),
    "clip": ("CLIPVisionModel", "CLIPVisionConfig",
             dict(intermediate_size=128, image_size=32, patch_size=16), 32, "clip"),
    "siglip": ("SiglipVisionModel", "SiglipVisionConfig",
               dict(intermediate_size=128, image_size=32, patch_size=16), 32, "siglip"),
}


def random_family(case: str) -> torch.nn.Module:
    model_name, config_name, config, _, _ = HF_CASES[case]
    options = dict(SMALL, **config)
    with torch.device("meta"):
        model = getattr(transformers, model_name)(getattr(transformers, config_name)(**options))
    model = model.to_empty(device="cpu")
    for name, buffer in model.named_buffers():  # to_empty leaves buffers uninitialised
        if name.endswith("position_ids"):
            buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    return randomise(model).eval()


def reference(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' logits, or its pooled features (pooler_output) for a headless tower."""
    with torch.no_grad():
        out = model(pixel_values=x)
    return out.logits if hasattr(out, "logits") else out.pooler_output


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_folder_gives_transformers_outputs_and_converts_back(case, tmp_path) -> None:
    source = random_family(case)
    source.save_pretrained(tmp_path / "hf")
    size, family = HF_CASES[case][3], HF_CASES[case][4]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    expected = reference(source, x)
    assert expected.std() > 0.05

    model = vitkit.create_model(None, pretrained=tmp_path / "hf")
    assert model.config.family == family
    with torch.no_grad():
        assert max_diff(model(x), expected) <= TOLERANCE

    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back"), "--to", "hf"]) == 0
    back = type(source).from_pretrained(tmp_path / "back").eval()
    assert max_diff(reference(back, x), expected) <= TOLERANCE


def test_dinov2_registers_tokens_in_transformers_order(tmp_path) -> None:
    """Every output token, not only the pooled one: [class], 4 registers, then the patches."""
    source = random_family("dinov2_registers")
    source.save_pretrained(tmp_path / "hf")
    model = vitkit.create_model(None, pretrained=tmp_path / "hf")
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        expected = source(pixel_values=x).last_hidden_state
        assert max_diff(model.forward_features(x), expected) <= TOLERANCE


def test_in_memory_names_of_transformers_5_read_without_config(tmp_path) -> None:
    """torch.save of a live DINOv2 uses transformers 5's module names (q_proj, ...)."""
    source = random_family("dinov2")
    torch.save(source.state_dict(), tmp_path / "pytorch_model.bin")
    model = vitkit.create_model(None, pretrained=tmp_path / "pytorch_model.bin", num_heads=2)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        assert max_diff(model(x), reference(source, x)) <= TOLERANCE


def test_damaged_or_other_family_checkpoints_are_one_line_errors(tmp_path) -> None:
    from safetensors.torch import save_file

    from vitkit.errors import CheckpointError

    source = random_family("dinov2_registers")
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["embeddings.position_embeddings"] = torch.zeros(5)  # damaged: one dimension
    save_file(state, tmp_path / "damaged.safetensors")
    with pytest.raises(CheckpointError, match="do not fit together") as caught:
        vitkit.create_model(None, pretrained=tmp_path / "damaged.safetensors", num_heads=2)
    assert len(str(caught.value).splitlines()) == 1
    clip = random_family("clip")
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()},
              tmp_path / "clip.safetensors")
    with pytest.raises(CheckpointError, match="LayerNorm before the blocks"):
        vitkit.create_model("vit_base_patch16_siglip_224", pretrained=tmp_path / "clip.safetensors",
                            embed_dim=64, depth=2, num_heads=2, mlp_dim=128, img_size=32)


def test_clip_two_tower_folder_gives_the_image_embeddings(tmp_path) -> None:
    """A whole CLIPModel (text and image towers, as openai/clip-vit-* on the hub): vitkit
    takes the image tower, with visual_projection as a bias-free head, giving image_embeds."""
    vision = dict(SMALL, intermediate_size=128, image_size=32, patch_size=16)
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=24)
    with torch.device("meta"):
        source = transformers.CLIPModel(config)
    source = source.to_empty(device="cpu")
    for name, buffer in source.named_buffers():
        if name.endswith("position_ids"):
            buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    randomise(source).eval().save_pretrained(tmp_path / "clip")
    model = vitkit.create_model(None, pretrained=tmp_path / "clip")
    assert model.config.family == "clip" and model.config.num_classes == 24
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source.visual_projection(source.vision_model(pixel_values=x).pooler_output)
        assert max_diff(model(x), expected) <= TOLERANCE
