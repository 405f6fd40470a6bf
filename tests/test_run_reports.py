"""What a run and the commands report: the per-epoch log without a progress bar, skipped
files counted over every split, the seconds of a resumed run, CSV line endings, and outputs
titled by what the model is."""

from __future__ import annotations

import json

import pytest

import vitkit
from tests.conftest import FAST, TINY, make_class_folder
from vitkit.cli.main import main

pytestmark = pytest.mark.usefixtures("private_cache")


# -- items 8 and 9: the per-epoch log without a progress bar; skipped files over all splits ----
def _with_broken_files(root, count):
    for i in range(count):
        (root / f"broken{i}.png").write_bytes(b"not a png")


def test_no_progress_keeps_epoch_lines_and_skipped_counts_every_split(tmp_path, capsys):
    data = tmp_path / "data"
    make_class_folder(data / "train", {"cat": 4, "dog": 4})
    make_class_folder(data / "val", {"cat": 2, "dog": 2})
    _with_broken_files(data / "train" / "cat", 2)
    _with_broken_files(data / "val" / "dog", 3)
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(out), "--batch-size", "4", *FAST,
                 "--epochs", "2", "--fp32", *[f"--model-arg={k}={v}" for k, v in TINY.items()]])
    printed = capsys.readouterr().out
    assert code == 0
    assert "epoch 1: val_top1" in printed and "epoch 2: val_top1" in printed
    assert "5 skipped" in printed
    assert json.loads((out / "metrics.json").read_text())["skipped_images"] == 5


def test_a_carved_out_val_split_lists_each_skipped_file_once(tmp_path, caplog):
    from vitkit.data import load_splits

    data = make_class_folder(tmp_path / "data", {"cat": 6, "dog": 6})
    _with_broken_files(data / "cat", 2)
    splits = load_splits(str(data), val_split=0.3, progress=False)
    skipped = [path for path, _ in splits.train.skipped + splits.val.skipped]
    assert sorted(path.rsplit("/", 1)[-1] for path in skipped) == ["broken0.png", "broken1.png"]
    assert caplog.text.count("broken0.png") == 1


# -- seconds after --resume, CSV line endings, near-miss model names ------------------
def _summary(printed: str) -> dict:
    return json.loads(next(line for line in printed.splitlines() if line.startswith("{")))


def test_resumed_summary_reports_this_session_and_the_whole_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", str(out), "--model", "vit_digits_patch2_8",
            "--batch-size", "128", *FAST, "--no-ema", "--fp32",
            *[f"--model-arg={k}={v}" for k, v in TINY.items()]]
    assert main([*args, "--stop-after", "5"]) == 3
    first = _summary(capsys.readouterr().out)
    assert main([*args, "--resume"]) == 0
    second = _summary(capsys.readouterr().out)
    assert first["seconds_total"] == first["seconds"]
    assert second["seconds_total"] >= second["seconds"] + first["seconds"] - 0.2


def test_predict_csv_has_unix_line_endings(tmp_path, capsysbinary):
    from tests.conftest import constant_model

    checkpoint = vitkit.save_pretrained(constant_model(), tmp_path / "ckpt")
    images = make_class_folder(tmp_path / "images", {"cat": 2})
    assert main(["predict", "--checkpoint", str(checkpoint), str(images), "--format",
                 "csv"]) == 0
    out = capsysbinary.readouterr().out
    assert b"\r\n" not in out and out.count(b"\n") == 3


# -- outputs name what the model is, the preset plus what was changed ----------------
def test_model_name_says_the_overrides():
    assert vitkit.create_model("vit_cifar_patch4_32").meta.name == "vit_cifar_patch4_32"
    assert vitkit.create_model("vit_cifar_patch4_32", num_classes=3).meta.name == \
        "vit_cifar_patch4_32"  # a new head is still the preset
    model = vitkit.create_model("vit_cifar_patch4_32", patch_size=8, img_size=64)
    assert model.meta.name == "vit_cifar_patch4_32 (img_size=64, patch_size=8)"


def test_trained_model_is_titled_by_what_it_is(tmp_path, capsys):
    data = make_class_folder(tmp_path / "data", {"cat": 4, "dog": 4}, size=(16, 16))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--model",
                 "vit_cifar_patch4_32", "--model-arg", "patch_size=8", "--img-size", "16",
                 "--model-arg", "depth=1", "--batch-size", "4", *FAST, "--fp32"]) == 0
    title = "vit_cifar_patch4_32 (img_size=16, patch_size=8, depth=1)"
    assert vitkit.load_pretrained(run / "checkpoint").meta.name == title
    capsys.readouterr()
    assert main(["info", str(run / "checkpoint")]) == 0
    assert title in capsys.readouterr().out
    assert main(["analyze", "--checkpoint", str(run / "checkpoint"), "--images",
                 str(data / "cat" / "0.png"), "--out", str(tmp_path / "analysis")]) == 0
    report = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert report["model_name"] == title
