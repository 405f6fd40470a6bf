"""Command line: misuse of any subcommand (data that can't train a classifier, missing
checkpoints, unknown names) ends with exit status 2 and one clear line on stderr, no traceback."""

from __future__ import annotations

import pytest
from PIL import Image

import vitkit
from tests.conftest import FAST, TINY, make_class_folder, one_line_error
from vitkit.cli.main import main

pytestmark = pytest.mark.usefixtures("private_cache")



def _undecodable_folder(root):
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            (root / name / f"{i}.png").write_bytes(b"this is not a png" * i)
    return root


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny vitkit checkpoint folder for 8x8 greyscale images of classes cat and dog."""
    model = vitkit.create_model("vit_digits_patch2_8", **{**TINY, "num_classes": 2})
    return vitkit.save_pretrained(model, tmp_path / "ckpt", class_names=["cat", "dog"])


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "one.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


# -- train: data that can't train a classifier ------------------------------------------------
@pytest.mark.parametrize("layout, phrase", [
    ("empty", "no class sub-folders"),
    ("empty-train", "no class sub-folders"),
    ("single-class", "single class ('onlyclass')"),
    ("single-class-flat", "single class ('onlyclass')"),
    ("undecodable", "could be decoded (first: "),
    ("empty-classes", "no image files"),
])
def test_train_refuses_data_it_cannot_learn_from(tmp_path, capsys, layout, phrase):
    data = tmp_path / "data"
    data.mkdir()
    if layout == "empty-train":
        (data / "train").mkdir()
    elif layout == "single-class":
        make_class_folder(data / "train", {"cat": 3})
        (data / "train" / "cat").rename(data / "train" / "onlyclass")
    elif layout == "single-class-flat":
        make_class_folder(data, {"cat": 3})
        (data / "cat").rename(data / "onlyclass")
    elif layout == "undecodable":
        _undecodable_folder(data)
    elif layout == "empty-classes":
        (data / "cat").mkdir()
        (data / "dog").mkdir()
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST])
    line = one_line_error(capsys, code, phrase)
    assert str(data) in line
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_train_single_class_csv(tmp_path, capsys):
    make_class_folder(tmp_path / "images", {"cat": 2})
    (tmp_path / "labels.csv").write_text("path,label\nimages/cat/0.png,cat\nimages/cat/1.png,cat\n")
    code = main(["train", "--data", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "r"),
                 *FAST])
    one_line_error(capsys, code, "single class ('cat')")


# -- eval -------------------------------------------------------------------------------------
def test_eval_missing_checkpoint(tmp_path, capsys):
    code = main(["eval", "--checkpoint", str(tmp_path / "nope"), "--data", "digits"])
    one_line_error(capsys, code, "no checkpoint at")


def test_eval_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    code = main(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--data", "digits"])
    one_line_error(capsys, code, "holds no model.safetensors")


def test_eval_and_predict_with_a_damaged_checkpoint(tmp_path, capsys, checkpoint, image):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code = main(["eval", "--checkpoint", str(checkpoint), "--data", "digits"])
    one_line_error(capsys, code, "not a readable safetensors file")
    (checkpoint / "config.json").write_text('{"library": "vitkit", "config": [')
    code = main(["predict", "--checkpoint", str(checkpoint), str(image)])
    one_line_error(capsys, code, "config.json: the vitkit description is not valid JSON")


@pytest.mark.parametrize("layout, phrase", [
    ("empty", "no class sub-folders"),
    ("single-class", "single class"),
    ("undecodable", "could be decoded (first: "),
    ("missing", "no data at"),
])
def test_eval_on_bad_data(tmp_path, capsys, checkpoint, layout, phrase):
    data = tmp_path / "data"
    if layout == "empty":
        data.mkdir()
    elif layout == "single-class":
        make_class_folder(data, {"cat": 2})
    elif layout == "undecodable":
        _undecodable_folder(data)
    code = main(["eval", "--checkpoint", str(checkpoint), "--data", str(data),
                 "--out", str(tmp_path / "eval")])
    one_line_error(capsys, code, phrase)


def test_eval_batch_size_zero(tmp_path, capsys, checkpoint):
    code = main(["eval", "--checkpoint", str(checkpoint), "--data", "digits",
                 "--batch-size", "0"])
    one_line_error(capsys, code, "--batch-size must be at least 1")


# -- predict, finetune, analyze, info, convert ------------------------------------------------
def test_predict_missing_checkpoint(tmp_path, capsys, image):
    code = main(["predict", "--checkpoint", str(tmp_path / "nope"), str(image)])
    one_line_error(capsys, code, "no checkpoint at")


def test_predict_no_images(tmp_path, capsys, checkpoint):
    (tmp_path / "empty").mkdir()
    code = main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "empty")])
    one_line_error(capsys, code, "no image files found")


def test_finetune_missing_pretrained(tmp_path, capsys):
    code = main(["finetune", "--pretrained", str(tmp_path / "nope"), "--data", "digits",
                 "--out", str(tmp_path / "ft"), *FAST])
    one_line_error(capsys, code, "no checkpoint at")
    assert not (tmp_path / "ft").exists()


def test_finetune_on_single_class_data(tmp_path, capsys, checkpoint):
    make_class_folder(tmp_path / "data", {"cat": 3})
    code = main(["finetune", "--pretrained", str(checkpoint), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "ft"), *FAST])
    one_line_error(capsys, code, "single class")


def test_analyze_missing_checkpoint(tmp_path, capsys, image):
    code = main(["analyze", "--checkpoint", str(tmp_path / "nope"), "--images", str(image),
                 "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, "no checkpoint at")
    assert not (tmp_path / "out").exists()


def test_analyze_no_images(tmp_path, capsys, checkpoint):
    (tmp_path / "empty").mkdir()
    code = main(["analyze", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "out")])
    one_line_error(capsys, code, "no image files found")


def test_info_unknown_model(capsys):
    code = main(["info", "vit_nope"])
    one_line_error(capsys, code, "unknown model 'vit_nope'")


def test_info_close_name_suggests(capsys):
    code = main(["info", "vit_base_patch16_22"])
    one_line_error(capsys, code, "did you mean vit_base_patch16_224")


def test_info_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    code = main(["info", str(tmp_path)])
    one_line_error(capsys, code, "holds no model.safetensors")


def test_convert_missing_source(tmp_path, capsys):
    code = main(["convert", str(tmp_path / "nope.pth"), str(tmp_path / "out")])
    one_line_error(capsys, code, "no checkpoint at")
    assert not (tmp_path / "out").exists()


def test_convert_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello, this is not a checkpoint")
    code = main(["convert", str(tmp_path / "notes.txt"), str(tmp_path / "out")])
    one_line_error(capsys, code, "not a checkpoint format")


def test_convert_into_a_non_empty_folder(tmp_path, capsys, checkpoint):
    code = main(["convert", str(checkpoint), str(checkpoint)])
    one_line_error(capsys, code, "already exists")


def test_convert_with_another_architecture_named(tmp_path, capsys, checkpoint):
    code = main(["convert", str(checkpoint), str(tmp_path / "out"), "--model",
                 "vit_cifar_patch4_32"])
    line = one_line_error(capsys, code, "does not fit this model's architecture")
    assert "differ in shape" in line and "--model" in line
