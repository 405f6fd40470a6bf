"""`vitkit convert`: between formats on the command line, with one-line errors."""

from __future__ import annotations

import pytest
import torch

import vitkit
from tests.conftest import TOLERANCE, logits, max_diff, randomise
from vitkit.cli.main import main

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")


@pytest.fixture
def saved(tmp_path):
    model = randomise(vitkit.create_model("vit_tiny_patch16_224", depth=2, img_size=64,
                                          num_classes=3)).eval()
    vitkit.save_pretrained(model, tmp_path / "mine", class_names=["r", "g", "b"])
    return model, tmp_path


def test_convert_to_hf_timm_npz_and_back(saved, capsys) -> None:
    model, tmp = saved
    x = torch.randn(2, 3, 64, 64)
    expected = logits(model, x)
    assert main(["convert", str(tmp / "mine"), str(tmp / "hf"), "--to", "hf"]) == 0
    assert "wrote" in capsys.readouterr().out
    hf = transformers.ViTForImageClassification.from_pretrained(tmp / "hf").eval()
    assert hf.config.id2label[0] == "r"
    assert max_diff(logits(hf, x), expected) <= TOLERANCE

    assert main(["convert", str(tmp / "hf"), str(tmp / "timm"), "--to", "timm"]) == 0
    by_timm = timm.create_model(f"local-dir:{tmp / 'timm'}", pretrained=True).eval()
    assert by_timm.pretrained_cfg["label_names"] == ["r", "g", "b"]
    assert max_diff(logits(by_timm, x), expected) <= TOLERANCE

    assert main(["convert", str(tmp / "timm"), str(tmp / "m.npz"), "--to", "npz"]) == 0
    assert main(["convert", str(tmp / "m.npz"), str(tmp / "back")]) == 0
    back = vitkit.load_pretrained(tmp / "back")
    assert max_diff(logits(back, x), expected) <= TOLERANCE


def test_convert_errors_are_one_line(saved, capsys) -> None:
    _, tmp = saved
    (tmp / "taken").mkdir()
    (tmp / "taken" / "keep.txt").write_text("precious")
    assert main(["convert", str(tmp / "mine"), str(tmp / "taken"), "--to", "hf"]) == 2
    error = capsys.readouterr().err
    assert "already exists" in error and "--force" in error and len(error.splitlines()) == 1
    assert (tmp / "taken" / "keep.txt").read_text() == "precious"

    avg = vitkit.create_model("vit_tiny_patch16_224", depth=1, img_size=32, global_pool="avg")
    vitkit.save_pretrained(avg, tmp / "avg")
    assert main(["convert", str(tmp / "avg"), str(tmp / "avg_hf"), "--to", "hf"]) == 2
    assert "average-pooling model has no HF equivalent" in capsys.readouterr().err
