"""bf16 autocast on request (forced here whatever the CPU), fp32 on request, and the default
resolved by `vitkit.device.default_dtype`."""

from __future__ import annotations

import torch

from tests.conftest import digits_subset, tiny_model
from vitkit.train import TrainRun, get_recipe, train


def _run(out, precision: str) -> TrainRun:
    recipe = get_recipe("small-data", epochs=1, batch_size=8, randaugment=False, hflip=False)
    return TrainRun(model=tiny_model(depth=1), train_set=digits_subset(16),
                    val_set=digits_subset(8, "test"), recipe=recipe, out_dir=out,
                    precision=precision, progress=False)


def test_bf16_autocast_when_asked_fp32_when_asked(tmp_path, monkeypatch):
    seen = []
    real_forward = type(tiny_model()).forward

    def spy(self, images):
        logits = real_forward(self, images)
        seen.append(logits.dtype)
        return logits

    monkeypatch.setattr(type(tiny_model()), "forward", spy)
    result = train(_run(tmp_path / "bf16", "bf16"))
    assert result.finished and torch.bfloat16 in seen
    state = torch.load(tmp_path / "bf16" / "state" / "last.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["model"].values())  # fp32 master weights
    seen.clear()
    train(_run(tmp_path / "fp32", "fp32"))
    assert set(seen) == {torch.float32}


def test_auto_precision_is_the_devices_default(monkeypatch):
    import vitkit.device as device

    for default in (torch.float32, torch.bfloat16):
        monkeypatch.setattr(device, "default_dtype", lambda d, fp32=False, t=default: t)
        assert device.resolve_dtype("cpu", "auto") == default
        assert device.resolve_dtype("cpu", "fp32") == torch.float32
        assert device.resolve_dtype("cpu", "bf16") == torch.bfloat16


def test_auto_precision_on_a_cpu_with_bf16_units_keeps_the_faster_and_caches_it(
        tmp_path, monkeypatch):
    from vitkit import device as devices
    from vitkit.train import precision

    model = tiny_model()
    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: True)
    for faster in ("fp32", "bf16"):
        cache = tmp_path / f"{faster}.json"
        timed = []

        def seconds(model, count, device, dtypes, objective, rounds, faster=faster,
                    timed=timed):
            timed.extend(dtypes.values())
            return {name: [1.0 if (dtype == torch.bfloat16) == (faster == "bf16") else 2.0]
                    * rounds for name, dtype in dtypes.items()}

        monkeypatch.setattr(precision, "pass_seconds", seconds)
        expected = torch.bfloat16 if faster == "bf16" else torch.float32
        device = torch.device("cpu")
        assert precision.training_dtype(model, "auto", device, 64, cache) == expected
        assert len(timed) == 2 and cache.exists()
        assert precision.training_dtype(model, "auto", device, 64, cache) == expected
        assert len(timed) == 2  # the second answer came from the cache
        assert precision.training_dtype(model, "fp32", device, 64, cache) == torch.float32
    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: False)
    assert precision.training_dtype(model, "auto", torch.device("cpu"), 64,
                                    tmp_path / "none.json") == torch.float32


def test_timing_steps_leaves_the_global_rng_where_it_was():
    """The precision probe and the plan's estimate run between seeding and the weights a run
    draws next (a new head, LoRA adapters): they must not move the RNG stream."""
    from vitkit.train.objectives import Classification
    from vitkit.train.precision import pass_seconds

    model = tiny_model(depth=1)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    pass_seconds(model, 2, torch.device("cpu"), {"fp32": torch.float32}, Classification(), 1)
    assert torch.equal(torch.rand(3), expected)
