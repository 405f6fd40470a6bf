"""Every command's default path as it runs on each kind of CPU: with bf16 matrix units (AMX or
AVX-512 BF16, simulated here by the capability check, so that `precision='auto'` measures
both dtypes), and without them (AVX2: fp32, no measurement). No test here forces a dtype.
The suite must pass on AVX2-only, AVX-512 BF16 and AMX CPUs alike; this file runs the
branch each of them takes on whichever CPU runs it."""

from __future__ import annotations

import json

import pytest
import torch

import vitkit
from tests.conftest import TINY
from vitkit.cli.main import main

MODEL_ARGS = [f"--model-arg={k}={v}" for k, v in TINY.items()]
QUICK = ["--no-progress", "--epochs", "1", "--stop-after", "2"]


@pytest.fixture(params=["bf16 units", "no bf16 units"])
def cpu_kind(request, monkeypatch, private_cache) -> str:
    """The CPU's bf16 capability as vitkit reads it, set for the test (the probe's cache is
    the test's own, so the measurement runs)."""
    from vitkit import device

    has = request.param == "bf16 units"
    for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda has=has: has, raising=False)
    device.cpu_has_bf16_matrix_units.cache_clear()
    yield request.param
    device.cpu_has_bf16_matrix_units.cache_clear()


def _probed(cache) -> list[dict]:
    """The precision measurements `precision='auto'` made (empty without bf16 units)."""
    path = cache / "precision.json"
    return list(json.loads(path.read_text()).values()) if path.exists() else []


def _check_probe(cpu_kind: str, cache) -> None:
    probed = _probed(cache)
    if cpu_kind == "bf16 units":
        assert probed and all(p["dtype"] in ("fp32", "bf16") for p in probed)
    else:
        assert probed == []  # emulated bf16 is never measured, never chosen


@pytest.mark.parametrize("model_args", [
    pytest.param(MODEL_ARGS, id="vit"),
    pytest.param(["--model", "resnet20"], id="resnet"),
    pytest.param(["--model", "vit_base_r50_s16_224", "--img-size", "32", "--model-arg",
                  "resnet_layers=[1,1,1]", "--model-arg", "resnet_width=32",
                  *MODEL_ARGS], id="hybrid"),
])
def test_train_with_its_defaults(tmp_path, capsys, cpu_kind, private_cache, model_args):
    out = tmp_path / "run"
    code = main(["train", "--data", "digits", "--out", str(out), *QUICK, *model_args])
    assert code == 3, capsys.readouterr().err
    assert (out / "state" / "last.pt").exists()
    _check_probe(cpu_kind, private_cache)


def test_pretrain_with_its_defaults(tmp_path, capsys, cpu_kind, private_cache):
    out = tmp_path / "mpp"
    code = main(["pretrain", "--data", "digits", "--out", str(out), *QUICK, *MODEL_ARGS])
    assert code == 3, capsys.readouterr().err
    _check_probe(cpu_kind, private_cache)
    assert main(["pretrain", "--data", "digits", "--out", str(out), "--no-progress",
                 "--epochs", "1", "--resume", *MODEL_ARGS]) == 0
    vit = vitkit.load_pretrained(out / "checkpoint")
    assert vit.config.num_classes == 0


def test_finetune_eval_and_predict_with_their_defaults(tmp_path, capsys, cpu_kind,
                                                       private_cache):
    base = vitkit.create_model("vit_digits_patch2_8", **TINY)
    vitkit.save_pretrained(base, tmp_path / "base", class_names=[str(i) for i in range(10)])
    out = tmp_path / "ft"
    assert main(["finetune", "--pretrained", str(tmp_path / "base"), "--data", "digits",
                 "--out", str(out), "--no-progress", "--epochs", "1"]) == 0
    _check_probe(cpu_kind, private_cache)
    assert main(["eval", "--checkpoint", str(out), "--data", "digits", "--no-progress"]) == 0
    assert json.loads((out / "eval" / "metrics.json").read_text())["dtype"] == "float32"
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (8, 8), 200).save(image)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), str(image)]) == 0
    assert "digit.png" in capsys.readouterr().out
    inference = [p for p in _probed(private_cache) if p.get("for") == "inference"]
    assert len(inference) == (cpu_kind == "bf16 units")  # predict measured its dtype once


def test_demo_with_its_defaults(tmp_path, capsys, cpu_kind, private_cache):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "1",
                 "--no-progress"]) == 0
    _check_probe(cpu_kind, private_cache)


def test_experiment_with_its_defaults(tmp_path, capsys, cpu_kind, private_cache):
    code = main(["experiment", "data-scaling", "--data", "digits", "--models",
                 "vit_digits_patch2_8", "--fractions", "0.1", "--epochs-at-full", "0.2",
                 "--out", str(tmp_path / "exp"), *MODEL_ARGS])
    assert code == 0, capsys.readouterr().err
    _check_probe(cpu_kind, private_cache)
