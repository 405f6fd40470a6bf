"""Bad checkpoints fail clearly: another architecture (naming tensors and shapes), truncated
files of every format, pickles that would run code (refused unrun), unknown layouts."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from tests.conftest import tiny_vit
from vitkit.weights import CheckpointError, export_npz


class WritesAFile:
    """Unpickling this calls Path.touch: a stand-in for a payload."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def test_another_architecture_names_the_mismatching_tensors(tmp_path) -> None:
    other = tiny_vit(embed_dim=96, num_heads=3, mlp_dim=384)
    save_file(other.state_dict(), tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError) as info:
        vitkit.create_model("vit_tiny_patch16_224", pretrained=tmp_path / "x.safetensors")
    message = str(info.value)
    assert "x.safetensors" in message and "differ in shape" in message
    assert "cls_token: checkpoint (1, 1, 96) vs model (1, 1, 192)" in message
    assert "tensors missing from the checkpoint: blocks.10." in message


@pytest.mark.parametrize("legacy", [False, True])
def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path, legacy) -> None:
    marker = tmp_path / "pwned"
    state = dict(tiny_vit().state_dict())
    state["payload"] = WritesAFile(str(marker))
    torch.save({"model": state}, tmp_path / "evil.pth", _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="refused to load .*evil.pth.*run arbitrary code"):
        vitkit.create_model("vit_tiny_patch16_224", pretrained=tmp_path / "evil.pth")
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)  # the payload is real: it runs here
    assert marker.exists()


def test_a_state_dict_nested_under_model_with_ddp_prefixes_loads(tmp_path) -> None:
    model = tiny_vit()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model": state, "epoch": 3}, tmp_path / "ckpt.pth")
    loaded = vitkit.create_model("vit_tiny_patch16_224", pretrained=tmp_path / "ckpt.pth",
                                 depth=2)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def _write(kind: str, model: vitkit.VisionTransformer, path: pathlib.Path) -> None:
    if kind == "safetensors":
        save_file(model.state_dict(), path)
    elif kind == "pth":
        torch.save(model.state_dict(), path)
    else:
        export_npz(model, path)


@pytest.mark.parametrize("kind", ["safetensors", "pth", "npz"])
def test_truncated_files_fail_clearly(tmp_path, kind) -> None:
    path = tmp_path / f"model.{kind}"
    _write(kind, tiny_vit(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        vitkit.create_model("vit_tiny_patch16_224", pretrained=path)


def test_format_comes_from_the_contents_not_the_name(tmp_path) -> None:
    model = tiny_vit()
    export_npz(model, tmp_path / "weights.npz")
    os.rename(tmp_path / "weights.npz", tmp_path / "weights.bin")  # an npz called .bin
    save_file(model.state_dict(), tmp_path / "weights.pth")  # safetensors called .pth
    x = torch.randn(1, 3, 32, 32)
    for name in ("weights.bin", "weights.pth"):
        loaded = vitkit.create_model(None, pretrained=tmp_path / name)
        with torch.no_grad():
            assert (loaded(x) - model(x)).abs().max() <= 1e-5


def test_unknown_layouts_and_non_checkpoints_are_named(tmp_path) -> None:
    save_file({"conv1.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "resnet.safetensors")
    with pytest.raises(CheckpointError, match="not hold a Vision Transformer.*conv1.weight"):
        vitkit.create_model(None, pretrained=tmp_path / "resnet.safetensors")
    (tmp_path / "notes.txt").write_text("hello, this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a checkpoint format"):
        vitkit.create_model(None, pretrained=tmp_path / "notes.txt")


def test_without_a_name_an_unknown_width_asks_for_one(tmp_path) -> None:
    other = tiny_vit(embed_dim=48, num_heads=4, mlp_dim=96)
    save_file(other.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="attention heads.*--model NAME"):
        vitkit.create_model(None, pretrained=tmp_path / "w.safetensors")
    model = vitkit.create_model(None, pretrained=tmp_path / "w.safetensors", num_heads=4)
    assert model.config.embed_dim == 48


def test_hf_config_of_another_model_type_is_refused(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from tests.conftest import random_hf

    folder = tmp_path / "hf"
    random_hf(transformers.ViTForImageClassification, hidden_size=32, num_hidden_layers=1,
              num_attention_heads=2, intermediate_size=64, image_size=32,
              patch_size=16).save_pretrained(folder)
    config = (folder / "config.json").read_text().replace('"model_type": "vit"',
                                                          '"model_type": "deit"')
    (folder / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="'deit' model, not a ViT"):
        vitkit.create_model(None, pretrained=folder)
