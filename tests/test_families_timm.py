"""The ViT's descendants (DeiT, DeiT III, DINOv2 with and without registers, CLIP, SigLIP)
against timm: the presets have timm's parameter counts, and the same random weights give the
same logits (fp32, max |diff| <= 1e-4), read by name or from the tensor names alone, and again
after writing them back as a timm hub folder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from tests.conftest import TOLERANCE, logits, max_diff, random_timm
from vitkit.errors import CheckpointError
from vitkit.models import PRESETS, build_model, get_config, parameter_count
from vitkit.models.config import preset_family
from vitkit.weights import export_timm

timm = pytest.importorskip("timm")

# Small versions of each family (timm name, size, extra arguments for both libraries).
SMALL = dict(depth=2, embed_dim=64, num_heads=2)
FAMILY_CASES = {
    "deit": ("deit_tiny_patch16_224", 32, {}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", 32, {}),
    "deit3": ("deit3_small_patch16_224", 32, {}),
    "dinov2": ("vit_small_patch14_dinov2", 56, {}),
    "dinov2_reg4": ("vit_small_patch14_reg4_dinov2", 56, {}),
    "clip": ("vit_base_patch16_clip_224", 32, {}),
    "clip_quickgelu": ("vit_base_patch16_clip_quickgelu_224", 32, {}),
    "siglip_map": ("vit_base_patch16_siglip_224", 32, {}),
    "siglip_gap": ("vit_base_patch16_siglip_gap_224", 32, {}),
}
DESCENDANTS = sorted(n for n in PRESETS if preset_family(n) not in ("vit", "hybrid"))


def small_timm(name: str, size: int, **kwargs) -> torch.nn.Module:
    return random_timm(name, img_size=size, num_classes=5, **SMALL, **kwargs)


def test_every_descendant_preset_has_timms_parameter_count_and_names() -> None:
    assert len(DESCENDANTS) >= 16
    for name in DESCENDANTS:
        with torch.device("meta"):
            mine, theirs = build_model(get_config(name)), timm.create_model(name)
        assert set(mine.state_dict()) == set(theirs.state_dict()), name
        count = sum(p.numel() for p in theirs.parameters())
        assert sum(p.numel() for p in mine.parameters()) == count, name
        assert parameter_count(get_config(name)) == count, name  # the analytic count too


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_timm_weights_give_timms_logits_by_name_and_by_tensor_names(case, tmp_path) -> None:
    name, size, kwargs = FAMILY_CASES[case]
    source = small_timm(name, size, **kwargs)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    expected = logits(source, x)
    assert expected.std() > 0.05  # real logits, not a zero head's
    save_file(source.state_dict(), tmp_path / "timm.safetensors")

    named = vitkit.create_model(name, pretrained=tmp_path / "timm.safetensors", **SMALL,
                                mlp_dim=256)
    assert max_diff(logits(named, x), expected) <= TOLERANCE
    act = {"act_layer": named.config.act_layer} if named.config.act_layer != "gelu" else {}
    read = vitkit.create_model(None, pretrained=tmp_path / "timm.safetensors", num_heads=2,
                               **act)
    assert read.config.family == named.config.family
    assert max_diff(logits(read, x), expected) <= TOLERANCE

    export_timm(named, tmp_path / "back")  # a timm hub folder: config.json + model.safetensors
    back = timm.create_model(f"local-dir:{tmp_path / 'back'}", pretrained=True).eval()
    assert type(back) is type(source)
    assert max_diff(logits(back, x), expected) <= TOLERANCE


def test_dinov2_position_embeddings_follow_the_input_size_as_timms_do(tmp_path) -> None:
    """DINOv2 is trained at 518 and used at other sizes: E_pos is resampled to the input's
    grid (bicubic, antialiased) as timm's dynamic_img_size does."""
    source = small_timm("vit_small_patch14_reg4_dinov2", 56, dynamic_img_size=True)
    save_file(source.state_dict(), tmp_path / "timm.safetensors")
    model = vitkit.create_model(None, pretrained=tmp_path / "timm.safetensors", num_heads=2)
    x = torch.randn(2, 3, 98, 70)
    assert max_diff(logits(model, x), logits(source, x)) <= TOLERANCE


def test_a_checkpoint_of_another_family_is_refused_in_one_line(tmp_path) -> None:
    source = small_timm("deit_tiny_distilled_patch16_224", 32)
    save_file(source.state_dict(), tmp_path / "deit.safetensors")
    with pytest.raises(CheckpointError) as caught:
        vitkit.create_model("deit_tiny_patch16_224", pretrained=tmp_path / "deit.safetensors",
                            **SMALL, mlp_dim=256)
    assert "has a distillation token (DeiT), unlike the vit model" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


# (indices, return_prefix_tokens, norm, output_fmt, intermediates_only)
INTERMEDIATE_ARGS = [
    (None, False, False, "NCHW", False),
    (1, True, True, "NLC", False),
    ([0, -1], True, False, "NCHW", True),
    ([1], False, True, "NLC", True),
]


@pytest.mark.parametrize("case", ["dinov2_reg4", "clip", "siglip_map", "deit_distilled"])
def test_forward_intermediates_matches_timms(case, tmp_path) -> None:
    name, size, kwargs = FAMILY_CASES[case]
    source = small_timm(name, size, **kwargs)
    save_file(source.state_dict(), tmp_path / "timm.safetensors")
    model = vitkit.create_model(name, pretrained=tmp_path / "timm.safetensors", **SMALL,
                                mlp_dim=256)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(4))
    for indices, prefix, norm, fmt, only in INTERMEDIATE_ARGS:
        args = dict(indices=indices, return_prefix_tokens=prefix, norm=norm, output_fmt=fmt,
                    intermediates_only=only)
        with torch.no_grad():
            mine, theirs = model.forward_intermediates(x, **args), \
                source.forward_intermediates(x, **args)
        if not only:
            assert max_diff(mine[0], theirs[0]) <= TOLERANCE
            mine, theirs = mine[1], theirs[1]
        assert len(mine) == len(theirs) > 0
        for a, b in zip(mine, theirs, strict=True):
            pairs = zip(a, b, strict=True) if isinstance(b, tuple) else [(a, b)]
            for left, right in pairs:
                assert left.shape == right.shape
                assert max_diff(left, right) <= TOLERANCE
    grid = size // 14 if "dinov2" in name else size // 16
    if model.config.class_token:  # DINOv2's API: the last n blocks, normed, [class] token
        layers = model.get_intermediate_layers(x, n=2, reshape=True, return_class_token=True)
        with torch.no_grad():
            reference = source.forward_intermediates(x, indices=2, norm=True,
                                                     return_prefix_tokens=True,
                                                     intermediates_only=True)
        assert len(layers) == 2 and layers[0][0].shape == (2, 64, grid, grid)
        for (patches, cls), (ref_patches, ref_prefix) in zip(layers, reference, strict=True):
            assert max_diff(patches, ref_patches) <= TOLERANCE
            assert max_diff(cls, ref_prefix[:, 0]) <= TOLERANCE
