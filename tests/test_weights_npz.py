"""Google's Flax .npz checkpoints: files written in the vit_jax and big_vision naming from a
timm model's tensors are checked with timm's own npz loader, and vitkit reads them to the same
logits (<= 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from tests.conftest import TOLERANCE, logits, max_diff, random_timm
from vitkit.weights.npz import vitkit_to_flax

timm = pytest.importorskip("timm")
from timm.models.vision_transformer import _load_weights  # noqa: E402

# (naming, timm arguments); 64x64 tiny models with 4 blocks keep each case under a second.
CASES = {
    "vit_jax_token": ("vit_jax", {}),
    "vit_jax_gap": (
        "vit_jax", {"global_pool": "avg", "class_token": False, "fc_norm": False}),
    "big_vision_gap": (
        "big_vision", {"global_pool": "avg", "class_token": False, "fc_norm": False}),
    "big_vision_scanned": (
        "big_vision", {"global_pool": "avg", "class_token": False, "fc_norm": False}),
}
SMALL = dict(img_size=64, depth=4, num_classes=6)


def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def scan(arrays: dict[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
    """big_vision's scanned layout: one encoderblock whose arrays stack the layers."""
    out = {k: v for k, v in arrays.items() if "encoderblock_" not in k}
    first = [k for k in arrays if "encoderblock_0/" in k]
    for key in first:
        block = "encoderblock_0/"
        layers = [arrays[key.replace(block, f"encoderblock_{i}/")] for i in range(depth)]
        out[key.replace("encoderblock_0/", "encoderblock/")] = np.stack(layers)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_npz_matches_timms_loader_and_timms_logits(case, tmp_path) -> None:
    naming, kwargs = CASES[case]
    source = random_timm("vit_tiny_patch16_224", **SMALL, **kwargs)
    arrays = vitkit_to_flax(source.state_dict(), num_heads=3, naming=naming)
    if case.endswith("scanned"):
        arrays = scan(arrays, SMALL["depth"])
    assert ("params/embedding/kernel" in arrays) == (naming == "big_vision")
    assert arrays[("params/" if naming == "big_vision" else "") + "embedding/kernel"].shape == (
        16, 16, 3, 192)
    path = tmp_path / "flax.npz"
    write_npz(path, arrays)

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = logits(source, x)
    assert expected.std() > 0.1

    # timm's independent loader reads the file back to the same model ...
    with torch.device("meta"):
        by_timm = timm.create_model("vit_tiny_patch16_224", **SMALL, **kwargs)
    by_timm = by_timm.to_empty(device="cpu").eval()
    _load_weights(by_timm, str(path))
    assert max_diff(logits(by_timm, x), expected) <= TOLERANCE

    # ... and so does vitkit, with the whole architecture (heads too) read from the arrays.
    model = vitkit.create_model(None, pretrained=path)
    assert model.config.num_heads == 3 and model.config.depth == 4
    assert model.config.global_pool == kwargs.get("global_pool", "token")
    assert max_diff(logits(model, x), expected) <= TOLERANCE


def test_big_vision_class_token_without_its_position_embedding(tmp_path) -> None:
    """big_vision adds E_pos before prepending [class]: the token's E_pos is folded into it."""
    source = random_timm("vit_tiny_patch16_224", **SMALL)
    arrays = vitkit_to_flax(source.state_dict(), num_heads=3, naming="big_vision")
    assert arrays["params/pos_embedding"].shape == (1, 16, 192)
    write_npz(tmp_path / "bv.npz", arrays)
    model = vitkit.create_model(None, pretrained=tmp_path / "bv.npz")
    x = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, x), logits(source, x)) <= TOLERANCE


def test_representation_layer_round_trips_through_npz(tmp_path) -> None:
    model = vitkit.create_model("vit_tiny_patch16_224", **SMALL, representation_size=32)
    from tests.conftest import randomise

    randomise(model).eval()
    vitkit.weights.export_npz(model, tmp_path / "rep.npz")
    back = vitkit.create_model(None, pretrained=tmp_path / "rep.npz")
    assert back.config.representation_size == 32
    x = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(back, x), logits(model, x)) <= TOLERANCE


def test_map_head_checkpoints_are_refused_by_name(tmp_path) -> None:
    source = random_timm("vit_tiny_patch16_224", **SMALL)
    arrays = vitkit_to_flax(source.state_dict(), num_heads=3, naming="big_vision")
    arrays["params/MAPHead_0/probe"] = np.zeros((1, 1, 192), np.float32)
    write_npz(tmp_path / "map.npz", arrays)
    with pytest.raises(vitkit.weights.CheckpointError, match="MAP head"):
        vitkit.create_model(None, pretrained=tmp_path / "map.npz")
