"""Layer-wise learning-rate decay: every parameter's scale R^(L+1-depth), written out for
ViT-B/16 and a register model; tokens and embeddings at depth 0, heads on top, frozen
parameters left out without moving anyone else's scale."""

from __future__ import annotations

import json

import pytest
import torch

import vitkit
from tests.conftest import tiny_model
from vitkit.train import get_recipe
from vitkit.train.layer_decay import lr_scales, parameter_depths
from vitkit.train.optim import build_optimizer, param_groups, set_lr

R = 0.75
VIT_BLOCK = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
             "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
             "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
TIMM_REG_BLOCK = [*VIT_BLOCK[:6], "ls1.gamma", *VIT_BLOCK[6:], "ls2.gamma"]


def _table(first: list[str], block: list[str], last: list[str], depth: int = 12
           ) -> dict[str, int]:
    """The expected exponent of R for each parameter: L + 1 - its depth."""
    table = {name: depth + 1 for name in first}
    table |= {f"blocks.{i}.{name}": depth - i for i in range(depth) for name in block}
    return table | {name: 0 for name in last}


# ViT-B/16 (vitkit): 12 blocks; the embedding at R^13, block i at R^(12-i), the top at R^0.
VIT_B16 = _table(["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"],
                 VIT_BLOCK, ["norm.weight", "norm.bias", "head.weight", "head.bias"])
# timm's DINOv2 ViT-S/14 with 4 register tokens and layer scale.
TIMM_REG4 = _table(["cls_token", "reg_token", "pos_embed", "patch_embed.proj.weight",
                    "patch_embed.proj.bias"], TIMM_REG_BLOCK,
                   ["norm.weight", "norm.bias", "head.weight", "head.bias"])


def _meta(build):
    with torch.device("meta"):
        return build()


def _timm(name: str, **kwargs) -> torch.nn.Module:
    import timm

    return _meta(lambda: timm.create_model(name, pretrained=False, **kwargs))


def _vit_b16() -> torch.nn.Module:
    return _meta(lambda: vitkit.create_model("vit_base_patch16_224", num_classes=10))


@pytest.mark.parametrize("build, table", [(_vit_b16, VIT_B16),
                                          (lambda: _timm("vit_small_patch14_reg4_dinov2",
                                                         num_classes=10), TIMM_REG4)],
                         ids=["vit_base_patch16_224", "vit_small_patch14_reg4_dinov2"])
def test_every_parameter_has_its_scale(build, table):
    model = build()
    scales = lr_scales(model, R)
    assert set(scales) == {name for name, _ in model.named_parameters()} == set(table)
    for name, exponent in table.items():
        assert scales[name] == pytest.approx(R ** exponent), name
    assert scales["cls_token"] == pytest.approx(R ** 13) and scales["head.weight"] == 1.0


def test_groups_hold_each_parameter_once_with_its_scale_and_weight_decay():
    model = _timm("vit_small_patch14_reg4_dinov2", num_classes=10)
    groups = param_groups(model, 0.05, R)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for group in groups for p in group["params"]]
    assert sorted(seen) == sorted(TIMM_REG4)  # each exactly once
    assert len(groups) == 2 * 14  # 14 depths, with and without weight decay
    for group in groups:
        for param in group["params"]:
            name = names[id(param)]
            assert group["lr_scale"] == pytest.approx(R ** TIMM_REG4[name]), name
            no_decay = name in ("cls_token", "reg_token", "pos_embed") or param.ndim == 1
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), name


def test_distillation_token_and_attention_pool_and_norm_pre_by_position():
    depths, count = parameter_depths(_timm("deit_tiny_distilled_patch16_224"))
    assert count == 12 and depths["dist_token"] == 0 and depths["head_dist.weight"] == 13
    depths, _ = parameter_depths(_timm("vit_base_patch16_siglip_224", num_classes=10))
    pool = [name for name in depths if name.startswith("attn_pool.")]
    assert pool and all(depths[name] == 13 for name in pool)
    depths, _ = parameter_depths(_timm("vit_base_patch16_clip_224"))
    assert depths["norm_pre.weight"] == 0 and depths["blocks.0.attn.qkv.weight"] == 1


def test_a_hybrids_backbone_is_embedding_though_it_has_blocks_of_its_own():
    depths, count = parameter_depths(_meta(lambda: vitkit.create_model("vit_base_r50_s16_224")))
    backbone = [name for name in depths if name.startswith("patch_embed.backbone.")]
    assert count == 12 and any(".blocks." in name for name in backbone)
    assert all(depths[name] == 0 for name in backbone)


def test_frozen_parameters_are_left_out_and_shift_no_scale():
    model = _vit_b16()
    model.patch_embed.requires_grad_(False)
    for block in model.blocks[:6]:
        block.requires_grad_(False)
    scales = lr_scales(model, R)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and not frozen & set(scales)
    assert scales == pytest.approx({n: R ** e for n, e in VIT_B16.items() if n not in frozen})
    grouped = {id(p) for group in param_groups(model, 0.05, R) for p in group["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}


def test_set_lr_multiplies_each_groups_scale():
    model = tiny_model()  # 2 blocks: scales R^3, R^2, R, 1
    optimizer = build_optimizer(model, get_recipe("small-data", layer_decay=0.5))
    set_lr(optimizer, 0.1)
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx(
        [0.1 * 0.5 ** 3, 0.1 * 0.5 ** 2, 0.1 * 0.5, 0.1])
    plain = build_optimizer(model, get_recipe("small-data"))
    assert len(plain.param_groups) == 2 and all(g["lr_scale"] == 1.0 for g in plain.param_groups)


def test_a_model_without_blocks_names_the_argument():
    with pytest.raises(ValueError, match="layer_decay=1"):
        build_optimizer(vitkit.create_model("resnet20", num_classes=10),
                        get_recipe("small-data", layer_decay=0.7))
    with pytest.raises(ValueError, match="layer_decay must be in"):
        get_recipe("small-data", layer_decay=1.5)


def test_cli_layer_decay_trains_and_is_saved_in_the_recipe(tmp_path):
    from vitkit.cli.main import main

    code = main(["train", "--data", "digits", "--out", str(tmp_path),
                 "--model", "vit_digits_patch2_8", "--epochs", "1", "--batch-size", "128",
                 "--layer-decay", "0.7", "--no-progress", "--stop-after", "2"])
    assert code == 3  # stopped before the end, as asked
    assert json.loads((tmp_path / "recipe.json").read_text())["layer_decay"] == 0.7
    saved = torch.load(tmp_path / "state" / "last.pt", weights_only=True)
    scales = sorted({g["lr_scale"] for g in saved["optimizer"]["param_groups"]})
    assert len(scales) > 2 and scales[-1] == 1.0 and scales[0] < 0.7


def test_resuming_needs_the_runs_layer_decay(tmp_path):
    from tests.conftest import digits_subset
    from vitkit.train import TrainRun, train

    def run(decay, **kwargs):
        recipe = get_recipe("small-data", epochs=1, batch_size=16, layer_decay=decay)
        return TrainRun(model=tiny_model(), train_set=digits_subset(64), recipe=recipe,
                        out_dir=tmp_path, progress=False, **kwargs)

    train(run(0.7, stop_after=1))
    with pytest.raises(ValueError, match="layer_decay=0.7; resume it with layer_decay=0.7"):
        train(run(1.0, resume=True))
    assert train(run(0.7, resume=True)).finished
