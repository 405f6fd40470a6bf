"""write_report and `vitkit analyze`: the PNGs and analysis.json they write, and the clear
errors they give for bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.analysis import mean_attention_distance, write_report
from vitkit.cli.main import main
from vitkit.models import VisionTransformer, ViTConfig


def digits_like(**overrides) -> VisionTransformer:
    """A small model shaped like the demo's: 8x8 grey images, 2x2 patches (a 4x4 grid)."""
    base = dict(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16, depth=2,
                num_heads=2, mlp_dim=32)
    base.update(overrides)
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(**base))
    if base["num_classes"]:
        with torch.no_grad():
            model.head.weight.normal_()
    model.meta.name = "tiny_digits"
    return model.eval()


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


def test_write_report_writes_the_figures_and_the_numbers(tmp_path) -> None:
    model = digits_like()
    images = torch.randn(2, 1, 8, 8)
    raw = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    report = write_report(model, images, tmp_path / "out", raw_images=raw,
                          names=["a/one.png", "two"])
    out = tmp_path / "out"
    assert json.loads((out / "analysis.json").read_text()) == report
    assert [entry["rollout_png"] for entry in report["images"]] == [
        "rollout_000_one.png", "rollout_001_two.png"]
    for name in ["figure7.png", *report["figures"].values(),
                 *(entry["rollout_png"] for entry in report["images"])]:
        width, height = png_size(out / name)
        assert width >= 300 and height >= 250, name
    assert np.array(report["images"][0]["rollout"]).shape == (4, 4)
    distance = np.array(report["mean_attention_distance"]["pixels"])
    assert distance.shape == (2, 2)
    expected = mean_attention_distance(model, images).numpy()
    assert np.allclose(distance, expected, atol=1e-4)
    assert np.array(report["position_embedding_similarity"]["values"]).shape == (4, 4, 4, 4)
    assert report["embedding_filters"]["k"] == 4  # 1 x 2 x 2 filters have 4 components
    assert sum(report["embedding_filters"]["explained_variance_ratio"]) == pytest.approx(1, 1e-4)
    centres = [(2 * r, 2 * c) for r in range(4) for c in range(4)]  # patch centres, pixels
    by_hand = np.mean([math.dist(p, q) for p in centres for q in centres])
    uniform = report["mean_attention_distance"]["uniform_attention"]
    assert uniform == pytest.approx(by_hand, abs=1e-4)
    prediction = report["images"][1]["prediction"]
    assert prediction["class"] in {"0", "1", "2"} and 0 < prediction["probability"] <= 1


def test_write_report_without_raw_images_or_class_token(tmp_path) -> None:
    model = digits_like(class_token=False, global_pool="avg", num_classes=0)
    report = write_report(model, torch.randn(1, 1, 8, 8), tmp_path)
    assert report["rollout"]["pooled_token"] == "mean of patch tokens"
    assert report["images"][0]["name"] == "image_0" and report["images"][0]["prediction"] is None
    assert (tmp_path / "rollout_000_image_0.png").is_file()


def test_write_report_rejects_mismatched_inputs(tmp_path) -> None:
    model = digits_like()
    images = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="one name per image"):
        write_report(model, images, tmp_path, names=["only one"])
    with pytest.raises(ValueError, match="uint8"):
        write_report(model, images, tmp_path, raw_images=torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="3-channel|1-channel"):
        write_report(model, torch.randn(2, 3, 8, 8), tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def write_digit_png(path, rgb: bool = False) -> None:
    pixels = np.zeros((16, 16), dtype=np.uint8)
    pixels[2:14, 6:10] = 255  # a "1"
    image = Image.fromarray(pixels, "L")
    (image.convert("RGB") if rgb else image).save(path)


def test_cli_analyze_writes_pngs_and_json(tmp_path, capsys) -> None:
    checkpoint = vitkit.save_pretrained(digits_like(), tmp_path / "ckpt",
                                        class_names=["zero", "one", "two"])
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    write_digit_png(folder / "a.png")
    write_digit_png(folder / "sub" / "b.jpg", rgb=True)  # RGB is converted to grey
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "analysis"
    status = main(["analyze", "--checkpoint", str(checkpoint), "--images", str(folder),
                   "--out", str(out)])
    assert status == 0
    report = json.loads((out / "analysis.json").read_text())
    assert [entry["name"] for entry in report["images"]] == ["a.png", "b.jpg"]
    assert report["images"][0]["prediction"]["class"] in {"zero", "one", "two"}
    assert [item["path"] for item in report["skipped"]] == [str(folder / "broken.png")]
    assert (out / "figure7.png").is_file() and (out / "rollout_001_b.png").is_file()
    assert "mean attention distance per layer" in capsys.readouterr().out


def test_cli_analyze_errors_are_one_clear_line(tmp_path, capsys) -> None:
    checkpoint = vitkit.save_pretrained(digits_like(), tmp_path / "ckpt")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--checkpoint", str(tmp_path / "nope"), "--images", str(empty)], "no checkpoint"),
        (["--checkpoint", str(checkpoint), "--images", str(empty)], "no image files"),
        (["--checkpoint", str(checkpoint), "--images", str(tmp_path / "x.png")], "no image"),
        (["--checkpoint", str(checkpoint), "--images", str(empty), "--discard-ratio", "1.5"],
         "--discard-ratio"),
    ]
    for args, message in cases:
        assert main(["analyze", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
