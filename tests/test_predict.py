"""predict() and `vitkit predict`: known outputs from a model with a fixed head, batching,
the saved preprocessing, and error rows for unreadable files among good ones."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from PIL import Image

import vitkit
from tests.conftest import CONSTANT_LOGITS, constant_model
from vitkit.cli.main import main
from vitkit.data import find_images
from vitkit.infer import predict
from vitkit.models import Preprocessing

PROBS = CONSTANT_LOGITS.softmax(0)


@pytest.fixture
def files(tmp_path):
    good = []
    for i, (size, mode) in enumerate([((8, 8), "RGB"), ((30, 17), "L"), ((1, 1), "RGBA"),
                                      ((64, 48), "P")]):
        path = tmp_path / f"good{i}.png"
        Image.new(mode, size).save(path)
        good.append(str(path))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    bad = [str(tmp_path / "empty.jpg"), str(tmp_path / "text.jpg"), str(tmp_path / "gone.png")]
    return good, bad


def test_predict_mix_of_good_and_bad(files):
    good, bad = files
    inputs = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]
    rows = predict(constant_model(), inputs, top_k=2, batch_size=3)
    assert [row.source for row in rows] == inputs
    assert [row.ok for row in rows] == [True, False, True, False, True, False, True]
    for row in rows:
        if row.ok:
            assert row.labels == ["dog", "emu"] and row.indices == [1, 2]
            assert row.probs == pytest.approx(PROBS[[1, 2]].tolist(), abs=1e-6)
        else:
            assert row.labels == [] and row.error
    assert "empty" in rows[1].error and "no such file" in rows[5].error


def test_predict_images_and_tensors_and_grey_model():
    model = constant_model(in_chans=1)
    inputs = [Image.new("RGB", (20, 10)), torch.zeros(1, 8, 8, dtype=torch.uint8),
              torch.zeros(8, 8)]
    rows = predict(model, inputs, top_k=10)
    assert rows[0].labels == ["dog", "emu", "cat"]  # top_k capped at the class count
    assert rows[1].ok and not rows[2].ok and "uint8" in rows[2].error
    with pytest.raises(ValueError, match=r"^top_k=0 must be at least 1$"):
        predict(model, inputs, top_k=0)


def test_predict_still_takes_the_old_topk_keyword_with_a_warning():
    model, inputs = constant_model(), [Image.new("RGB", (8, 8))]
    with pytest.warns(DeprecationWarning, match=r"predict\(topk=\.\.\.\) is deprecated; use top_k"):
        old = predict(model, inputs, topk=2)
    assert old[0].labels == predict(model, inputs, top_k=2)[0].labels == ["dog", "emu"]
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="top_k=0"):
        predict(model, inputs, topk=0)


def test_predict_matches_manual_preprocessing(tmp_path):
    torch.manual_seed(0)
    model = vitkit.create_model("vit_digits_patch2_8", in_chans=3, num_classes=4, depth=1,
                                embed_dim=16, num_heads=2, mlp_dim=32).eval()
    model.meta.preprocessing = Preprocessing(mean=(0.2, 0.3, 0.4), std=(0.5, 0.6, 0.7),
                                             crop_pct=1.0)
    pixels = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path)
    row = predict(model, [str(path)], top_k=4, fp32=True)[0]
    x = (pixels.float() / 255 - torch.tensor([0.2, 0.3, 0.4])[:, None, None])
    x = x / torch.tensor([0.5, 0.6, 0.7])[:, None, None]
    with torch.no_grad():
        expected = model(x[None]).softmax(1)[0]
    assert row.probs == pytest.approx(expected.sort(descending=True).values.tolist(), abs=1e-5)


def test_expand_inputs_lists_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.jpg", "sub/c.gif", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    found = find_images([tmp_path, tmp_path / "missing.png"])
    names = [p.replace(str(tmp_path) + "/", "") for p in found]
    assert names == ["a.jpg", "b.png", "sub/c.gif", "missing.png"]


@pytest.fixture
def checkpoint(tmp_path):
    return str(vitkit.save_pretrained(constant_model(), tmp_path / "run" / "checkpoint"))


def test_cli_predict_table_json_csv(checkpoint, files, capsys):
    good, bad = files
    assert main(["predict", "--checkpoint", checkpoint, good[0], bad[1], "--top-k", "2"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].startswith("file") and len(lines) == 3
    assert "dog 66.5%" in lines[1] and "emu 24.5%" in lines[1]
    assert "ERROR" in lines[2] and "1 of 2 files could not be read" in err

    assert main(["predict", "--checkpoint", checkpoint, "--format", "json", *good, *bad]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 7 and sum(r["error"] is None for r in rows) == 4
    assert rows[0]["labels"] == ["dog", "emu", "cat"]

    assert main(["predict", "--checkpoint", checkpoint, "--format", "csv", good[1], bad[0]]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["file", "label1", "prob1", "label2", "prob2", "label3", "prob3", "error"]
    assert table[1][1] == "dog" and float(table[1][2]) == pytest.approx(PROBS[1].item(), 1e-5)
    assert table[2][-1] and table[2][1] == ""


def test_cli_predict_spells_top_k_as_serve_does_and_keeps_topk_hidden(checkpoint, files,
                                                                        capsys):
    good, _ = files
    assert main(["predict", "--checkpoint", checkpoint, good[0], "--format", "json",
                 "--topk", "2"]) == 0  # the old spelling still works
    assert json.loads(capsys.readouterr().out)[0]["labels"] == ["dog", "emu"]
    assert main(["predict", "--checkpoint", checkpoint, good[0], "--top-k", "0"]) == 2
    assert "error: --top-k must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    shown = capsys.readouterr().out
    assert "--top-k" in shown and "--topk" not in shown


def test_cli_predict_exit_codes(checkpoint, files, tmp_path, capsys):
    _, bad = files
    assert main(["predict", "--checkpoint", checkpoint, *bad]) == 1
    (tmp_path / "nothing").mkdir()
    assert main(["predict", "--checkpoint", checkpoint, str(tmp_path / "nothing")]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(tmp_path / "nope"), bad[0]]) == 2
    assert "no checkpoint" in capsys.readouterr().err
