"""evaluate() and `vitkit eval`: exact numbers from a model with known predictions, agreement
with a hand computation, metrics.json + confusion-matrix PNG, and clear errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from tests.conftest import constant_model, make_class_folder, randomise
from vitkit.cli.main import main
from vitkit.data import ImageTensorDataset
from vitkit.data.cache import clear_memory_cache
from vitkit.infer import evaluate
from vitkit.infer.batches import model_inputs
from vitkit.models import Preprocessing


def test_evaluate_constant_model_exact_numbers():
    model = constant_model()  # always predicts dog (1), then emu (2), then cat (0)
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    data = ImageTensorDataset(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), targets,
                              ["cat", "dog", "emu"])
    metrics = evaluate(model, data, batch_size=4)
    assert metrics["count"] == 6
    assert metrics["top1"] == pytest.approx(2 / 6)
    assert metrics["topk"] == 3 and metrics["top5"] == 1.0
    assert metrics["per_class"] == {"cat": 0.0, "dog": 1.0, "emu": 0.0}
    assert metrics["confusion"] == [[0, 3, 0], [0, 2, 0], [0, 1, 0]]
    expected_loss = -torch.log_softmax(torch.tensor([0.0, 2.0, 1.0]), 0)[targets].mean()
    assert metrics["loss"] == pytest.approx(expected_loss.item(), abs=1e-5)


def test_evaluate_matches_hand_computation_and_restores_mode():
    torch.manual_seed(0)
    model = vitkit.create_model("vit_digits_patch2_8", num_classes=10, depth=1, embed_dim=16,
                                num_heads=2, mlp_dim=32)
    torch.nn.init.normal_(model.head.weight)  # the head starts at zero: no ties wanted
    model.train()
    images = torch.randint(0, 256, (37, 1, 8, 8), dtype=torch.uint8)
    targets = torch.randint(0, 10, (37,))
    data = ImageTensorDataset(images, targets, [str(i) for i in range(10)])
    metrics = evaluate(model, data, batch_size=8)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = model(model_inputs(model, images))
    top1 = (logits.argmax(1) == targets).float().mean().item()
    top5 = (logits.topk(5, 1).indices == targets[:, None]).any(1).float().mean().item()
    assert metrics["top1"] == pytest.approx(top1) and metrics["top5"] == pytest.approx(top5)
    assert sum(map(sum, metrics["confusion"])) == 37
    four = data.subset(torch.arange(4))
    bf16 = evaluate(model, four, batch_size=4, dtype=torch.bfloat16)
    assert bf16["count"] == 4
    # bf16 runs on a frozen bf16 copy: the logits agree to bf16 rounding, the model stays fp32
    assert bf16["loss"] == pytest.approx(evaluate(model, four)["loss"], rel=0.05)
    assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())


def test_evaluate_rejects_wrong_class_count():
    data = ImageTensorDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]),
                              ["a", "b"])
    with pytest.raises(ValueError, match="2 classes"):
        evaluate(constant_model(), data)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path / "cache"))
    clear_memory_cache()
    checkpoint = vitkit.save_pretrained(constant_model(), tmp_path / "run" / "checkpoint")
    data = tmp_path / "pets"
    make_class_folder(data / "train", {"cat": 2, "dog": 2, "emu": 2})
    make_class_folder(data / "test", {"cat": 3, "dog": 4, "emu": 1}, size=(16, 16))
    (data / "test" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    yield str(checkpoint), data
    clear_memory_cache()


def test_cli_eval_writes_metrics_and_png(setup, capsys):
    checkpoint, data = setup
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "top-1 50.00%" in out and "top-3 100.00%" in out
    assert "1 unreadable files skipped" in out
    eval_dir = Path(checkpoint).parent / "eval"  # the default: eval/ beside the checkpoint
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["count"] == 8
    assert metrics["top1"] == 0.5 and metrics["per_class"]["dog"] == 1.0
    assert metrics["confusion"] == [[0, 3, 0], [0, 4, 0], [0, 1, 0]]
    assert len(metrics["skipped"]) == 1 and "broken.png" in metrics["skipped"][0][0]
    png = eval_dir / "confusion_matrix.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_cli_eval_other_split_and_out(setup, tmp_path, capsys):
    checkpoint, data = setup
    out_dir = tmp_path / "elsewhere"
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(data), "--split", "train",
                 "--out", str(out_dir), "--fp32", "--no-progress"]) == 0
    assert "img/s" not in capsys.readouterr().err  # no decode bar
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["split"] == "train" and metrics["count"] == 6
    assert metrics["top1"] == pytest.approx(1 / 3)
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(data), "--split", "val"]) == 2
    assert "no val split" in capsys.readouterr().err


def test_cli_eval_of_a_carved_val_decodes_only_its_files(setup, capsys, monkeypatch):
    import vitkit.data.decode as decode_module

    checkpoint, data = setup
    calls = []
    real = decode_module.decode_image
    monkeypatch.setattr(decode_module, "decode_image",
                        lambda path, mode, **kw: calls.append(path) or real(path, mode, **kw))
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(data), "--split", "val",
                 "--val-split", "0.5", "--seed", "3", "--no-progress"]) == 0
    assert "pets/val: 3 images" in capsys.readouterr().out
    assert len(calls) == 3 and all("/train/" in path for path in calls)
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(data), "--split", "val",
                 "--val-split", "1.5"]) == 2
    assert "error: --val-split 1.5 must be a fraction" in capsys.readouterr().err


def test_cli_eval_errors(setup, tmp_path, capsys):
    checkpoint, data = setup
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(tmp_path / "none")]) == 2
    assert "no data at" in capsys.readouterr().err
    other = tmp_path / "other"
    make_class_folder(other, {"cat": 1, "dog": 1})
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(other),
                 "--split", "train"]) == 2
    assert "differ from the model's" in capsys.readouterr().err


def test_eval_top1_is_the_accuracy_of_predict_on_the_same_files(tmp_path, capsys,
                                                                 private_cache):
    """The same checkpoint on a folder of photos of other sizes and shapes: `vitkit eval` and
    `vitkit predict` prepare each file the same way (resize by crop_pct, centre-crop), so
    they agree on every prediction."""
    model = randomise(vitkit.create_model(
        "vit_digits_patch2_8", in_chans=3, num_classes=3, img_size=16, depth=1, embed_dim=16,
        num_heads=2, mlp_dim=32), seed=1, scale=1.0).eval()
    model.meta.class_names = ["cat", "dog", "emu"]
    model.meta.preprocessing = Preprocessing(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                                             interpolation="bicubic", crop_pct=0.875)
    checkpoint = vitkit.save_pretrained(model, tmp_path / "checkpoint")
    rng = np.random.default_rng(0)
    for label in model.meta.class_names:
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(8):
            height, width = rng.integers(12, 70, size=2)
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            suffix = "jpg" if i % 2 else "png"
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{i}.{suffix}")
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "photos"),
                 "--split", "train", "--out", str(out), "--fp32", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "photos"),
                 "--format", "csv", "--fp32"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == metrics["count"] == 24
    predicted = [row["label1"] for row in rows]
    assert len(set(predicted)) >= 2  # the model tells the files apart: the test means something
    truth = [Path(row["file"]).parent.name for row in rows]
    names = model.meta.class_names
    confusion = [[0] * 3 for _ in names]
    for true, guess in zip(truth, predicted, strict=True):
        confusion[names.index(true)][names.index(guess)] += 1
    assert confusion == metrics["confusion"]
    accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(rows)
    assert accuracy == metrics["top1"]
