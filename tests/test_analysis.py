"""The analyses of the paper's Figures 6 and 7 on constructed models whose answers are known
by hand: uniform attention, attention to oneself, sin-cos position embeddings, known filters."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import randomise
from vitkit.analysis import (
    attention_maps,
    attention_rollout,
    embedding_filter_variance,
    embedding_filters,
    mean_attention_distance,
    patch_distances,
    position_embedding_similarity,
    principal_components,
)
from vitkit.models import VisionTransformer, ViTConfig


def tiny_model(seed: int = 0, **overrides) -> VisionTransformer:
    """A small ViT with every parameter random (so zero-initialised tensors hide nothing)."""
    base = dict(img_size=8, patch_size=4, in_chans=3, num_classes=5, embed_dim=12, depth=3,
                num_heads=3, mlp_dim=24)
    base.update(overrides)
    return randomise(VisionTransformer(ViTConfig(**base)), seed, scale=0.5).eval()


def images_for(model: VisionTransformer, batch: int = 2, seed: int = 1) -> torch.Tensor:
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.in_chans, *config.img_size, generator=generator)


def make_uniform(model: VisionTransformer) -> VisionTransformer:
    """Zero the query and key projections: every score is 0, so softmax is exactly uniform."""
    dim = model.config.embed_dim
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[: 2 * dim] = 0.0
            block.attn.qkv.bias[: 2 * dim] = 0.0
    return model


def fake_attention(model: VisionTransformer, monkeypatch, build) -> None:
    """Make forward_with_attention return maps built by `build(batch, heads, tokens)`."""
    config = model.config
    tokens = config.num_prefix_tokens + config.num_patches

    def forward_with_attention(images, layers=None):
        depth = len(model.blocks)
        wanted = range(depth) if layers is None else sorted({i % depth for i in layers})
        probs = build(images.shape[0], config.num_heads, tokens)
        return None, {layer: probs.clone() for layer in wanted}

    monkeypatch.setattr(model, "forward_with_attention", forward_with_attention)


# -- attention_maps ------------------------------------------------------------------------


def test_attention_maps_materialise_only_the_layers_asked_for(monkeypatch) -> None:
    model = tiny_model(depth=4)
    asked: list[bool] = []
    for block in model.blocks:
        original = block.attn.forward

        def spy(x, need_weights=False, queries=None, _original=original):
            asked.append(need_weights)
            return _original(x, need_weights, queries)

        monkeypatch.setattr(block.attn, "forward", spy)
    maps = attention_maps(model, images_for(model, batch=2), layers=[1, -1])
    assert sorted(maps) == [1, 3]
    assert asked == [False, True, False, True]  # layers 0 and 2 stayed on the fused path
    for probs in maps.values():
        assert probs.shape == (2, 3, 5, 5) and probs.dtype == torch.float32
        assert torch.allclose(probs.sum(dim=-1), torch.ones(2, 3, 5), atol=1e-5)


def test_attention_maps_match_a_hand_computed_softmax() -> None:
    model = tiny_model(depth=1, num_heads=2)
    images = images_for(model, batch=1)
    block = model.blocks[0]
    tokens = block.norm1(model.embed(images))
    q, k, _ = block.attn.qkv(tokens).reshape(1, 5, 3, 2, 6).permute(2, 0, 3, 1, 4)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(6), dim=-1)
    assert torch.allclose(attention_maps(model, images)[0], expected.detach(), atol=1e-5)


def test_attention_maps_restore_training_mode_and_reject_bad_layers() -> None:
    model = tiny_model(depth=2).train()
    maps = attention_maps(model, images_for(model), layers=[0])
    assert model.training and not maps[0].requires_grad
    with pytest.raises(ValueError, match="layers 0..1"):
        attention_maps(model, images_for(model), layers=[5])
    with pytest.raises(ValueError, match="batch of images"):
        attention_maps(model, torch.zeros(3, 8, 8))


# -- attention_rollout ---------------------------------------------------------------------


@pytest.mark.parametrize("pool", [dict(), dict(global_pool="avg", class_token=False),
                                  dict(global_pool="avg")])
def test_uniform_attention_gives_a_uniform_rollout(pool) -> None:
    model = make_uniform(tiny_model(img_size=12, **pool))  # 3x3 patch grid
    rollout = attention_rollout(model, images_for(model, batch=3))
    assert rollout.shape == (3, 3, 3)
    assert torch.allclose(rollout, rollout[:, :1, :1].expand_as(rollout), atol=1e-6)
    if not model.config.class_token:  # rows over patches only: the whole mass is on patches
        assert torch.allclose(rollout.sum(dim=(1, 2)), torch.ones(3), atol=1e-5)


def test_rollout_of_attention_to_one_patch_by_hand(monkeypatch) -> None:
    """Every token attends only to patch 2: after L layers of (A + I)/2 the [class] row is
    0.5^L on itself and 1 - 0.5^L on patch 2."""
    model = tiny_model(depth=3)

    def to_patch_two(batch, heads, tokens):
        probs = torch.zeros(batch, heads, tokens, tokens)
        probs[..., 1 + 2] = 1.0
        return probs

    fake_attention(model, monkeypatch, to_patch_two)
    rollout = attention_rollout(model, images_for(model, batch=1))
    expected = torch.zeros(1, 2, 2)
    expected[0, 1, 0] = 1 - 0.5**3
    assert torch.allclose(rollout, expected, atol=1e-6)


def test_rollout_of_one_layer_is_half_the_class_attention() -> None:
    model = tiny_model(depth=1)
    images = images_for(model, batch=2)
    cls_row = attention_maps(model, images)[0].mean(dim=1)[:, 0, 1:]
    assert torch.allclose(attention_rollout(model, images).flatten(1), 0.5 * cls_row, atol=1e-6)


def test_rollout_head_fusion_and_discard_ratio() -> None:
    model = tiny_model(img_size=16)  # 4x4 grid
    images = images_for(model, batch=2)
    mean = attention_rollout(model, images)
    assert not torch.allclose(attention_rollout(model, images, head_fusion="max"), mean)
    dropped = attention_rollout(model, images, discard_ratio=0.5)
    assert dropped.shape == mean.shape and torch.isfinite(dropped).all()
    assert not torch.allclose(dropped, mean)
    batched = attention_rollout(model, images, batch_size=1)
    assert torch.allclose(batched, mean, atol=1e-6)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(model, images, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_rollout(model, images, discard_ratio=1.0)


# -- mean_attention_distance ---------------------------------------------------------------


def test_patch_distances_by_hand() -> None:
    distances = patch_distances((2, 2), patch_size=4)
    side, diagonal = 4.0, 4.0 * math.sqrt(2)
    expected = torch.tensor([[0, side, side, diagonal], [side, 0, diagonal, side],
                             [side, diagonal, 0, side], [diagonal, side, side, 0]])
    assert torch.allclose(distances, expected)
    # the mean over all 16 ordered pairs: 8 sides and 4 diagonals
    assert float(distances.mean()) == pytest.approx((8 * side + 4 * diagonal) / 16)


@pytest.mark.parametrize("class_token", [True, False])
def test_uniform_attention_distance_is_the_mean_pairwise_distance(class_token) -> None:
    pool = {} if class_token else dict(class_token=False, global_pool="avg")
    model = make_uniform(tiny_model(img_size=(8, 12), patch_size=2, depth=2, **pool))
    distance = mean_attention_distance(model, images_for(model, batch=3))
    expected = float(patch_distances((4, 6), 2).mean())
    assert distance.shape == (2, 3)
    assert torch.allclose(distance, torch.full((2, 3), expected), atol=1e-4)


def test_attention_only_to_oneself_has_distance_zero(monkeypatch) -> None:
    model = tiny_model(img_size=16)
    fake_attention(model, monkeypatch,
                   lambda b, h, t: torch.eye(t).expand(b, h, t, t).contiguous())
    assert torch.equal(mean_attention_distance(model, images_for(model)), torch.zeros(3, 3))


def test_attention_distance_leaves_out_the_class_token(monkeypatch) -> None:
    """Half of each row on [class], half on patch 0: renormalised over patches, every query
    looks at patch 0, so the distance is the mean distance to patch 0: (0+4+4+4*sqrt2)/4."""
    model = tiny_model()  # 2x2 grid, patch 4

    def half_class_half_first(batch, heads, tokens):
        probs = torch.zeros(batch, heads, tokens, tokens)
        probs[..., 0] = 0.5
        probs[..., 1] = 0.5
        return probs

    fake_attention(model, monkeypatch, half_class_half_first)
    distance = mean_attention_distance(model, images_for(model), batch_size=1)
    assert torch.allclose(distance, torch.full((3, 3), 2 + math.sqrt(2)), atol=1e-5)


def test_attention_distance_grows_with_a_wider_receptive_field(monkeypatch) -> None:
    """Attending to the patch one step to the right (where there is one) gives patch_size
    pixels per query that has a right neighbour, 0 for the last column."""
    model = tiny_model(img_size=(4, 12), patch_size=4, class_token=False, global_pool="avg")

    def right_neighbour(batch, heads, tokens):  # a 1x3 grid
        probs = torch.zeros(batch, heads, tokens, tokens)
        for query in range(tokens):
            probs[..., query, min(query + 1, tokens - 1)] = 1.0
        return probs

    fake_attention(model, monkeypatch, right_neighbour)
    distance = mean_attention_distance(model, images_for(model))
    assert torch.allclose(distance, torch.full((3, 3), 4.0 * 2 / 3), atol=1e-5)


# -- position_embedding_similarity ---------------------------------------------------------


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Transformer-style sin-cos embeddings, half the dimensions for rows, half for columns."""
    quarter = dim // 4
    omega = 1.0 / (10.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    parts = []
    for coord in (rows.flatten(), cols.flatten()):
        angles = coord[:, None].double() * omega[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def test_sincos_position_embeddings_peak_at_their_own_patch() -> None:
    model = tiny_model(img_size=(20, 28), patch_size=4, embed_dim=32, num_heads=4)  # 5x7
    with torch.no_grad():
        model.pos_embed[0, 1:] = sincos_2d((5, 7), 32)
        model.pos_embed[0, 0] = 100.0  # the [class] token's embedding must not matter
    similarity = position_embedding_similarity(model)
    assert similarity.shape == (5, 7, 5, 7)
    flat = similarity.reshape(35, 35)
    assert torch.allclose(flat.diagonal(), torch.ones(35), atol=1e-5)
    off_diagonal = flat - 2 * torch.eye(35)
    assert (off_diagonal.max(dim=1).values < 0.999).all()  # a strict peak at one's own patch
    assert torch.allclose(flat, flat.T, atol=1e-6)
    # near a patch, similarity falls with distance along its row (sin-cos is not monotone
    # over long ranges, so only the first four steps are checked)
    row = similarity[2, 0, 2]
    assert (row[1:5] < row[:4]).all()


def test_random_position_embeddings_are_not_peaked_like_sincos() -> None:
    model = tiny_model(img_size=16, embed_dim=12)
    similarity = position_embedding_similarity(model).reshape(16, 16)
    assert torch.allclose(similarity.diagonal(), torch.ones(16), atol=1e-5)
    assert not torch.allclose(similarity, torch.eye(16), atol=0.1)


# -- embedding_filters ---------------------------------------------------------------------


def test_known_filters_give_back_their_principal_components() -> None:
    """E = U diag(s) V^T with centred orthonormal U: the components are the rows of V, and
    they explain s^2 / sum(s^2) of the variance."""
    model = tiny_model(img_size=8, patch_size=2, in_chans=3, embed_dim=24, num_heads=4)
    generator = torch.Generator().manual_seed(3)
    d, scales = 12, torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.randn(d, 3, generator=generator, dtype=torch.float64))
    mixing = torch.randn(24, 3, generator=generator, dtype=torch.float64)
    mixing -= mixing.mean(dim=0)
    mixing, _ = torch.linalg.qr(mixing)  # orthonormal columns, still centred
    offset = torch.randn(1, d, generator=generator, dtype=torch.float64)  # a shared mean filter
    weight = mixing @ torch.diag(scales) @ basis.T + offset  # PCA must centre it away
    with torch.no_grad():
        model.patch_embed.proj.weight.copy_(weight.reshape(24, 3, 2, 2))
    components = embedding_filters(model, k=3)
    assert components.shape == (3, 3, 2, 2)
    for found, truth in zip(components.flatten(1).double(), basis.T, strict=True):
        assert abs(float(found @ truth)) == pytest.approx(1.0, abs=1e-5)  # equal up to sign
        assert float(found[found.abs().argmax()]) > 0  # the sign convention
    variance = embedding_filter_variance(model, k=3)
    assert torch.allclose(variance.double(), scales**2 / (scales**2).sum(), atol=1e-6)


def test_filters_are_capped_at_the_patch_dimension() -> None:
    model = tiny_model(img_size=8, patch_size=2, in_chans=1, embed_dim=12)
    assert embedding_filters(model).shape == (4, 1, 2, 2)  # C*P*P = 4 < 28
    assert embedding_filter_variance(model).sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        principal_components(torch.randn(5, 3), k=0)
