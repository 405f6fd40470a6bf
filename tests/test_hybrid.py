"""The hybrid ViT (paper Section 3.1): timm's R50+ViT weights give timm's logits (fp32, max
|diff| <= 1e-4), the presets have timm's parameter counts, and vitkit's checkpoints of a
hybrid round-trip."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from tests.conftest import TOLERANCE, logits, max_diff, randomise
from vitkit.models import HybridConfig, HybridVisionTransformer, get_config

timm = pytest.importorskip("timm")


def random_timm_hybrid(layers, img_size, num_classes=7, **vit) -> torch.nn.Module:
    """A small timm hybrid: timm's R50 helper with `layers` stages under a small ViT."""
    from timm.models.vision_transformer_hybrid import (
        _create_vision_transformer_hybrid,
        _resnetv2,
    )

    with torch.device("meta"):
        backbone = _resnetv2(layers=layers)
        model = _create_vision_transformer_hybrid(
            "vit_base_r50_s16_224", backbone=backbone, img_size=img_size,
            num_classes=num_classes, **vit)
    return randomise(model.to_empty(device="cpu")).eval()


@pytest.mark.parametrize("name", ["vit_base_r50_s16_224", "vit_base_r50_s16_384"])
def test_presets_have_timms_parameter_count_and_names(name) -> None:
    with torch.device("meta"):
        ours = vitkit.create_model(name)
        theirs = timm.create_model(name)
    assert isinstance(ours, HybridVisionTransformer)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes


def test_r50_stem_gives_timms_logits_and_round_trips(tmp_path) -> None:
    """The full R50 (3, 4, 9) under a 1-block ViT at 64x64: a 4x4 grid of 1x1 patches."""
    source = random_timm_hybrid((3, 4, 9), 64, embed_dim=96, depth=1, num_heads=3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = logits(source, x)
    assert expected.std() > 0.1
    save_file(source.state_dict(), tmp_path / "timm.safetensors")

    model = vitkit.create_model(None, pretrained=tmp_path / "timm.safetensors", num_heads=3)
    assert isinstance(model, HybridVisionTransformer)
    assert model.config.resnet_layers == (3, 4, 9) and model.config.patch_size == 16
    assert model.config.num_patches == 16
    assert max_diff(logits(model, x), expected) <= TOLERANCE

    vitkit.save_pretrained(model, tmp_path / "mine", class_names=list("abcdefg"))
    again = vitkit.load_pretrained(tmp_path / "mine")
    assert isinstance(again, HybridVisionTransformer) and again.meta.class_names[2] == "c"
    assert max_diff(logits(again, x), expected) <= TOLERANCE
    again = vitkit.create_model(None, pretrained=tmp_path / "mine")
    assert max_diff(logits(again, x), expected) <= TOLERANCE


def test_preset_name_loads_timm_weights_and_odd_sizes_pad_like_timm(tmp_path) -> None:
    """`create_model(preset, pretrained=timm file)`, at an image size whose feature maps are odd
    (48 -> 24 -> 12 -> 6 -> 3), where TF 'SAME' padding is asymmetric."""
    source = random_timm_hybrid((1, 1, 1), 48, embed_dim=768, depth=1, num_heads=12,
                                num_classes=4)
    save_file(source.state_dict(), tmp_path / "timm.safetensors")
    model = vitkit.create_model("vit_base_r50_s16_224", pretrained=tmp_path / "timm.safetensors",
                                resnet_layers=(1, 1, 1), depth=1, img_size=48)
    assert model.config.num_classes == 4 and model.config.grid_size == (3, 3)
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    assert max_diff(logits(model, x), logits(source, x)) <= TOLERANCE


def test_a_wrong_weight_standardisation_would_fail_the_tolerance(tmp_path) -> None:
    source = random_timm_hybrid((1, 1), 32, embed_dim=64, depth=1, num_heads=2)
    save_file(source.state_dict(), tmp_path / "timm.safetensors")
    model = vitkit.create_model(None, pretrained=tmp_path / "timm.safetensors", num_heads=2)
    x = torch.randn(2, 3, 32, 32)
    assert max_diff(logits(model, x), logits(source, x)) <= TOLERANCE
    from vitkit.models import hybrid

    original = hybrid.WS_EPS
    try:
        hybrid.WS_EPS = 1e-1  # a different epsilon in the standardisation
        assert max_diff(logits(model, x), logits(source, x)) > 100 * TOLERANCE
    finally:
        hybrid.WS_EPS = original


def test_hybrid_config_derives_the_patch_size_and_checks_it() -> None:
    assert HybridConfig(resnet_layers=(2, 2), img_size=32).patch_size == 8
    assert get_config("vit_base_r50_s16_384").feature_dim == 1024
    with pytest.raises(ValueError, match="stride-8 patches"):
        HybridConfig(resnet_layers=(2, 2), patch_size=16, img_size=32)
    with pytest.raises(ValueError, match="multiple of 32"):
        HybridConfig(resnet_width=48)


def test_cifar_hybrid_trains_a_step() -> None:
    torch.manual_seed(0)
    model = vitkit.create_model("vit_cifar_r14_s8_32")
    torch.nn.init.normal_(model.head.weight)  # the zero head would stop every gradient
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.patch_embed.backbone.stem.conv.weight.grad.abs().sum() > 0


def test_checkpoints_without_an_architecture_still_load_as_vits(tmp_path) -> None:
    """Checkpoints saved before the 'architecture' field dispatched anything hold plain ViTs."""
    import json

    model = randomise(vitkit.create_model("vit_digits_patch2_8", depth=1)).eval()
    folder = vitkit.save_pretrained(model, tmp_path / "old")
    document = json.loads((folder / "config.json").read_text())
    assert document["architecture"] == "VisionTransformer"
    del document["architecture"]
    (folder / "config.json").write_text(json.dumps(document))
    x = torch.randn(2, 1, 8, 8)
    for loaded in (vitkit.load_pretrained(folder), vitkit.create_model(None, pretrained=folder)):
        assert type(loaded) is vitkit.VisionTransformer
        assert max_diff(logits(loaded, x), logits(model, x)) == 0


def test_an_unknown_architecture_is_a_clear_error(tmp_path) -> None:
    import json

    from vitkit.errors import CheckpointError

    folder = vitkit.save_pretrained(vitkit.create_model("vit_digits_patch2_8", depth=1),
                                    tmp_path / "new")
    document = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**document, "architecture": "Mamba"}))
    with pytest.raises(CheckpointError, match="unknown architecture 'Mamba'"):
        vitkit.load_pretrained(folder)
    with pytest.raises(CheckpointError, match="unknown architecture 'Mamba'"):
        vitkit.create_model(None, pretrained=folder)


def test_a_hybrid_exports_to_timm_and_back(tmp_path, capsys) -> None:
    from vitkit.cli.main import main
    from vitkit.weights import export_timm

    source = random_timm_hybrid((1, 1), 32, embed_dim=64, depth=1, num_heads=2)
    save_file(source.state_dict(), tmp_path / "timm.safetensors")
    model = vitkit.create_model(None, pretrained=tmp_path / "timm.safetensors", num_heads=2)
    x = torch.randn(2, 3, 32, 32)
    expected = logits(source, x)
    export_timm(model, tmp_path / "back.safetensors")  # timm's names: loads into timm as is
    source.load_state_dict(timm.models.load_state_dict(str(tmp_path / "back.safetensors")))
    assert max_diff(logits(source, x), expected) <= TOLERANCE
    export_timm(model, tmp_path / "folder")  # config.json without a raw-pixel patch size
    again = vitkit.create_model(None, pretrained=tmp_path / "folder", num_heads=2)
    assert max_diff(logits(again, x), expected) <= TOLERANCE

    vitkit.save_pretrained(model, tmp_path / "mine")
    code = main(["convert", str(tmp_path / "mine"), str(tmp_path / "hf"), "--to", "hf"])
    assert code == 2
    assert "can be written only as --to vitkit or timm" in capsys.readouterr().err
