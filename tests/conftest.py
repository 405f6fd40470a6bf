"""What the tests share: tiny models, random weights, small data, and the checks of a
one-line command-line error. Helpers are imported (`from tests.conftest import ...`);
fixtures are found by pytest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import vitkit
from vitkit.data import ImageTensorDataset, load_digits
from vitkit.data.cache import clear_memory_cache

# A digits-sized ViT small enough to train in a test: 8x8 grey images, 2x2 patches.
TINY = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64)
TOLERANCE = 1e-4  # max |diff| of logits for weights loaded from or exported to timm and HF
CONSTANT_LOGITS = torch.tensor([0.0, 2.0, 1.0])
COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


@pytest.fixture(autouse=True, scope="session")
def session_cache(tmp_path_factory):
    """Measured choices (`--precision auto`, `--backend auto`) of this test session only, never
    the timings a user's machine has cached."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VITKIT_CACHE", str(tmp_path_factory.mktemp("vitkit-cache")))
        yield


def randomise(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Random values in every tensor (LayerNorm scales around 1), heads included, so that a
    wrong mapping of any tensor changes the logits and zero-initialised tensors hide nothing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_norm_scale = param.ndim == 1 and "norm" in name and name.endswith("weight")
            param.copy_(1 + 0.1 * noise if is_norm_scale else scale * noise)
    return model


def random_timm(name: str, **kwargs) -> torch.nn.Module:
    """A timm model with random weights, built without timm's (slow) initialisation."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    return randomise(model.to_empty(device="cpu")).eval()


def random_hf(model_class, **config) -> torch.nn.Module:
    """A transformers ViT model with random weights."""
    import transformers

    options = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    options.update(config)
    with torch.device("meta"):
        model = model_class(transformers.ViTConfig(**options))
    return randomise(model.to_empty(device="cpu")).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A model's logits (a transformers model's from its output object), without gradients."""
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


def constant_model(in_chans: int = 3) -> vitkit.VisionTransformer:
    """A 1-block ViT whose head ignores the image: logits = CONSTANT_LOGITS (dog, emu, cat)."""
    model = vitkit.create_model("vit_digits_patch2_8", in_chans=in_chans, num_classes=3, depth=1,
                                embed_dim=16, num_heads=2, mlp_dim=32)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(CONSTANT_LOGITS)
    model.meta.class_names = ["cat", "dog", "emu"]
    model.meta.preprocessing = model.meta.preprocessing.replace(crop_pct=1.0)
    return model.eval()


def tiny_model(seed: int = 0, **overrides) -> vitkit.VisionTransformer:
    """The digits preset shrunk to `TINY`, freshly initialised with torch's seed `seed`."""
    torch.manual_seed(seed)
    return vitkit.create_model("vit_digits_patch2_8", **{**TINY, **overrides})


def tiny_vit(**overrides) -> vitkit.VisionTransformer:
    """A 2-block ViT-Ti/16 at 32x32 for 3 classes, every weight random, in eval mode."""
    options = dict(depth=2, img_size=32, num_classes=3)
    options.update(overrides)
    return randomise(vitkit.create_model("vit_tiny_patch16_224", **options)).eval()


def digits_subset(count: int = 96, split: str = "train") -> ImageTensorDataset:
    """The first `count` images of scikit-learn's digits split."""
    return load_digits(split).subset(torch.arange(count))


def make_class_folder(root: Path, counts: dict[str, int], size=(8, 8), fmt="png") -> Path:
    """root/<class>/<i>.<fmt>: each class a solid colour (so labels are checkable)."""
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            colour = tuple(max(c - 3 * i, 0) for c in COLOURS[name])
            Image.new("RGB", (size[1], size[0]), colour).save(root / name / f"{i}.{fmt}")
    return root


def one_line_error(capsys, code: int, phrase: str) -> str:
    """Exit status 2 and a single non-empty stderr line holding `phrase`, no traceback."""
    err = capsys.readouterr().err
    # What a terminal shows: a progress bar erased with carriage returns leaves nothing.
    shown = "\n".join(line.rsplit("\r", 1)[-1] for line in err.split("\n"))
    lines = [line for line in shown.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and shown.strip() == lines[0], err
    assert "Traceback" not in err and lines[0].startswith("vitkit ")
    assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """A dataset cache of the test's own (nothing shared between tests), empty in memory."""
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VITKIT_DEBUG", raising=False)
    clear_memory_cache()
    yield tmp_path / "cache"
    clear_memory_cache()


# The training flags of a quick CLI run: one epoch, no progress bar, no RandAugment, no warmup.
FAST = ["--epochs", "1", "--no-progress", "--no-randaugment", "--warmup-epochs", "0"]


def no_decoding(monkeypatch) -> None:
    """Make any decoding of the data fail loudly: the checks must come first."""
    import vitkit.data.sources as sources

    def refuse(*args, **kwargs):
        raise AssertionError("data was decoded before the arguments were checked")

    monkeypatch.setattr(sources, "decode_cached", refuse)
    monkeypatch.setattr(sources, "_builtin", refuse)


@pytest.fixture
def run_folder(tmp_path):
    """A folder laid out as `vitkit train --out` leaves it: checkpoint/ holds the model."""
    model = vitkit.create_model("vit_digits_patch2_8", **{**TINY, "num_classes": 3, "in_chans": 3})
    vitkit.save_pretrained(model, tmp_path / "run" / "checkpoint",
                           class_names=["cat", "dog", "emu"])
    (tmp_path / "run" / "state").mkdir()
    return tmp_path / "run"
