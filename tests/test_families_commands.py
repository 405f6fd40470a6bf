"""Every command on every family: a tiny random model of each descendant, written as a timm hub
folder, is fine-tuned at another resolution (zero head, E_pos resampled, distillation and
register tokens kept), evaluated, predicted with, analysed (rollout of what each head pools),
exported to ONNX (same probabilities) and served."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vitkit
from tests.conftest import make_class_folder, randomise
from tests.serve_helpers import png_bytes
from vitkit.cli.main import main
from vitkit.weights import export_timm

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vitkit.serve import TorchBackend, create_app  # noqa: E402

TINY = dict(depth=2, embed_dim=32, num_heads=2, mlp_dim=64)
# family -> (preset, pre-training size, fine-tuning size, what rollout follows)
CASES = {
    "deit-distilled": ("deit_tiny_distilled_patch16_224", 48, 32, "distillation"),
    "deit3": ("deit3_small_patch16_224", 48, 32, "class"),
    "dinov2-reg": ("vit_small_patch14_reg4_dinov2", 56, 42, "4 register tokens"),
    "clip": ("vit_base_patch16_clip_quickgelu_224", 48, 32, "class"),
    "siglip": ("vit_base_patch16_siglip_224", 48, 32, "attention-pooling"),
    "siglip-gap": ("vit_base_patch16_siglip_gap_224", 48, 32, "mean of patch tokens"),
}


@pytest.mark.parametrize("family", list(CASES))
def test_finetune_eval_predict_analyze_export_serve(family, tmp_path, capsys) -> None:
    preset, pre_size, size, rolled = CASES[family]
    base = randomise(vitkit.create_model(preset, img_size=pre_size, num_classes=7, **TINY))
    export_timm(base, tmp_path / "pre")  # as timm's hub folders hold them
    data = make_class_folder(tmp_path / "data", {"cat": 4, "dog": 4}, size=(size, size))
    run = tmp_path / "run"
    code = main(["finetune", "--pretrained", str(tmp_path / "pre"), "--data", str(data),
                 "--out", str(run), "--no-progress", "--fp32", "--epochs", "1",
                 "--img-size", str(size)])
    assert code == 0, capsys.readouterr()
    model = vitkit.load_pretrained(run / "checkpoint")
    assert model.config.img_size == (size, size) and model.config.num_classes == 2
    for key in ("distilled", "reg_tokens", "pre_norm", "init_values", "global_pool"):
        assert getattr(model.config, key) == getattr(base.config, key), key
    capsys.readouterr()

    assert main(["eval", "--checkpoint", str(run / "checkpoint"), "--data", str(data),
                 "--split", "train", "--fp32", "--no-progress"]) == 0
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(png_bytes(i, (size + 5, size + 9)))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run / "checkpoint"), str(images), "--format",
                 "json", "--fp32", "--topk", "2"]) == 0
    torch_rows = json.loads(capsys.readouterr().out)
    assert len(torch_rows) == 3 and all(row["error"] is None for row in torch_rows)

    assert main(["analyze", "--checkpoint", str(run / "checkpoint"), "--images", str(images),
                 "--out", str(tmp_path / "analysis")]) == 0
    report = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert rolled in report["rollout"]["pooled_token"]
    assert rolled in capsys.readouterr().out

    onnx = tmp_path / "model.onnx"
    assert main(["export", str(run / "checkpoint"), str(onnx), "--format", "onnx"]) == 0
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(onnx), "--backend", "onnx", str(images),
                 "--format", "json", "--topk", "2"]) == 0
    onnx_rows = json.loads(capsys.readouterr().out)
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a["labels"] == b["labels"]
        assert np.allclose(a["probs"], b["probs"], atol=1e-4)

    backend = TorchBackend(model, device="cpu", fp32=True)
    with TestClient(create_app(backend), base_url="http://127.0.0.1") as client:  # a Host served
        answer = client.post("/v1/predict?top_k=2", files={"file": ("a.png", png_bytes(0))})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"][0]) == 2
        explained = client.post("/v1/explain?top_k=1", files={"file": ("a.png", png_bytes(1))})
        assert explained.status_code == 200, explained.text


def test_reset_classifier_keeps_the_distillation_head_and_set_image_size_the_registers() -> None:
    model = vitkit.create_model("vit_small_patch14_reg4_dinov2", img_size=56, **TINY)
    model.set_image_size(28)
    assert model.pos_embed.shape == (1, 4, 32) and model.reg_token.shape == (1, 4, 32)
    assert model(torch.randn(1, 3, 28, 28)).shape == (1, 32)  # headless: features
    deit = vitkit.create_model("deit_tiny_distilled_patch16_224", img_size=32, **TINY)
    deit.reset_classifier(3)
    assert deit.head_dist.weight.shape == (3, 32) and not deit.head_dist.weight.any()
    assert deit.pos_embed.shape == (1, 2 + 4, 32)


def test_distilled_training_returns_both_heads_as_timms_does() -> None:
    deit = randomise(vitkit.create_model("deit_tiny_distilled_patch16_224", img_size=32,
                                         num_classes=3, **TINY))
    x = torch.randn(2, 3, 32, 32)
    deit.set_distilled_training(True)
    cls, dist = deit.train()(x)
    assert cls.shape == dist.shape == (2, 3) and (cls - dist).abs().max() > 1e-3
    with torch.no_grad():
        assert torch.allclose(deit.eval()(x), (cls + dist) / 2, atol=1e-5)  # averaged to infer
    with pytest.raises(ValueError, match="only a model with a distillation token"):
        vitkit.create_model("deit_tiny_patch16_224", img_size=32, **TINY).set_distilled_training()
