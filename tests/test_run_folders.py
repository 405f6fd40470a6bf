"""A run folder: recognised where a checkpoint is expected, one run at a time, files that
follow the umask, and nothing left behind by a run that failed before it began."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import vitkit
from tests.conftest import FAST, TINY, make_class_folder, no_decoding, one_line_error
from vitkit.cli.main import main

pytestmark = pytest.mark.usefixtures("private_cache")


# -- a run folder where a checkpoint is expected ---------------------------------------
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


# -- written files follow the umask --------------------------------------------------
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


# -- one run per run folder ----------------------------------------------------------
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
            no_decoding(patched)
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
