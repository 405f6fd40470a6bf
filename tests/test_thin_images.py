"""Images that would become huge once their shorter side is resized (a 172-byte 30000x1 PNG,
1x120000, 8000x2) are refused from their header, quickly and in bounded memory, by the one
preprocessing path every command takes (`load_image`, `resize_crop`), and by `vitkit
predict`, `eval` and `train` (peak memory measured in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import vitkit
from tests.conftest import make_class_folder
from tests.serve_helpers import tiny_checkpoint
from vitkit.data import ImageDecodeError, load_image, resize_crop
from vitkit.data.images import MAX_ASPECT_RATIO, MAX_RESIZED_PIXELS, shape_problem

THIN = [(30000, 1), (1, 120000), (8000, 2)]
PEAK_LIMIT_MB = 1500  # the bound for every command on these files


@pytest.mark.parametrize("size", THIN)
def test_load_image_refuses_thin_images_from_the_header(tmp_path, size):
    path = tmp_path / "thin.png"
    Image.new("RGB", size).save(path)
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError) as error:
        load_image(path, 224, crop_pct=0.875)
    assert time.perf_counter() - start < 0.5
    message = str(error.value)
    assert str(path) in message and f"{size[0]}x{size[1]}" in message
    assert "too thin" in message and f"{MAX_ASPECT_RATIO}:1" in message


def test_aspect_ratio_limit_is_inclusive_and_large_resizes_are_refused(tmp_path):
    ok, thin = tmp_path / "ok.png", tmp_path / "thin.png"
    Image.new("RGB", (MAX_ASPECT_RATIO * 4, 4)).save(ok)
    Image.new("RGB", (MAX_ASPECT_RATIO * 4 + 1, 4)).save(thin)
    assert load_image(ok, 16).shape == (3, 16, 16)
    with pytest.raises(ImageDecodeError, match="too thin"):
        load_image(thin, 16)
    # 20:1 is not too thin, but at a 1024-pixel shorter side it is 21M pixels
    assert shape_problem(2000, 100, (224, 224)) is None
    problem = shape_problem(2000, 100, (1024, 1024))
    assert problem is not None and f"{MAX_RESIZED_PIXELS:,}" in problem


def test_resize_crop_refuses_thin_pixels_before_allocating():
    pixels = torch.zeros(3, 1, 30000, dtype=torch.uint8)
    with pytest.raises(ValueError, match="too thin: 30000x1"):
        resize_crop(pixels, 224, 0.875)
    assert resize_crop(torch.zeros(3, 10, 300, dtype=torch.uint8), 8).shape == (3, 8, 8)


SCRIPT = """
import sys
from vitkit.cli.main import main
ckpt, data, out = sys.argv[1:4]
codes = [main(["predict", "--checkpoint", ckpt, f"{data}/test/cat/wide.png",
               f"{data}/test/dog/tall.png", f"{data}/test/dog/thin.png", f"{data}/test/cat/0.png"]),
         main(["eval", "--checkpoint", ckpt, "--data", data, "--no-progress", "--out", out + "/e"]),
         main(["train", "--data", data, "--out", out + "/t", "--model", "vit_tiny_patch16_224",
               "--img-size", "32", "--model-arg", "patch_size=8", "--model-arg", "depth=1",
               "--epochs", "1", "--no-progress", "--no-randaugment", "--warmup-epochs", "0",
               "--batch-size", "4"])]
print("codes", codes)
"""


# Runs `-m MODULE ARGS` or `-c CODE ARGS` and prints the process's own peak memory at exit.
# (Not wait4's ru_maxrss: Linux counts the parent's memory at fork time in it, so a child of
# a large pytest process would be charged the parent's gigabytes.)
MEASURED = """
import atexit, runpy, sys

def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("peak-kb", line.split()[1], flush=True)

atexit.register(_peak)
mode, target, *sys.argv[1:] = sys.argv[1:]
sys.argv[0] = target
if mode == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<measured>", "exec"), {"__name__": "__main__"})
"""


def run_measured(args: list[str], log: Path, timeout: float = 120) -> tuple[int, str, float]:
    """Run a Python subprocess (output to `log`): exit code, output, its peak RSS in MB."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(vitkit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as out:
        try:
            code = subprocess.run([sys.executable, "-c", MEASURED, *args], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{args} ran over {timeout} s") from None
    output = log.read_text()
    peaks = [int(line.split()[1]) for line in output.splitlines() if line.startswith("peak-kb ")]
    assert peaks, output
    return code, output, peaks[-1] / 1024


def test_predict_eval_train_skip_thin_images_in_bounded_memory(tmp_path):
    data = tmp_path / "data"
    for split in ("train", "test"):
        make_class_folder(data / split, {"cat": 2, "dog": 2, "emu": 1}, size=(16, 16))
        for (width, height), where in zip(THIN, ("cat/wide", "dog/tall", "dog/thin"),
                                          strict=True):
            Image.new("RGB", (width, height)).save(data / split / f"{where}.png")
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    code, output, peak = run_measured(["-c", SCRIPT, str(checkpoint), str(data),
                                       str(tmp_path / "out")], tmp_path / "log.txt")
    assert code == 0 and "codes [0, 0, 0]" in output, output
    # predict names each file; eval and train list the skipped files of each split they read
    assert output.count("refused as too thin") >= 3 + 3 + 6, output
    assert "Traceback" not in output
    assert peak < PEAK_LIMIT_MB, f"peak {peak:.0f} MB"


def test_cli_predict_of_a_thin_image_is_refused_in_bounded_memory(tmp_path):
    image = tmp_path / "wide.png"
    Image.new("RGB", (1, 120000)).save(image)
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    start = time.perf_counter()
    code, output, peak = run_measured(["-m", "vitkit", "predict", "--checkpoint",
                                       str(checkpoint), str(image)], tmp_path / "log.txt")
    assert code == 1 and "too thin: 1x120000" in output and "Traceback" not in output
    assert peak < PEAK_LIMIT_MB and time.perf_counter() - start < 60
