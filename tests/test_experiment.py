"""`vitkit experiment data-scaling` on digits: class-balanced nested subsets, an equal budget
of images seen, results.json and the plot, and a stopped experiment continues."""

from __future__ import annotations

import json

import pytest
import torch

import vitkit
from tests.conftest import digits_subset
from vitkit.cli.main import main
from vitkit.data import load_digits
from vitkit.experiment import balanced_subset, crossings

pytestmark = pytest.mark.usefixtures("private_cache")

GENTLE = ["--batch-size", "32", "--precision", "fp32", "--recipe-arg", "crop=pad",
          "--recipe-arg", "pad=1", "--recipe-arg", "randaugment=false", "--recipe-arg", "mixup=0",
          "--recipe-arg", "cutmix=0", "--recipe-arg", "random_erasing=0"]
ARGS = ["--models", "vit_digits_patch2_8", "--fractions", "0.3", "0.1", "--seeds", "0", "1",
        "--epochs-at-full", "0.5", "--model-arg", "depth=1", "--model-arg", "embed_dim=16",
        "--model-arg", "num_heads=2", "--model-arg", "mlp_dim=32", *GENTLE]


def test_subsets_are_balanced_and_nested():
    data = digits_subset(400)
    small, large = balanced_subset(data, 0.1, 3), balanced_subset(data, 0.5, 3)
    counts = torch.bincount(small.targets, minlength=10)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 2
    assert set(small.images.view(len(small), -1).sum(1).tolist()) <= set(
        large.images.view(len(large), -1).sum(1).tolist())


def test_data_scaling_writes_results_and_plot_and_continues(tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["experiment", "data-scaling", "--data", "digits", "--out", str(out), *ARGS]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 4 and (out / "data_scaling.png").stat().st_size > 1000
    sizes = sorted({run["train_images"] for run in results["runs"].values()})
    per_class = torch.bincount(load_digits("train").targets)
    assert sizes == [sum(max(1, round(f * int(n))) for n in per_class) for f in (0.1, 0.3)]
    for run in results["runs"].values():  # the same images seen: epochs x size is the budget
        assert abs(run["epochs"] * run["train_images"] - 0.5 * 1437) < 1
        assert 0.0 <= run["test_top1"] <= 1.0
    summary = results["summary"]["vit_digits_patch2_8"]
    assert [row["seeds"] for row in summary] == [2, 2]
    # Stop it mid-way: forget one run; rerunning trains only that one again.
    del results["runs"]["vit_digits_patch2_8|0.1|1"]
    (out / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    assert main(["experiment", "data-scaling", "--data", "digits", "--out", str(out), *ARGS]) == 0
    again = json.loads((out / "results.json").read_text())
    assert len(again["runs"]) == 4
    assert main(["experiment", "data-scaling", "--data", "digits", "--out", str(out), *ARGS,
                 "--recipe-arg", "lr=0.5"]) == 2  # another recipe into the same folder


def test_crossings_interpolate_on_a_log_scale():
    summary = {"vit": [{"train_images": 100, "mean": 0.2}, {"train_images": 10000, "mean": 0.8}],
               "cnn": [{"train_images": 100, "mean": 0.4}, {"train_images": 10000, "mean": 0.6}]}
    assert crossings(summary, "vit", "cnn") == pytest.approx([1000.0])


def test_a_teacher_adds_a_distilled_arm_taught_by_its_run_at_each_size(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["--models", "vit_digits_patch2_8", "resnet20", "--teacher", "resnet20",
            "--fractions", "0.2", "--epochs-at-full", "0.3", *GENTLE]
    assert main(["experiment", "data-scaling", "--data", "digits", "--out", str(out),
                 *args]) == 0
    results = json.loads((out / "results.json").read_text())
    arm = "vit_digits_patch2_8 distilled from resnet20"
    assert set(results["summary"]) == {"vit_digits_patch2_8", "resnet20", arm}
    student = vitkit.load_pretrained(out / "runs" / f"{arm.replace(' ', '_')}_f0.2_s0" /
                                     "checkpoint")
    assert student.config.distilled and results["setup"]["teacher"] == "resnet20"
    assert main(["experiment", "data-scaling", "--data", "digits", "--out", str(tmp_path / "x"),
                 "--models", "vit_digits_patch2_8", "--teacher", "resnet20", *args[5:]]) == 2
