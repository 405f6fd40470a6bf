"""Exact resume and faults: a stopped-and-resumed run ends bitwise identical to one that never
stopped; a full disk or a non-finite loss keeps the last good checkpoint and says so."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from tests.conftest import digits_subset, tiny_model
from vitkit.train import TrainingError, TrainRun, get_recipe, train
from vitkit.train import checkpoint as checkpoint_module

# Every source of randomness on: augmentation, MixUp/CutMix, erasing, stochastic depth, EMA.
RECIPE = get_recipe("small-data", epochs=2, batch_size=16, warmup_epochs=0.5, accum_steps=2,
                    ema_decay=0.9, hflip=True, dropout=0.1)


def _run(out, **kwargs) -> TrainRun:
    model = tiny_model(drop_path_rate=RECIPE.drop_path, drop_rate=RECIPE.dropout)
    return TrainRun(model=model, train_set=digits_subset(64), val_set=digits_subset(32, "test"),
                    recipe=RECIPE, out_dir=out, seed=3, progress=False, **kwargs)


def _state(out) -> dict:
    return torch.load(out / "state" / "last.pt", weights_only=True)


def test_resume_is_bitwise_identical(tmp_path):
    whole = _run(tmp_path / "whole")
    train(whole)  # 8 steps, 4 per epoch
    first = train(_run(tmp_path / "split", stop_after=3))  # stops mid-epoch
    assert first.steps == 3 and not first.finished
    resumed = train(_run(tmp_path / "split", resume=True))
    assert resumed.steps == 8 and resumed.finished
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "split")
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"
    assert a["best_val_top1"] == b["best_val_top1"]
    def logged(out):  # everything but the timing
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        timing = ("images_per_s", "elapsed_s")
        return [{k: v for k, v in row.items() if k not in timing} for row in rows]

    assert logged(tmp_path / "split") == logged(tmp_path / "whole")


def test_starting_over_an_existing_run_needs_resume(tmp_path):
    train(_run(tmp_path, stop_after=1))
    with pytest.raises(ValueError, match="resume=True"):
        train(_run(tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_run(tmp_path / "empty", resume=True))


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    train(_run(tmp_path, stop_after=2, save_every=1))
    before = (tmp_path / "state" / "last.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)  # part of the file lands, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(TrainingError, match=r"disk full .* step 3.*intact"):
        train(_run(tmp_path, resume=True, save_every=1))
    assert (tmp_path / "state" / "last.pt").read_bytes() == before
    assert not list((tmp_path / "state").glob(".*.tmp"))  # no half-written file left
    assert _state(tmp_path)["step"] == 2


def _poison_after(run: TrainRun, monkeypatch, steps: int) -> None:
    """From step `steps` + 1 on, the training forward returns NaN (2 micro-batches a step)."""
    forward = type(run.model).forward
    calls = {"n": 0}

    def poisoned(self, images):
        calls["n"] += 1 if self.training else 0
        logits = forward(self, images)
        return logits * float("nan") if calls["n"] > 2 * steps else logits

    monkeypatch.setattr(type(run.model), "forward", poisoned)


def test_nonfinite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    run = _run(tmp_path, save_every=2)
    _poison_after(run, monkeypatch, 5)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 6.*step 4"):
        train(run)
    assert _state(tmp_path)["step"] == 4
    assert all(torch.isfinite(t).all() for t in _state(tmp_path)["model"].values())


def test_nonfinite_loss_is_found_at_the_next_check_and_named_by_its_first_step(tmp_path,
                                                                              monkeypatch):
    """The loss is read only at log steps and before saves: a NaN at step 5 is found at the
    end of epoch 2 (step 8), reported as step 5, and nothing after step 4 was saved."""
    run = _run(tmp_path, log_every=100)
    _poison_after(run, monkeypatch, 4)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 5.*step 4"):
        train(run)
    assert _state(tmp_path)["step"] == 4
    assert all(torch.isfinite(t).all() for t in _state(tmp_path)["model"].values())


def test_cli_reports_nonfinite_loss_in_one_line(tmp_path, capsys):
    from vitkit.cli.main import main

    code = main(["train", "--data", "digits", "--out", str(tmp_path), "--lr", "1e30",
                 "--epochs", "1", "--batch-size", "64", "--no-progress", "--model",
                 "vit_digits_patch2_8", "--no-ema", "--grad-clip", "0", "--warmup-epochs", "0",
                 "--save-every", "1", "--stop-after", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "non-finite loss" in err[0] and "at step" in err[0]
