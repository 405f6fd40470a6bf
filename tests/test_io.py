"""vitkit's own format: save_pretrained / load_pretrained round trips, and damaged files."""

from __future__ import annotations

import json
import os

import pytest
import torch

import vitkit
from tests.conftest import randomise, tiny_vit
from vitkit.models import Preprocessing
from vitkit.weights import CheckpointError


def test_round_trip_keeps_weights_config_names_and_preprocessing(tmp_path) -> None:
    model = tiny_vit(global_pool="avg", representation_size=16)
    vitkit.save_pretrained(model, tmp_path, class_names=["cat", "dog", "fox"],
                           preprocessing={"mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 3.0]})
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "config.json"}
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["class_names"] == ["cat", "dog", "fox"]
    assert document["preprocessing"]["img_size"] == [32, 32]
    assert document["config"]["representation_size"] == 16

    loaded = vitkit.load_pretrained(tmp_path)
    assert loaded.config == model.config
    assert loaded.meta == model.meta  # name, class names and preprocessing, typed
    assert loaded.meta.name == ("vit_tiny_patch16_224 (img_size=32, depth=2, global_pool=avg, "
                                "representation_size=16)")  # the preset and its changes
    assert loaded.meta.class_names == ["cat", "dog", "fox"]
    assert loaded.meta.preprocessing == Preprocessing(mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_typed_preprocessing_record_is_saved_whole(tmp_path) -> None:
    model = tiny_vit()
    model.meta.preprocessing = Preprocessing(mean=(0.2,) * 3, std=(0.3,) * 3,
                                             interpolation="bilinear", crop_pct=0.875)
    vitkit.save_pretrained(model, tmp_path)
    assert vitkit.load_pretrained(tmp_path).meta.preprocessing == model.meta.preprocessing
    with pytest.raises(ValueError, match="crop_pct"):
        model.meta.preprocessing.replace(crop_pct=1.5)
    with pytest.raises(ValueError, match="interpolation"):
        Preprocessing(interpolation="cubic-ish")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask) -> None:
    old = os.umask(umask)
    try:
        vitkit.save_pretrained(tiny_vit(), tmp_path)
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_safetensors_file_alone_is_enough(tmp_path) -> None:
    model = tiny_vit()
    vitkit.save_pretrained(model, tmp_path)
    loaded = vitkit.load_pretrained(tmp_path / "model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_create_model_takes_a_saved_directory(tmp_path) -> None:
    model = tiny_vit()
    vitkit.save_pretrained(model, tmp_path)
    same = vitkit.create_model(None, pretrained=tmp_path)
    x = torch.randn(1, 3, 32, 32)
    for (name, saved), loaded in zip(model.state_dict().items(), same.state_dict().values(),
                                     strict=True):
        assert torch.equal(saved, loaded), name
    with torch.no_grad():  # the same weights at other addresses: equal up to summation order
        torch.testing.assert_close(same(x), model(x), rtol=1e-5, atol=1e-6)
    new_head = vitkit.create_model(None, pretrained=tmp_path, num_classes=5, img_size=48)
    assert new_head.head.out_features == 5
    assert torch.count_nonzero(new_head.head.weight) == 0
    assert new_head.pos_embed.shape == (1, 1 + 9, 192)


def test_a_checkpoint_for_another_architecture_names_the_mismatches(tmp_path) -> None:
    vitkit.save_pretrained(tiny_vit(), tmp_path)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.qkv\.weight.*\(576, 192\)"):
        vitkit.create_model("vit_small_patch16_224", pretrained=tmp_path, depth=2)


def test_truncated_and_corrupted_files_fail_clearly(tmp_path) -> None:
    vitkit.save_pretrained(tiny_vit(), tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        vitkit.load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        vitkit.load_pretrained(tmp_path)


def test_non_finite_weights_are_reported(tmp_path) -> None:
    model = tiny_vit()
    with torch.no_grad():
        model.blocks[1].mlp.fc1.weight[0, 0] = float("nan")
    vitkit.save_pretrained(model, tmp_path)
    with pytest.raises(CheckpointError, match=r"NaN or infinite.*blocks\.1\.mlp\.fc1\.weight"):
        vitkit.load_pretrained(tmp_path)


def test_an_interrupted_save_keeps_the_previous_files(tmp_path, monkeypatch) -> None:
    model = tiny_vit()
    vitkit.save_pretrained(model, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("vitkit.weights.io.save_file", fail)
    with pytest.raises(OSError, match="No space left"):
        vitkit.save_pretrained(randomise(model, seed=3), tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
