"""The README's examples, run as written: the timm export line and the Python one-liner for
prediction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import vitkit
from tests.conftest import TOLERANCE, max_diff, randomise
from vitkit.cli.main import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _trained_like(name: str, **overrides) -> vitkit.VisionTransformer:
    """A random model with the classes and preprocessing a training run records."""
    model = randomise(vitkit.create_model(name, **overrides)).eval()
    model.meta.class_names = ["ant", "bee", "wasp"][:model.config.num_classes]
    model.meta.preprocessing = model.meta.preprocessing.replace(
        mean=(0.3, 0.4, 0.5)[:model.config.in_chans], std=(0.2, 0.25, 0.3)[:model.config.in_chans],
        crop_pct=0.95)
    return model


@pytest.mark.parametrize("name, overrides", [
    ("vit_tiny_patch16_224", dict(depth=2, img_size=32, num_classes=3)),
    ("vit_cifar_patch4_32", dict(depth=2, img_size=16, num_classes=2, patch_size=8)),
    ("vit_digits_patch2_8", dict(depth=2, num_classes=3)),
])
def test_the_readme_timm_export_line(tmp_path, monkeypatch, name, overrides):
    timm = pytest.importorskip("timm")
    line = re.search(r"^\s+vitkit convert (\S+) (\S+) --to timm\s+# (timm\.create_model\(.*\))$",
                     README, re.MULTILINE)
    assert line, "the README's timm export line"
    source, target, python = line.groups()
    model = _trained_like(name, **overrides)
    monkeypatch.chdir(tmp_path)
    vitkit.save_pretrained(model, source)
    assert main(["convert", source, target, "--to", "timm"]) == 0
    theirs = eval(python, {"timm": timm}).eval()  # the documented line, as written
    x = torch.randn(2, model.config.in_chans, *model.config.img_size)
    with torch.no_grad():
        assert max_diff(theirs(x.float()), model.float()(x)) <= TOLERANCE
    data = timm.data.resolve_data_config({}, model=theirs)
    prep = model.meta.preprocessing
    assert theirs.num_classes == model.config.num_classes
    assert data["input_size"] == (model.config.in_chans, *model.config.img_size)
    assert list(data["mean"]) == pytest.approx(prep.mean)
    assert list(data["std"]) == pytest.approx(prep.std)
    assert data["crop_pct"] == pytest.approx(0.95)
    assert theirs.pretrained_cfg["label_names"] == model.meta.class_names


def test_the_readme_python_one_liner(tmp_path, monkeypatch):
    from PIL import Image

    block = re.search(r"```python\n((?:(?!```).)*Classifier\.from_pretrained(?:(?!```).)*)```",
                      README, re.S)
    assert block, "the README's Classifier example"
    monkeypatch.chdir(tmp_path)
    model = _trained_like("vit_digits_patch2_8", depth=1, num_classes=3, in_chans=3)
    path = re.search(r'from_pretrained\("([^"]+)"\)', block.group(1)).group(1)
    vitkit.save_pretrained(model, Path(path) / "checkpoint")  # as `vitkit train --out` leaves it
    for name in re.findall(r'"(\w+\.(?:jpg|png))"', block.group(1)):
        Image.new("RGB", (20, 14), (200, 30, 60)).save(name)
    namespace: dict = {}
    results = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        try:
            results.append(eval(line, namespace))  # an expression: keep what it shows
        except SyntaxError:
            exec(line, namespace)
    one, several = results[-2:]
    assert [row["label"] for row in one] and len(one) == 3
    assert set(one[0]) == {"label", "score"} and one[0]["label"] in model.meta.class_names
    assert sum(row["score"] for row in one) == pytest.approx(1.0, abs=1e-3)  # 3 of 3 classes
    assert len(several) == 2 and several[0][0]["label"] == one[0]["label"]


def test_the_readme_trains_the_digits_model_from_python(tmp_path, monkeypatch, capsys,
                                                        private_cache):
    block = re.search(r"```python\n((?:(?!```).)*vitkit\.plan_training\((?:(?!```).)*)```",
                      README, re.S)
    assert block, "the README's Python training example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # as written
    summary = namespace["summary"]
    assert summary["finished"] and summary["test_top1"] > 0.5  # chance is 0.1
    assert (tmp_path / "runs" / "digits" / "metrics.json").exists()
    assert isinstance(namespace["model"], vitkit.VisionTransformer)
    assert "plan: vit_digits_patch2_8 at 8 px, 15 epochs" in capsys.readouterr().out
