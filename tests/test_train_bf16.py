"""bf16 autocast where the hardware has it (forced here on tiny tensors, since this CPU
emulates bf16), fp32 on request."""

from __future__ import annotations

import torch

from tests.train_helpers import digits_subset, tiny_model
from vitkit.train import TrainRun, get_recipe, train
from vitkit.train import trainer as trainer_module


def _run(out, fp32: bool) -> TrainRun:
    recipe = get_recipe("small-data", epochs=1, batch_size=8, randaugment=False, hflip=False)
    return TrainRun(model=tiny_model(depth=1), train_set=digits_subset(16),
                    val_set=digits_subset(8, "test"), recipe=recipe, out_dir=out, fp32=fp32,
                    progress=False)


def test_bf16_autocast_when_native(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(trainer_module, "default_dtype",
                        lambda device, fp32=False: torch.float32 if fp32 else torch.bfloat16)
    real_forward = type(tiny_model()).forward

    def spy(self, images):
        logits = real_forward(self, images)
        seen.append(logits.dtype)
        return logits

    monkeypatch.setattr(type(tiny_model()), "forward", spy)
    result = train(_run(tmp_path / "bf16", fp32=False))
    assert result.finished and torch.bfloat16 in seen
    state = torch.load(tmp_path / "bf16" / "state" / "last.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["model"].values())  # fp32 master weights
    seen.clear()
    train(_run(tmp_path / "fp32", fp32=True))
    assert set(seen) == {torch.float32}
