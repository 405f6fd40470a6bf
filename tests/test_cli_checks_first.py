"""Arguments are checked before any data is decoded: an image size the model's patch does not
divide, an --out that is a file, an unknown model or recipe, a class mismatch, an unreachable
hub; each is one line."""

from __future__ import annotations

import pytest

import vitkit
from tests.conftest import FAST, TINY, make_class_folder, no_decoding, one_line_error
from vitkit.cli.main import main

pytestmark = pytest.mark.usefixtures("private_cache")


# -- --img-size is checked against --model, the model actually used ------------------
def test_img_size_is_checked_against_the_named_model(tmp_path, capsys, monkeypatch):
    data = make_class_folder(tmp_path / "data", {"cat": 4, "dog": 4})
    no_decoding(monkeypatch)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "o"), "--model",
                 "vit_cifar_patch4_32", "--img-size", "102"])
    line = one_line_error(capsys, code, "patch size 4 of vit_cifar_patch4_32")
    assert "vit_small" not in line


def test_img_size_the_named_model_divides_is_accepted(tmp_path, capsys):
    data = make_class_folder(tmp_path / "data", {"cat": 4, "dog": 4})
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "o"), "--model",
                 "vit_cifar_patch4_32", "--img-size", "12", "--batch-size", "4", *FAST,
                 *[f"--model-arg={k}={v}" for k, v in TINY.items()]])
    assert code == 0, capsys.readouterr().err
    assert vitkit.load_pretrained(tmp_path / "o" / "checkpoint").config.img_size == (12, 12)


def test_img_size_is_checked_against_a_patch_size_override(tmp_path, capsys, monkeypatch):
    no_decoding(monkeypatch)
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "o"), "--model",
                 "vit_cifar_patch4_32", "--model-arg", "patch_size=8", "--img-size", "36"])
    one_line_error(capsys, code, "patch size 8 of vit_cifar_patch4_32")


# -- --out naming a file --------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_out_naming_a_file_is_one_line_before_any_work(tmp_path, capsys, monkeypatch,
                                                        command):
    no_decoding(monkeypatch)
    out = tmp_path / "taken.txt"
    out.write_text("mine")
    extra = ["--pretrained", str(tmp_path / "nothing")] if command == "finetune" else []
    code = main([command, "--data", "digits", "--out", str(out), *extra])
    one_line_error(capsys, code, f"--out {out} is an existing file")
    assert out.read_text() == "mine"


# -- a typo'd --model is reported before the data is decoded --------------------------
def test_unknown_model_is_reported_before_decoding(tmp_path, capsys, monkeypatch):
    no_decoding(monkeypatch)
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "o"), "--model",
                 "vit_tiny_patch16_24"])
    one_line_error(capsys, code, "unknown model 'vit_tiny_patch16_24'")


def test_near_misses_for_a_family_name_start_with_the_common_one():
    with pytest.raises(ValueError, match=r"did you mean vit_tiny_patch16_224, "):
        vitkit.create_model("vit-tiny")


def test_eval_reports_a_class_mismatch_before_decoding(tmp_path, capsys, monkeypatch,
                                                       run_folder):
    data = make_class_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    no_decoding(monkeypatch)
    code = main(["eval", "--checkpoint", str(run_folder / "checkpoint"), "--data", str(data),
                 "--split", "train", "--no-progress"])
    one_line_error(capsys, code, "only in the model: ['emu']")


# -- a hub id without network fails at once, in one clear line ----------------------
def test_an_unreachable_hub_fails_quickly_in_one_line(tmp_path, capsys, monkeypatch):
    import socket
    import time

    from huggingface_hub import constants

    closed = socket.socket()  # bound, never listening: connections are refused
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    start = time.perf_counter()
    code = main(["convert", "timm/vit_tiny_patch16_224.augreg_in21k", str(tmp_path / "x"),
                 "--to", "vitkit"])
    seconds = time.perf_counter() - start
    closed.close()
    line = one_line_error(capsys, code, "is not in the local hub cache and the hub (http")
    assert "augreg_in21k:" not in line and seconds < 5


def test_the_offline_message_has_no_stray_colon(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code = main(["convert", "timm/vit_tiny_patch16_224.augreg_in21k", str(tmp_path / "x"),
                 "--to", "vitkit"])
    line = one_line_error(capsys, code, "augreg_in21k is not in the local hub cache and "
                          "HF_HUB_OFFLINE is set")
    assert "augreg_in21k:" not in line


@pytest.mark.parametrize("recipe, phrase", [
    ("nope", "unknown recipe 'nope': give one of"),
    ("missing/recipe.json", "no such file"),
    ("bad.json", "is not a JSON recipe"),
])
def test_a_bad_recipe_is_one_line_before_decoding(tmp_path, capsys, monkeypatch, recipe,
                                                  phrase):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    no_decoding(monkeypatch)
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "o"), "--recipe", recipe])
    one_line_error(capsys, code, phrase)
