"""The ViT of the paper: shapes, parameter counts, Eq. (1) by hand, resampling, pooling, errors."""

from __future__ import annotations

import pytest
import torch

import vitkit
from tests.conftest import randomise
from vitkit.models import VisionTransformer, ViTConfig, get_config, resample_pos_embed

PARAMETER_COUNTS = {
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    "vit_base_patch16_224": 86_567_656,
    "vit_base_patch32_224": 88_224_232,
    "vit_large_patch16_224": 304_326_632,
    "vit_huge_patch14_224": 632_045_800,
}


def tiny_config(**overrides) -> ViTConfig:
    base = dict(img_size=8, patch_size=4, in_chans=3, num_classes=5, embed_dim=12, depth=2,
                num_heads=3, mlp_dim=24)
    base.update(overrides)
    return ViTConfig(**base)



@pytest.mark.parametrize("name,expected", sorted(PARAMETER_COUNTS.items()))
def test_parameter_counts_match_the_paper(name: str, expected: int) -> None:
    with torch.device("meta"):
        model = vitkit.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_table1_sizes() -> None:
    for name, (dim, depth, heads, mlp) in {
        "vit_base_patch16_224": (768, 12, 12, 3072),
        "vit_large_patch16_224": (1024, 24, 16, 4096),
        "vit_huge_patch14_224": (1280, 32, 16, 5120),
        "vit_tiny_patch16_224": (192, 12, 3, 768),
        "vit_small_patch16_224": (384, 12, 6, 1536),
    }.items():
        config = get_config(name)
        assert (config.embed_dim, config.depth, config.num_heads, config.mlp_dim) == (
            dim, depth, heads, mlp)


@pytest.mark.parametrize("name", sorted(vitkit.models.PRESETS))  # the ViTs and hybrids
def test_every_preset_gives_logits_and_tokens(name: str) -> None:
    # One block is enough for shapes; the depth does not change them.
    model = vitkit.create_model(name, depth=1, num_classes=7).eval()
    config = model.config
    x = torch.randn(2, config.in_chans, *config.img_size)
    with torch.no_grad():
        tokens = model.forward_features(x)
        logits = model.head(model.forward_head(tokens, pre_logits=True))
    assert tokens.shape == (2, config.num_prefix_tokens + config.num_patches, config.embed_dim)
    assert logits.shape == (2, 7)


def test_expected_preset_names_exist() -> None:
    names = set(vitkit.list_models())
    for size in ("tiny", "small", "base", "large"):
        for patch in (16, 32):
            for res in (224, 384):
                assert f"vit_{size}_patch{patch}_{res}" in names
    assert {"vit_small_patch8_224", "vit_base_patch8_224", "vit_huge_patch14_224"} <= names


def test_eq1_embedding_matches_a_hand_computation() -> None:
    config = tiny_config(img_size=(4, 6), patch_size=2, embed_dim=5, num_heads=1, depth=1)
    model = randomise(VisionTransformer(config))
    images = torch.randn(2, 3, 4, 6)
    z0 = model.embed(images)

    weight = model.patch_embed.proj.weight.reshape(5, -1)  # E: (D, C*P*P)
    bias = model.patch_embed.proj.bias
    expected_rows = []
    for b in range(2):
        rows = [model.cls_token[0, 0]]
        for i in range(2):  # patch rows, top to bottom
            for j in range(3):  # patch columns, left to right
                patch = images[b, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]  # (C, P, P)
                rows.append(weight @ patch.reshape(-1) + bias)
        expected_rows.append(torch.stack(rows) + model.pos_embed[0])
    expected = torch.stack(expected_rows)
    assert z0.shape == (2, 7, 5)
    torch.testing.assert_close(z0, expected, rtol=1e-5, atol=1e-5)


def test_encoder_block_is_eqs_2_and_3() -> None:
    model = randomise(VisionTransformer(tiny_config(depth=1))).eval()
    block = model.blocks[0]
    z = torch.randn(2, 5, 12)
    # MSA written out: per-head softmax(q k^T / sqrt(d)) v, heads concatenated, projected.
    h = block.norm1(z)
    q, k, v = block.attn.qkv(h).chunk(3, dim=-1)
    heads = []
    for head in range(3):
        sl = slice(4 * head, 4 * head + 4)
        weights = (q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0).softmax(-1)
        heads.append(weights @ v[..., sl])
    z_prime = block.attn.proj(torch.cat(heads, -1)) + z
    hidden = torch.nn.functional.gelu(block.mlp.fc1(block.norm2(z_prime)))
    expected = block.mlp.fc2(hidden) + z_prime
    out, _ = block(z)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_attention_weights_only_for_requested_layers_and_same_output() -> None:
    model = randomise(VisionTransformer(tiny_config(depth=3))).eval()
    x = torch.randn(2, 3, 8, 8)
    fused = model.forward_features(x)
    tokens, maps = model.forward_with_attention(x, layers=[-1])
    assert list(maps) == [2]
    assert maps[2].shape == (2, 3, 5, 5)
    torch.testing.assert_close(maps[2].sum(-1), torch.ones(2, 3, 5))
    torch.testing.assert_close(tokens, fused, rtol=1e-5, atol=1e-5)
    _, all_maps = model.forward_with_attention(x)
    assert sorted(all_maps) == [0, 1, 2]


HEADS_READ = {"token": dict(), "distilled": dict(distilled=True),
              "registers": dict(reg_tokens=2), "avg": dict(global_pool="avg"),
              "map": dict(global_pool="map", class_token=False)}


@pytest.mark.parametrize("head", sorted(HEADS_READ))
def test_the_last_block_computes_only_what_the_head_reads(head: str) -> None:
    """forward's last block computes the tokens the head reads (x_class, and DeiT's
    distillation token), and gives forward_head(forward_features(x))'s logits and gradients;
    its FLOPs, counted on the real forward, are what `forward_flops` says."""
    from vitkit.models import forward_flops
    from vitkit.models.flops import counted_flops

    config = tiny_config(depth=3, **HEADS_READ[head])
    model = randomise(VisionTransformer(config))
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    results = []
    for run in (model, lambda x: model.forward_head(model.forward_features(x))):
        model.zero_grad()
        logits = run(x)
        logits.square().sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (logits, grads), (full_logits, full_grads) = results
    torch.testing.assert_close(logits, full_logits, rtol=1e-5, atol=1e-6)
    for grad, full_grad in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(grad, full_grad, rtol=1e-4, atol=1e-6)
    if head != "map":  # FlopCounterMode fails inside SigLIP's pooling (torch's MHA) on meta
        assert counted_flops(config) == forward_flops(config)
    reads = {"token": 1, "distilled": 2, "registers": 1}.get(head)
    assert config.head_tokens == reads


def test_the_last_block_is_shortened_with_gradient_checkpointing_too() -> None:
    model = randomise(VisionTransformer(tiny_config(depth=2))).train()
    model.set_grad_checkpointing(True)
    seen = []
    model.blocks[-1].mlp.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    x = torch.randn(2, 3, 8, 8)
    model(x).sum().backward()
    assert seen[0] == (2, 1, 12)  # the [class] token alone reaches the last MLP
    model.set_grad_checkpointing(False)
    torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))


def test_resampling_to_the_native_grid_is_the_identity() -> None:
    pos = torch.randn(1, 1 + 16, 8)
    assert torch.equal(resample_pos_embed(pos, (4, 4), (4, 4)), pos)
    model = randomise(VisionTransformer(tiny_config()))
    assert torch.equal(model.position_embeddings(model.config.grid_size), model.pos_embed)


def test_resampling_keeps_the_class_token_and_a_constant_grid() -> None:
    pos = torch.cat([torch.randn(1, 1, 3), torch.full((1, 9, 3), 0.7)], dim=1)
    out = resample_pos_embed(pos, (5, 4), (3, 3))
    assert out.shape == (1, 1 + 20, 3)
    assert torch.equal(out[:, 0], pos[:, 0])
    torch.testing.assert_close(out[:, 1:], torch.full((1, 20, 3), 0.7))


def test_a_384_model_from_a_224_one_runs_and_keeps_the_class_entry() -> None:
    model = randomise(vitkit.create_model("vit_tiny_patch16_224", depth=1)).eval()
    cls_entry = model.pos_embed[:, 0].clone()
    model.set_image_size(384)
    assert model.config.img_size == (384, 384)
    assert model.pos_embed.shape == (1, 1 + 24 * 24, 192)
    assert torch.equal(model.pos_embed[:, 0], cls_entry)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 384, 384)).shape == (1, 1000)


def test_any_divisible_resolution_square_or_not() -> None:
    model = randomise(VisionTransformer(tiny_config())).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 12, 20)).shape == (1, 1 + 15, 12)
        assert model(torch.randn(1, 3, 4, 4)).shape == (1, 5)


def test_avg_and_token_pooling_differ_as_they_should() -> None:
    token = randomise(VisionTransformer(tiny_config(global_pool="token"))).eval()
    avg = VisionTransformer(tiny_config(global_pool="avg", fc_norm=False)).eval()
    avg.load_state_dict(token.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        tokens = token.forward_features(x)
        torch.testing.assert_close(token(x), token.head(tokens[:, 0]))
        torch.testing.assert_close(avg(x), avg.head(tokens[:, 1:].mean(1)))
        assert not torch.allclose(token(x), avg(x))


def test_avg_pooling_uses_fc_norm_by_default_like_timm() -> None:
    model = VisionTransformer(tiny_config(global_pool="avg"))
    assert isinstance(model.fc_norm, torch.nn.LayerNorm)
    assert isinstance(model.norm, torch.nn.Identity)


def test_representation_layer_is_linear_then_tanh() -> None:
    model = randomise(VisionTransformer(tiny_config(representation_size=7))).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        pooled = model.forward_features(x)[:, 0]
        expected = model.head(torch.tanh(model.pre_logits.fc(pooled)))
        torch.testing.assert_close(model(x), expected)
    assert model.head.in_features == 7


def test_drop_path_and_dropout_act_only_in_training() -> None:
    model = randomise(VisionTransformer(tiny_config(drop_path_rate=0.5, drop_rate=0.3)))
    x = torch.randn(4, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        first = model(x)
        torch.manual_seed(1)
        assert not torch.equal(first, model(x))
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for block in model.blocks]
    assert rates == [0.0, 0.5]  # linear over depth, the first block never dropped


def test_layer_norm_eps_is_1e_6() -> None:
    model = VisionTransformer(tiny_config())
    assert model.norm.eps == 1e-6 and model.blocks[0].norm1.eps == 1e-6


def test_reset_classifier_gives_a_zero_head() -> None:
    model = randomise(VisionTransformer(tiny_config()))
    model.reset_classifier(3)
    assert model.head.out_features == 3 and model.config.num_classes == 3
    assert torch.count_nonzero(model.head.weight) == 0


@pytest.mark.parametrize(
    "shape,message",
    [
        ((1, 3, 10, 8), "not divisible by the patch size 4"),
        ((1, 1, 8, 8), "3-channel images, got 1"),
        ((3, 8, 8), "add a batch dimension"),
    ],
)
def test_bad_inputs_get_clear_errors(shape, message) -> None:
    model = VisionTransformer(tiny_config())
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


def test_bad_configs_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="not divisible by patch size"):
        tiny_config(img_size=10)
    with pytest.raises(ValueError, match="num_heads"):
        tiny_config(num_heads=5)
    with pytest.raises(ValueError, match="did you mean vit_base_patch16_224"):
        vitkit.create_model("vit_bsae_patch16_224")
    with pytest.raises(TypeError):
        vitkit.create_model("vit_tiny_patch16_224", no_such_option=1)


def test_overrides_reach_the_model() -> None:
    model = vitkit.create_model(
        "vit_tiny_patch16_224", num_classes=10, img_size=64, in_chans=1, global_pool="avg",
        drop_path_rate=0.1, depth=2,
    )
    config = model.config
    assert (config.num_classes, config.img_size, config.in_chans) == (10, (64, 64), 1)
    assert config.global_pool == "avg" and model.blocks[1].drop_path.drop_prob == 0.1


def test_gradient_checkpointing_gives_the_same_loss_and_gradients() -> None:
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = VisionTransformer(tiny_config(depth=3, drop_path_rate=0.3, drop_rate=0.1))
        model.set_grad_checkpointing(checkpointing)
        model.train()
        x = torch.randn(4, 3, 8, 8)
        torch.manual_seed(1)  # the same dropout and drop-path draws in both runs
        loss = model(x).logsumexp(1).mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7)
