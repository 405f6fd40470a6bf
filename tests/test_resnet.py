"""The CNN baselines (torchvision ResNets) in vitkit's trainer, evaluation, prediction and
checkpoints: `vitkit train --model resnet18` on a tiny image folder, then eval, predict, info
and a round trip of the checkpoint; analysis refuses a CNN."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

import vitkit
from tests.conftest import FAST, logits, make_class_folder, max_diff, one_line_error
from vitkit.cli.main import main
from vitkit.errors import CheckpointError
from vitkit.models import ResNet, get_config

pytestmark = pytest.mark.usefixtures("private_cache")



@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_imagenet_sized_resnets_are_torchvisions(name) -> None:
    with torch.device("meta"):
        ours = vitkit.create_model(name)
        theirs = getattr(torchvision.models, name)()
    assert isinstance(ours, ResNet) and not ours.config.small_input
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_small_images_get_a_3x3_stem_without_max_pool() -> None:
    model = vitkit.create_model("resnet18", img_size=32, num_classes=10).eval()
    assert model.config.small_input
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)
    assert not vitkit.create_model("resnet18", img_size=96).config.small_input
    with pytest.raises(ValueError, match="has no setting depth"):
        get_config("resnet50", depth=4)


def test_models_lists_the_baselines(capsys) -> None:
    assert {"resnet18", "resnet50"} <= set(vitkit.list_models())
    assert main(["models", "--filter", "resnet"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "11,689,512" in out and "resnet50" in out


def test_train_eval_predict_info_and_round_trip_a_resnet(tmp_path, capsys) -> None:
    data = make_class_folder(tmp_path / "images", {"cat": 8, "dog": 8, "emu": 8}, size=(16, 16))
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(out), "--model", "resnet18",
                 "--batch-size", "8", *FAST])
    assert code == 0
    assert "model resnet18" in capsys.readouterr().out
    checkpoint = out / "checkpoint"
    document = json.loads((checkpoint / "config.json").read_text())
    assert document["architecture"] == "ResNet" and document["model_name"] == "resnet18"

    model = vitkit.load_pretrained(checkpoint)
    assert isinstance(model, ResNet) and model.config.img_size == (16, 16)
    assert model.config.small_input and model.meta.class_names == ["cat", "dog", "emu"]
    assert model.meta.preprocessing.crop_pct == 1.0  # the trainer's, saved with the weights
    again = vitkit.create_model(None, pretrained=checkpoint)
    x = torch.randn(2, 3, 16, 16)
    assert max_diff(logits(again, x), logits(model, x)) == 0
    vitkit.save_pretrained(again, tmp_path / "copy")
    copy = vitkit.load_pretrained(tmp_path / "copy")
    assert copy.meta == model.meta and max_diff(logits(copy, x), logits(model, x)) == 0
    new_head = vitkit.create_model("resnet18", pretrained=checkpoint, num_classes=5)
    assert new_head.config.num_classes == 5 and new_head.fc.weight.abs().sum() == 0
    with pytest.raises(CheckpointError, match="holds a resnet18, not a vit_tiny"):
        vitkit.create_model("vit_tiny_patch16_224", pretrained=checkpoint)
    with pytest.raises(CheckpointError, match="holds a resnet18, not a resnet50"):
        vitkit.create_model("resnet50", pretrained=checkpoint)

    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--split",
                 "train", "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= 1
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), str(data / "dog" / "0.png")]) == 0
    printed = capsys.readouterr().out
    assert "0.png" in printed and any(name in printed for name in ("cat", "dog", "emu"))
    assert main(["info", str(checkpoint)]) == 0
    assert "small_input" in capsys.readouterr().out

    code = main(["analyze", "--checkpoint", str(checkpoint), "--images", str(data / "cat"),
                 "--out", str(tmp_path / "analysis")])
    one_line_error(capsys, code, "no attention to analyse")


def test_a_vit_checkpoint_is_not_a_resnet(tmp_path) -> None:
    folder = vitkit.save_pretrained(vitkit.create_model("vit_digits_patch2_8", depth=1),
                                    tmp_path / "vit")
    with pytest.raises(CheckpointError, match="holds a Vision Transformer, not a resnet18"):
        vitkit.create_model("resnet18", pretrained=folder)


def test_a_resnet_converts_only_to_vitkit(tmp_path, capsys) -> None:
    model = vitkit.create_model("resnet18", img_size=16, num_classes=3)
    vitkit.save_pretrained(model, tmp_path / "r18")
    code = main(["convert", str(tmp_path / "r18"), str(tmp_path / "timm"), "--to", "timm"])
    one_line_error(capsys, code, "a ResNet can be written only as --to vitkit")
    assert main(["convert", str(tmp_path / "r18"), str(tmp_path / "copy")]) == 0
    assert isinstance(vitkit.load_pretrained(tmp_path / "copy"), ResNet)


def test_bench_refuses_what_it_cannot_compare(capsys) -> None:
    code = main(["bench", "--model", "resnet18"])
    one_line_error(capsys, code, "bench times plain ViTs")


def test_bit_resnet_baseline_trains_saves_and_loads(tmp_path) -> None:
    """The BiT-style CNN (GroupNorm + weight standardisation, the hybrid's ResNet with all four
    stages): a training step, then a round trip through vitkit's checkpoint."""
    from vitkit.models import BiTResNetClassifier

    torch.manual_seed(0)
    model = vitkit.create_model("bit_resnet26", img_size=16, num_classes=3)
    assert isinstance(model, BiTResNetClassifier) and model.config.small_input
    stem = model.backbone.stem
    assert stem.conv.kernel_size == (3, 3) and not hasattr(stem, "pool")
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert model.backbone.stem.conv.weight.grad.abs().sum() > 0
    model.eval()
    vitkit.save_pretrained(model, tmp_path / "bit", class_names=["a", "b", "c"])
    loaded = vitkit.load_pretrained(tmp_path / "bit")
    assert isinstance(loaded, BiTResNetClassifier) and loaded.meta.class_names == ["a", "b", "c"]
    assert max_diff(logits(loaded, x), logits(model, x)) == 0
    new_head = vitkit.create_model(None, pretrained=tmp_path / "bit", num_classes=5)
    assert new_head.config.num_classes == 5
    with pytest.raises(CheckpointError, match="holds a bit_resnet26, not a resnet18"):
        vitkit.create_model("resnet18", pretrained=tmp_path / "bit")


@pytest.mark.parametrize("name, blocks", [("resnet20", 3), ("resnet56", 9)])
def test_cifar_resnets_have_he_et_al_s_three_stages(name, blocks, tmp_path) -> None:
    model = vitkit.create_model(name).eval()
    assert model.config.img_size == (32, 32) and model.config.num_classes == 10
    stages = [model.layer1, model.layer2, model.layer3]
    assert [len(stage) for stage in stages] == [blocks] * 3
    assert [stage[-1].conv2.out_channels for stage in stages] == [16, 32, 64]
    assert isinstance(model.layer4, torch.nn.Identity)
    convs = [m for m in model.modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 6 * blocks + 2  # 6n + 2 weighted layers (3x3 convs and the fc)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 64, 8, 8)
    vitkit.save_pretrained(model, tmp_path / "ck")
    again = vitkit.load_pretrained(tmp_path / "ck")
    assert max_diff(logits(again, x), logits(model, x)) == 0
    again.reset_classifier(3)
    assert again.fc.weight.shape == (3, 64) and again.fc.weight.abs().sum() == 0
    other = "resnet56" if name == "resnet20" else "resnet20"
    with pytest.raises(CheckpointError, match=f"holds a {name}, not a {other}"):
        vitkit.create_model(other, pretrained=tmp_path / "ck")
