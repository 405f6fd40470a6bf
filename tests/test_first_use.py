"""Issue 16: what a new user hits first. Arguments are checked before any data is decoded,
run folders are recognised where a checkpoint is expected, and the per-epoch log stays when
the progress bar is off."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import vitkit
from tests.conftest import TINY, make_class_folder, one_line_error
from vitkit.cli.main import main

pytestmark = pytest.mark.usefixtures("private_cache")

FAST = ["--epochs", "1", "--no-progress", "--no-randaugment", "--warmup-epochs", "0"]


def _no_decoding(monkeypatch):
    """Make any decoding of the data fail loudly: the checks must come first."""
    import vitkit.data.sources as sources

    def refuse(*args, **kwargs):
        raise AssertionError("data was decoded before the arguments were checked")

    monkeypatch.setattr(sources, "decode_cached", refuse)
    monkeypatch.setattr(sources, "_builtin", refuse)


# -- item 3: --img-size is checked against --model, the model actually used ------------------
def test_img_size_is_checked_against_the_named_model(tmp_path, capsys, monkeypatch):
    data = make_class_folder(tmp_path / "data", {"cat": 4, "dog": 4})
    _no_decoding(monkeypatch)
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
    _no_decoding(monkeypatch)
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "o"), "--model",
                 "vit_cifar_patch4_32", "--model-arg", "patch_size=8", "--img-size", "36"])
    one_line_error(capsys, code, "patch size 8 of vit_cifar_patch4_32")


# -- item 4: --out naming a file --------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_out_naming_a_file_is_one_line_before_any_work(tmp_path, capsys, monkeypatch,
                                                        command):
    _no_decoding(monkeypatch)
    out = tmp_path / "taken.txt"
    out.write_text("mine")
    extra = ["--pretrained", str(tmp_path / "nothing")] if command == "finetune" else []
    code = main([command, "--data", "digits", "--out", str(out), *extra])
    one_line_error(capsys, code, f"--out {out} is an existing file")
    assert out.read_text() == "mine"


# -- item 13: a typo'd --model is reported before the data is decoded --------------------------
def test_unknown_model_is_reported_before_decoding(tmp_path, capsys, monkeypatch):
    _no_decoding(monkeypatch)
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "o"), "--model",
                 "vit_tiny_patch16_24"])
    one_line_error(capsys, code, "unknown model 'vit_tiny_patch16_24'")


# -- item 5: a run folder where a checkpoint is expected ---------------------------------------
@pytest.fixture
def run_folder(tmp_path):
    """A folder laid out as `vitkit train --out` leaves it: checkpoint/ holds the model."""
    model = vitkit.create_model("vit_digits_patch2_8", **{**TINY, "num_classes": 3, "in_chans": 3})
    vitkit.save_pretrained(model, tmp_path / "run" / "checkpoint",
                           class_names=["cat", "dog", "emu"])
    (tmp_path / "run" / "state").mkdir()
    return tmp_path / "run"


@pytest.mark.parametrize("command", ["predict", "eval", "info", "analyze", "convert"])
def test_a_run_folder_is_read_as_its_checkpoint(tmp_path, capsys, caplog, run_folder,
                                                command):
    caplog.set_level(logging.INFO, logger="vitkit")
    images = make_class_folder(tmp_path / "images", {"cat": 2, "dog": 2, "emu": 2})
    argv = {
        "predict": ["predict", "--checkpoint", str(run_folder), str(images / "cat")],
        "eval": ["eval", "--checkpoint", str(run_folder), "--data", str(images), "--split",
                 "train", "--fp32", "--no-progress"],
        "info": ["info", str(run_folder)],
        "analyze": ["analyze", "--checkpoint", str(run_folder), "--images",
                    str(images / "dog" / "0.png"), "--out", str(tmp_path / "analysis")],
        "convert": ["convert", str(run_folder), str(tmp_path / "converted"), "--to", "vitkit"],
    }[command]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"using its model in {run_folder / 'checkpoint'}" in caplog.text
    if command == "eval":
        assert (run_folder / "eval" / "metrics.json").exists()


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


def test_a_carved_out_val_split_does_not_list_the_skipped_files_again(tmp_path, caplog):
    from vitkit.data import load_splits

    data = make_class_folder(tmp_path / "data", {"cat": 6, "dog": 6})
    _with_broken_files(data / "cat", 2)
    splits = load_splits(str(data), val_split=0.3, progress=False)
    assert len(splits.train.skipped) == 2 and splits.val.skipped == []
    assert caplog.text.count("broken0.png") == 1


# -- item 11: written files follow the umask --------------------------------------------------
def test_every_file_a_run_writes_follows_the_umask(tmp_path, capsys):
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert main(["train", "--data", "digits", "--out", str(out), "--model",
                     "vit_digits_patch2_8", "--batch-size", "256", *FAST, "--fp32",
                     *[f"--model-arg={k}={v}" for k, v in TINY.items()]]) == 0
        assert main(["convert", str(out / "checkpoint"), str(tmp_path / "timm"), "--to",
                     "timm"]) == 0
        image = tmp_path / "one.png"
        from PIL import Image

        Image.new("L", (8, 8), 90).save(image)
        assert main(["analyze", "--checkpoint", str(out / "checkpoint"), "--images",
                     str(image), "--out", str(tmp_path / "analysis")]) == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "cache" not in p.parts]
    assert len(files) > 10
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if p != image}
    assert set(modes.values()) == {"0o644"}, modes


# -- item 14: seconds after --resume, CSV line endings, near-miss model names ------------------
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


def test_near_misses_for_a_family_name_start_with_the_common_one():
    with pytest.raises(ValueError, match=r"did you mean vit_tiny_patch16_224, "):
        vitkit.create_model("vit-tiny")


def test_eval_reports_a_class_mismatch_before_decoding(tmp_path, capsys, monkeypatch,
                                                       run_folder):
    data = make_class_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    _no_decoding(monkeypatch)
    code = main(["eval", "--checkpoint", str(run_folder / "checkpoint"), "--data", str(data),
                 "--split", "train", "--no-progress"])
    one_line_error(capsys, code, "only in the model: ['emu']")


# -- item 10: a hub id without network fails at once, in one clear line ----------------------
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


# -- item 7: outputs name what the model is, the preset plus what was changed ----------------
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


# -- item 15: a Python one-liner for prediction; --recipe taking a saved recipe.json ----------
def test_classifier_takes_paths_pil_images_and_tensors_as_predict_does(tmp_path):
    import torch
    from PIL import Image

    from vitkit.infer import predict

    model = tiny_random_model()
    path = tmp_path / "a.png"
    Image.new("RGB", (9, 12), (10, 200, 30)).save(path)
    pil = Image.new("RGB", (8, 8), (250, 10, 10))
    pixels = torch.randint(0, 256, (3, 10, 10), dtype=torch.uint8)
    classify = vitkit.Classifier(model, fp32=True)
    answers = classify([path, pil, pixels], top_k=2)
    expected = predict(model, [path, pil, pixels], topk=2, fp32=True)
    for answer, row in zip(answers, expected, strict=True):
        assert [a["label"] for a in answer] == row.labels
        assert [a["score"] for a in answer] == pytest.approx(row.probs)
    assert classify(pil, top_k=1) == answers[1][:1]
    assert classify(torch.stack([pixels, pixels]), top_k=2)[1] == answers[2]
    (tmp_path / "bad.png").write_bytes(b"no")
    with pytest.raises(ValueError, match="bad.png"):
        classify(tmp_path / "bad.png")


def tiny_random_model() -> vitkit.VisionTransformer:
    from tests.conftest import randomise

    model = randomise(vitkit.create_model("vit_digits_patch2_8", **{**TINY, "num_classes": 3,
                                                                      "in_chans": 3})).eval()
    model.meta.class_names = ["cat", "dog", "emu"]
    return model


def test_recipe_json_of_a_run_repeats_it_exactly(tmp_path, capsys):
    from safetensors.torch import load_file

    common = ["train", "--data", "digits", "--model", "vit_digits_patch2_8", "--no-progress",
              "--epochs", "1", "--fp32", "--batch-size", "256",
              *[f"--model-arg={k}={v}" for k, v in TINY.items()]]
    assert main([*common, "--out", str(tmp_path / "a"), "--lr", "0.002", "--no-ema"]) == 0
    saved = tmp_path / "a" / "recipe.json"
    assert main([*common, "--out", str(tmp_path / "b"), "--recipe", str(saved)]) == 0
    assert (tmp_path / "b" / "recipe.json").read_text() == saved.read_text()
    first = load_file(tmp_path / "a" / "checkpoint" / "model.safetensors")
    second = load_file(tmp_path / "b" / "checkpoint" / "model.safetensors")
    assert all(first[k].equal(second[k]) for k in first)


@pytest.mark.parametrize("recipe, phrase", [
    ("nope", "unknown recipe 'nope': give one of"),
    ("missing/recipe.json", "no such file"),
    ("bad.json", "is not a JSON recipe"),
])
def test_a_bad_recipe_is_one_line_before_decoding(tmp_path, capsys, monkeypatch, recipe,
                                                  phrase):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    _no_decoding(monkeypatch)
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "o"), "--recipe", recipe])
    one_line_error(capsys, code, phrase)


# -- item 16: one run per run folder ----------------------------------------------------------
HOLD = """
import sys, time
from vitkit.train.lock import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(out):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(vitkit.__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_run_into_a_busy_folder_stops_at_once_and_resume_after_a_crash_works(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", str(out), "--model", "vit_digits_patch2_8",
            "--batch-size", "256", *FAST, "--no-ema", "--fp32",
            *[f"--model-arg={k}={v}" for k, v in TINY.items()]]
    assert main([*args, "--stop-after", "2"]) == 3
    lines_before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    child = _holder(out)
    try:
        with monkeypatch.context() as patched:
            _no_decoding(patched)
            code = main([*args, "--resume"])
        one_line_error(capsys, code, f"{out} is in use by another run (PID {child.pid})")
        assert (out / "metrics.jsonl").read_text() == lines_before
    finally:
        child.kill()  # as kill -9: the OS drops the lock
        child.wait()
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["finished"]


def test_a_failed_first_run_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / "missing"), "--out", str(out)])
    assert code == 2 and not out.exists()


# -- item 2: warmup fitted to short runs; a warning when the user's warmup swamps the run -----
def _recipe(*argv):
    from vitkit.cli.main import build_parser
    from vitkit.cli.recipe_args import recipe_from_args

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", *argv])
    return recipe_from_args(args)


@pytest.mark.parametrize("epochs, warmup", [("2", 0.2), ("6", 0.6), ("100", 5.0),
                                            ("300", 5.0)])
def test_warmup_is_capped_to_a_tenth_of_a_short_run(epochs, warmup, caplog):
    recipe = _recipe("--epochs", epochs)
    assert recipe.warmup_epochs == pytest.approx(warmup)
    assert "warmup" not in caplog.text


def test_a_short_run_ends_with_a_decayed_learning_rate():
    from vitkit.train.optim import lr_at

    recipe = _recipe("--epochs", "2")
    steps_per_epoch = 10
    total = 2 * steps_per_epoch
    warmup = round(recipe.warmup_epochs * steps_per_epoch)
    assert lr_at(total - 1, total, warmup, recipe) < 0.05 * recipe.lr


@pytest.mark.parametrize("argv, phrase", [
    (["--epochs", "2", "--warmup-epochs", "5"], "not at all"),
    (["--epochs", "6", "--warmup-epochs", "5"], "over the last 1 epochs only"),
])
def test_a_user_warmup_longer_than_half_the_run_is_warned_about(argv, phrase, caplog):
    recipe = _recipe(*argv)
    assert recipe.warmup_epochs == 5  # the user's value is kept
    assert "--warmup-epochs 5 is more than half" in caplog.text and phrase in caplog.text


# -- item 1: defaults that fit the data and the machine; the plan, timed, before training -----
def test_plan_helpers_fit_small_data_and_the_cpu():
    from vitkit.cli.plan import default_batch, fit_epochs, large_image_model
    from vitkit.train import get_recipe

    assert default_batch(256, 245) == 32 and default_batch(512, 245) == 32
    assert default_batch(256, 13_000) == 256 and default_batch(64, 3) == 1
    assert large_image_model(245, "cpu") == ("vit_tiny_patch16_224", 112)
    assert large_image_model(50_000, "cuda") == ("vit_small_patch16_224", 224)
    recipe = get_recipe("small-data")
    assert fit_epochs(recipe, 1.0, "cpu") == 100  # fast epochs: the recipe's own
    assert fit_epochs(recipe, 60.0, "cpu") == 30  # 30 min of 1-minute epochs
    assert fit_epochs(recipe, 3600.0, "cpu") == 10  # never fewer than 10


def test_first_command_on_a_small_folder_plans_instead_of_failing(tmp_path, capsys):
    data = make_class_folder(tmp_path / "data", {"cat": 10, "dog": 10}, size=(80, 96))
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(out), "--no-progress", "--fp32",
                 "--device", "cpu", "--stop-after", "1"])
    printed = capsys.readouterr().out
    assert code == 3, printed  # stopped after one step, as asked
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["batch_size"] == 4  # capped to the 20 images: 5 steps an epoch
    plan = next(line for line in printed.splitlines() if line.startswith("plan: "))
    assert plan.startswith("plan: vit_tiny_patch16_224 (img_size=112) at 112 px, ")
    assert f"{recipe['epochs']:g} epochs of 20 images, batch 4 (" in plan
    assert " on cpu (" in plan and "s/step, from timed steps)" in plan
    assert "hint: 20 images are few" in printed and "vitkit finetune --pretrained" in printed


def test_finetune_caps_its_batch_to_small_data(tmp_path, capsys):
    base = vitkit.create_model("vit_digits_patch2_8", **{**TINY, "in_chans": 3})
    vitkit.save_pretrained(base, tmp_path / "base", class_names=[str(i) for i in range(10)])
    data = make_class_folder(tmp_path / "data", {"cat": 5, "dog": 5})
    out = tmp_path / "ft"
    code = main(["finetune", "--pretrained", str(tmp_path / "base"), "--data", str(data),
                 "--out", str(out), "--no-progress", "--fp32", "--epochs", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert json.loads((out / "recipe.json").read_text())["batch_size"] == 2
    assert "plan: " in printed and "hint:" not in printed  # already fine-tuning


def test_resume_keeps_the_planned_schedule(tmp_path, capsys, monkeypatch):
    import vitkit.cli.plan as plan

    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", str(out), "--model", "vit_digits_patch2_8",
            "--no-progress", "--fp32", *[f"--model-arg={k}={v}" for k, v in TINY.items()]]
    monkeypatch.setattr(plan, "TIME_BUDGET_S", {"cpu": 0.0, "cuda": 0.0})  # the minimum
    assert main([*args, "--stop-after", "2"]) == 3
    assert "hint:" not in capsys.readouterr().out  # no pretrained ViT takes 8x8 digits
    first = json.loads((out / "recipe.json").read_text())
    assert first["epochs"] == plan.MIN_EPOCHS
    monkeypatch.setattr(plan, "TIME_BUDGET_S", {"cpu": 1e9, "cuda": 1e9})  # would be 100
    assert main([*args, "--resume", "--stop-after", "3"]) == 3
    assert json.loads((out / "recipe.json").read_text()) == first
