"""`vitkit train` and `vitkit finetune` from the command line, on a tiny generated image folder
and on digits, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import vitkit
from tests.conftest import FAST, TINY
from vitkit.cli.main import main
from vitkit.train.defaults import default_model

pytestmark = pytest.mark.usefixtures("private_cache")



def _image_folder(root, per_class=6, size=16):
    """train/ and val/ with two classes of coloured squares, plus one undecodable file."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, colour in (("red", 0), ("blue", 2)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                pixels[..., colour] = 220
                Image.fromarray(pixels).save(folder / f"{i}.png")
    (root / "train" / "red" / "broken.png").write_bytes(b"not a png")
    return root


def test_train_on_an_image_folder(tmp_path, capsys):
    data = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(out), "--batch-size", "4",
                 *FAST, "--mixup", "0.2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "recipe small-data" in printed and "1 skipped" in printed
    model = vitkit.create_model(None, pretrained=out / "checkpoint")
    assert model.meta.class_names == ["blue", "red"] and model.config.img_size == (16, 16)
    assert model.config.patch_size == 2  # a small ViT suited to 16x16 images
    assert set(json.loads((out / "recipe.json").read_text())) >= {"lr", "mixup", "hflip"}
    assert json.loads((out / "recipe.json").read_text())["mixup"] == 0.2
    assert (out / "metrics.jsonl").exists() and list((out / "tensorboard").iterdir())
    assert (out / "state" / "last.pt").exists()


def test_train_digits_with_a_named_model_then_resume(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", str(out), "--model", "vit_digits_patch2_8",
            "--batch-size", "128", *FAST, "--no-ema"]
    assert main([*args, "--stop-after", "3"]) == 3  # stopped early: not finished
    assert main([*args, "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 11 and 0 <= metrics["test_top1"] <= 1
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["hflip"] is False  # no flips on digits
    assert recipe["crop"] == "pad" and not recipe["randaugment"]  # gentle on 8x8 images


def test_finetune_at_a_higher_resolution(tmp_path):
    base = vitkit.create_model("vit_digits_patch2_8", **TINY)
    vitkit.save_pretrained(base, tmp_path / "base", class_names=[str(i) for i in range(10)])
    out = tmp_path / "ft"
    code = main(["finetune", "--pretrained", str(tmp_path / "base"), "--data", "digits",
                 "--out", str(out), "--img-size", "16", "--batch-size", "256", *FAST])
    assert code == 0
    model = vitkit.create_model(None, pretrained=out / "checkpoint")
    assert model.config.img_size == (16, 16) and model.config.embed_dim == TINY["embed_dim"]
    assert json.loads((out / "recipe.json").read_text())["optimizer"] == "sgd"


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "5000"], "larger than the training set"),
    (["--model", "vit_nope"], "unknown model"),
    (["--recipe", "paper-pretrain", "--optimizer", "lbfgs"], "optimizer must be"),
    (["--img-size", "9"], "not divisible by the patch size"),
])
def test_misuse_gets_one_clear_line(tmp_path, capsys, extra, message):
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "x"), *FAST, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_missing_data_folder(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert code == 2 and "no data" in capsys.readouterr().err


def test_default_model_follows_the_image_size():
    assert default_model((1, 8, 8), 10) == ("vit_digits_patch2_8", {
        "img_size": 8, "in_chans": 1, "num_classes": 10})
    assert default_model((3, 32, 32), 10)[0] == "vit_cifar_patch4_32"
    assert default_model((3, 500, 375), 5) == ("vit_small_patch16_224", {  # size unknown
        "img_size": 224, "in_chans": 3, "num_classes": 5})
    assert default_model((3, 500, 375), 5, train_size=245, device_type="cpu") == (
        "vit_tiny_patch16_224", {"img_size": 112, "in_chans": 3, "num_classes": 5})
