"""Hub ids through huggingface_hub's cache, with no network: a cache laid out in tmp_path
(models--org--name/snapshots/<commit>/..., refs/main) and HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from tests.conftest import TOLERANCE, logits, max_diff, random_hf, random_timm
from vitkit.weights import CheckpointError

transformers = pytest.importorskip("transformers")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def snapshot(cache: Path, repo_id: str) -> Path:
    """An empty snapshot folder of `repo_id` in a hub cache, with refs/main pointing at it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    folder = repo / "snapshots" / COMMIT
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_google_style_repo_loads_by_hub_id_offline(offline_cache) -> None:
    source = random_hf(transformers.ViTForImageClassification, hidden_size=64,
                       num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                       image_size=32, patch_size=8, num_labels=3,
                       id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    folder = snapshot(offline_cache, "google/vit-test-patch8-32")
    source.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2}))

    model = vitkit.create_model(None, pretrained="google/vit-test-patch8-32")
    assert model.config.num_heads == 4 and model.config.img_size == (32, 32)
    assert model.meta.class_names == ["a", "b", "c"]
    assert model.meta.preprocessing.to_dict() == {"mean": [0.5] * 3, "std": [0.5] * 3,
                                                  "interpolation": "bilinear", "crop_pct": 1.0}
    x = torch.randn(2, 3, 32, 32)
    assert max_diff(logits(model, x), logits(source, x)) <= TOLERANCE


def test_timm_style_repo_loads_by_hub_id_with_its_pretrained_cfg(offline_cache, caplog) -> None:
    source = random_timm("vit_tiny_patch16_224", num_classes=4, img_size=64)
    folder = snapshot(offline_cache, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    save_file(source.state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 4, "num_features": 192,
        "global_pool": "token", "label_names": ["w", "x", "y", "z"],
        "pretrained_cfg": {"input_size": [3, 64, 64], "interpolation": "bicubic",
                           "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 0.9,
                           "num_classes": 4},
    }))
    model = vitkit.create_model(None, pretrained="timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert model.meta.name == "vit_tiny_patch16_224" and model.config.num_heads == 3
    assert model.meta.class_names == ["w", "x", "y", "z"]
    assert model.meta.preprocessing.crop_pct == 0.9 and model.meta.preprocessing.mean == (0.5,) * 3
    x = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, x), logits(source, x)) <= TOLERANCE

    with caplog.at_level(logging.WARNING, logger="vitkit"):  # new head, told so
        fine_tune = vitkit.create_model(
            "vit_tiny_patch16_224", pretrained="timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
            num_classes=10, img_size=96)
    assert torch.count_nonzero(fine_tune.head.weight) == 0 and fine_tune.meta.class_names is None
    assert fine_tune.pos_embed.shape == (1, 1 + 36, 192)
    assert "zero-initialised 10-class head" in caplog.text and "resampled" in caplog.text


def test_a_repo_missing_from_the_offline_cache_says_so(offline_cache) -> None:
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        vitkit.create_model(None, pretrained="google/vit-not-cached")


def test_a_missing_local_path_that_is_no_hub_id_is_file_not_found(offline_cache) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        vitkit.create_model(None, pretrained="./no/such/file.pth")
