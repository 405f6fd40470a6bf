"""`vitkit.plan_training`: every decision of a run made in the library. The Python path and the
command line train the same model; a recipe reaches the model whichever way a run starts; the
plan fits the data and the device; library errors name library arguments and the command
line shows them as flags."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import vitkit
from tests.conftest import FAST, TINY, digits_subset, make_class_folder, no_decoding
from vitkit.cli.main import as_flags, build_parser, main
from vitkit.data import DataSplits, ImageTensorDataset
from vitkit.train import defaults, get_recipe

pytestmark = pytest.mark.usefixtures("private_cache")

MODEL_ARGS = [f"--model-arg={k}={v}" for k, v in TINY.items()]


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "checkpoint" / "model.safetensors")


def test_python_and_the_command_line_give_the_same_run(tmp_path, capsys):
    cli, python = tmp_path / "cli", tmp_path / "python"
    assert main(["train", "--data", "digits", "--out", str(cli), "--model",
                 "vit_digits_patch2_8", *MODEL_ARGS, "--epochs", "1", "--batch-size", "128",
                 "--drop-path", "0.1", "--dropout", "0.1", "--no-progress", "--seed", "5"]) == 0
    planned = vitkit.plan_training(
        "digits", python, model="vit_digits_patch2_8", model_args=TINY,
        overrides={"epochs": 1, "batch_size": 128, "drop_path": 0.1, "dropout": 0.1},
        progress=False, seed=5)
    config = planned.model.config
    assert config.drop_path_rate == 0.1 and config.drop_rate == 0.1  # the recipe's
    summary = planned.fit()
    assert summary["finished"] and summary["test_top1"] is not None
    assert (cli / "recipe.json").read_text() == (python / "recipe.json").read_text()
    config = json.loads((cli / "checkpoint" / "config.json").read_text())
    assert config == json.loads((python / "checkpoint" / "config.json").read_text())
    a, b = _weights(cli), _weights(python)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((python / "metrics.json").read_text())
    assert metrics["test_top1"] == summary["test_top1"]


def _photos(count: int = 24, side: int = 32) -> DataSplits:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8,
                           generator=generator)
    train = ImageTensorDataset(images, torch.arange(count) % 2, ["a", "b"])
    return DataSplits(train=train, val=None, test=None, name="photos")


def test_a_named_recipe_is_applied_whole_to_the_model(tmp_path):
    planned = vitkit.plan_training(_photos(), tmp_path / "run", recipe="small-data",
                                   model_args={"depth": 1}, precision="fp32")
    recipe = get_recipe("small-data")
    assert planned.model.config.drop_path_rate == recipe.drop_path == 0.1
    assert planned.recipe.batch_size == 4  # 24 images: 6 steps an epoch, not 1
    assert planned.recipe.warmup_epochs <= 0.1 * planned.recipe.epochs
    assert planned.model.meta.name.startswith("vit_cifar_patch4_32")
    assert "plan: " in str(planned) and "recipe small-data: " in str(planned)
    assert not (tmp_path / "run").exists()  # planning writes nothing


def test_a_paper_pretrain_recipe_gets_its_representation_layer(tmp_path):
    planned = vitkit.plan_training(_photos(), tmp_path / "run", recipe="paper-pretrain",
                                   model_args={"depth": 1}, precision="fp32")
    assert planned.model.config.representation_size == planned.model.config.embed_dim


def test_a_time_budget_cuts_the_epochs_and_an_explicit_number_wins(tmp_path):
    tight = vitkit.plan_training(_photos(), tmp_path / "a", model_args={"depth": 1},
                                 precision="fp32", time_budget=1e-6)
    assert tight.recipe.epochs == defaults.MIN_EPOCHS
    given = vitkit.plan_training(_photos(), tmp_path / "b", model_args={"depth": 1},
                                 precision="fp32", time_budget=1e-6, overrides={"epochs": 3})
    assert given.recipe.epochs == 3


def test_library_errors_name_arguments_and_the_cli_shows_flags(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"img_size=10 is not divisible by the patch size 4"):
        vitkit.plan_training("digits", tmp_path / "x", model="vit_cifar_patch4_32", img_size=10)
    with pytest.raises(TypeError, match="unknown options"):
        vitkit.plan_training("digits", tmp_path / "x", epochs=3)
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "x"), "--model",
                 "vit_cifar_patch4_32", "--img-size", "10"])
    assert code == 2
    assert "--img-size 10 is not divisible by the patch size 4" in capsys.readouterr().err


def test_flags_replace_argument_names_the_command_knows():
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert as_flags("use batch_size=12 or less", train) == "use --batch-size 12 or less"
    assert as_flags("pass resume=True to continue", train) == "pass --resume to continue"
    assert as_flags("pass ema=False", train) == "pass --no-ema"
    assert as_flags("in fp32 (precision='fp32')", train) == "in fp32 (--precision fp32)"
    assert as_flags("lower the learning rate (lr=)", train) == "lower the learning rate (--lr)"
    assert as_flags("choose another out=", train) == "choose another --out"
    assert as_flags("x=1 and num_heads=3 stay", train) == "x=1 and num_heads=3 stay"


# -- the recipe's warmup and batch, fitted to the run ------------------------------------------
@pytest.mark.parametrize("epochs, warmup", [(2, 0.2), (6, 0.6), (100, 5.0), (300, 5.0)])
def test_warmup_is_capped_to_a_tenth_of_a_short_run(epochs, warmup, caplog):
    recipe = defaults.fit_warmup(get_recipe("small-data", epochs=epochs), given=False)
    assert recipe.warmup_epochs == pytest.approx(warmup)
    assert "warmup" not in caplog.text


def test_a_short_run_ends_with_a_decayed_learning_rate():
    from vitkit.train.optim import lr_at

    recipe = defaults.fit_warmup(get_recipe("small-data", epochs=2), given=False)
    total = 2 * 10
    warmup = round(recipe.warmup_epochs * 10)
    assert lr_at(total - 1, total, warmup, recipe) < 0.05 * recipe.lr


@pytest.mark.parametrize("epochs, phrase", [(2, "not at all"), (6, "over the last 1 epochs")])
def test_a_user_warmup_longer_than_half_the_run_is_warned_about(epochs, phrase, caplog):
    recipe = defaults.fit_warmup(get_recipe("small-data", epochs=epochs, warmup_epochs=5),
                                 given=True)
    assert recipe.warmup_epochs == 5  # the user's value is kept
    assert "warmup_epochs=5 is more than half" in caplog.text and phrase in caplog.text


def test_the_cli_shows_library_warnings_with_its_flags(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vitkit")
    assert main(["train", "--data", "digits", "--out", str(tmp_path / "run"), "--model",
                 "vit_digits_patch2_8", *MODEL_ARGS, "--epochs", "2", "--warmup-epochs", "5",
                 "--no-progress", "--fp32", "--stop-after", "1"]) == 3
    assert "--warmup-epochs 5 is more than half" in caplog.text


def test_plan_helpers_fit_small_data_and_the_cpu():
    assert defaults.default_batch(256, 245) == 32 and defaults.default_batch(512, 245) == 32
    assert defaults.default_batch(256, 13_000) == 256 and defaults.default_batch(64, 3) == 1
    assert defaults.large_image_model(245, "cpu") == ("vit_tiny_patch16_224", 112)
    assert defaults.large_image_model(50_000, "cuda") == ("vit_small_patch16_224", 224)
    recipe = get_recipe("small-data")
    cpu = defaults.TIME_BUDGET_S["cpu"]
    assert defaults.fit_epochs(recipe, 1.0, cpu) == 100  # fast epochs: the recipe's own
    assert defaults.fit_epochs(recipe, 60.0, cpu) == 30  # 30 min of 1-minute epochs
    assert defaults.fit_epochs(recipe, 3600.0, cpu) == 10  # never fewer than 10


def test_default_model_follows_the_image_size():
    assert defaults.default_model((1, 8, 8), 10) == ("vit_digits_patch2_8", {
        "img_size": 8, "in_chans": 1, "num_classes": 10})
    assert defaults.default_model((3, 32, 32), 10)[0] == "vit_cifar_patch4_32"
    assert defaults.default_model((3, 500, 375), 5) == ("vit_small_patch16_224", {
        "img_size": 224, "in_chans": 3, "num_classes": 5})  # size unknown
    assert defaults.default_model((3, 500, 375), 5, train_size=245, device_type="cpu") == (
        "vit_tiny_patch16_224", {"img_size": 112, "in_chans": 3, "num_classes": 5})


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
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", str(out), "--model", "vit_digits_patch2_8",
            "--no-progress", "--fp32", *MODEL_ARGS]
    monkeypatch.setattr(defaults, "TIME_BUDGET_S", {"cpu": 0.0, "cuda": 0.0})  # the minimum
    assert main([*args, "--stop-after", "2"]) == 3
    assert "hint:" not in capsys.readouterr().out  # no pretrained ViT takes 8x8 digits
    first = json.loads((out / "recipe.json").read_text())
    assert first["epochs"] == defaults.MIN_EPOCHS
    monkeypatch.setattr(defaults, "TIME_BUDGET_S", {"cpu": 1e9, "cuda": 1e9})  # would be 100
    assert main([*args, "--resume", "--stop-after", "3"]) == 3
    assert json.loads((out / "recipe.json").read_text()) == first


def test_recipe_json_of_a_run_repeats_it_exactly(tmp_path, capsys):
    common = ["train", "--data", "digits", "--model", "vit_digits_patch2_8", "--no-progress",
              "--epochs", "1", "--fp32", "--batch-size", "256", *MODEL_ARGS]
    assert main([*common, "--out", str(tmp_path / "a"), "--lr", "0.002", "--no-ema"]) == 0
    saved = tmp_path / "a" / "recipe.json"
    assert main([*common, "--out", str(tmp_path / "b"), "--recipe", str(saved)]) == 0
    assert (tmp_path / "b" / "recipe.json").read_text() == saved.read_text()
    first, second = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(first[k].equal(second[k]) for k in first)


@pytest.mark.parametrize("recipe, phrase", [
    ("nope", "unknown recipe 'nope': give one of"),
    ("missing/recipe.json", "no such file"),
])
def test_a_bad_recipe_fails_in_python_before_decoding(tmp_path, monkeypatch, recipe, phrase):
    monkeypatch.chdir(tmp_path)
    no_decoding(monkeypatch)
    with pytest.raises((ValueError, FileNotFoundError), match=phrase):
        vitkit.plan_training("digits", tmp_path / "o", recipe=recipe)


# -- the number a run reports is the number `vitkit eval` gives --------------------------------
def test_validation_is_in_the_dtype_of_eval_whatever_the_training_dtype(tmp_path, capsys):
    from vitkit.device import evaluation_dtype
    from vitkit.infer import evaluate

    train, val = digits_subset(128), digits_subset(64, "test")
    splits = DataSplits(train=train, val=val, test=None, name="digits")
    summary = vitkit.plan_training(splits, tmp_path / "run", model="vit_digits_patch2_8",
                                   model_args=TINY, precision="bf16", progress=False,
                                   overrides={"epochs": 2, "batch_size": 32}).fit()
    best = vitkit.load_pretrained(tmp_path / "run" / "checkpoint")
    again = evaluate(best, val, dtype=evaluation_dtype("cpu"))["top1"]
    assert summary["best_val_top1"] == again


def test_a_runs_validation_top1_is_what_eval_reports_for_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--out", str(out), "--model",
                 "vit_digits_patch2_8", *MODEL_ARGS, *FAST, "--batch-size", "128",
                 "--val-split", "0.2", "--precision", "bf16"]) == 0
    best = json.loads((out / "metrics.json").read_text())["best_val_top1"]
    assert main(["eval", "--checkpoint", str(out), "--data", "digits", "--split", "val",
                 "--val-split", "0.2", "--no-progress"]) == 0
    assert json.loads((out / "eval" / "metrics.json").read_text())["top1"] == best
