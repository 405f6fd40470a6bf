"""The inference dtype by measurement (`vitkit.infer.precision`): on a CPU with bf16 units
(simulated here) the faster of fp32 and bf16 for this model and batch, measured once and read
back; without them fp32 and no probe. Every caller that takes the default (predict, the
Classifier, the server, `vitkit bench --precision auto`) gets that choice."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import tiny_model
from vitkit import device as devices
from vitkit.infer import precision


@pytest.fixture
def timed(monkeypatch):
    """A CPU with bf16 units whose probe answers `faster` (set by the test) without timing."""
    calls: list[tuple[int, str]] = []
    state = {"faster": "fp32"}

    def seconds(model, images, device):
        calls.append((images, state["faster"]))
        return {"fp32": 1.0, "bf16": 2.0} if state["faster"] == "fp32" else {"fp32": 2.0,
                                                                           "bf16": 1.0}

    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: True)
    monkeypatch.setattr(precision, "forward_seconds", seconds)
    return calls, state


@pytest.mark.parametrize("faster", ["fp32", "bf16"])
def test_a_cpu_with_bf16_units_gets_the_faster_dtype_measured_once(tmp_path, timed, faster):
    calls, state = timed
    state["faster"] = faster
    model, cache = tiny_model(), tmp_path / "precision.json"
    expected = torch.bfloat16 if faster == "bf16" else torch.float32
    assert precision.inference_dtype(model, "cpu", 32, cache=cache) == expected
    assert len(calls) == 1
    state["faster"] = "bf16" if faster == "fp32" else "fp32"  # a re-measurement would flip it
    assert precision.inference_dtype(model, "cpu", 32, cache=cache) == expected
    assert len(calls) == 1  # read back from the cache
    [entry] = json.loads(cache.read_text()).values()
    assert entry["dtype"] == faster and entry["for"] == "inference"
    assert entry["fp32_s"] > 0 and entry["bf16_s"] > 0
    assert precision.inference_dtype(model, "cpu", 1, cache=cache) != expected  # batch 1:
    assert len(calls) == 2                                                   # measured afresh
    assert precision.inference_dtype(model, "cpu", 32, fp32=True, cache=cache) == torch.float32
    assert len(calls) == 2


def test_another_model_is_measured_afresh(tmp_path, timed):
    calls, _ = timed
    cache = tmp_path / "precision.json"
    precision.inference_dtype(tiny_model(), "cpu", 8, cache=cache)
    precision.inference_dtype(tiny_model(depth=1), "cpu", 8, cache=cache)
    assert len(calls) == 2


def test_without_bf16_units_fp32_and_no_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_bf16_matrix_units", lambda: False)
    monkeypatch.setattr(precision, "forward_seconds", lambda *a: pytest.fail("probed"))
    cache = tmp_path / "precision.json"
    assert precision.inference_dtype(tiny_model(), "cpu", 32, cache=cache) == torch.float32
    assert not cache.exists()


def test_the_probe_times_both_dtypes_and_leaves_the_model_as_it_was():
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    seconds = precision.forward_seconds(model, 4, torch.device("cpu"))
    assert set(seconds) == {"fp32", "bf16"} and all(s > 0 for s in seconds.values())
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) and v.dtype == before[k].dtype
               for k, v in model.state_dict().items())


def test_predict_classifier_and_server_take_the_measured_dtype(tmp_path, timed, monkeypatch,
                                                               private_cache):
    """Where bf16 measures slower the default runs fp32, and where faster bf16: the dtype
    each caller hands its backend follows the probe."""
    from vitkit.infer import Classifier, backends, predict
    from vitkit.serve.backends import TorchBackend

    _, state = timed
    seen = []
    real = backends.build_runner

    def spy(model, backend, dtype, device, calibration=None):
        seen.append(dtype)
        return real(model, backend, dtype, device, calibration)

    monkeypatch.setattr(backends, "build_runner", spy)
    monkeypatch.setattr("vitkit.infer.classifier.build_runner", spy)
    monkeypatch.setattr("vitkit.serve.backends.build_runner", spy)
    image = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8)
    for faster, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = tiny_model(depth=1 if faster == "fp32" else 2)  # each measured afresh
        state["faster"] = faster
        seen.clear()
        predict(model, [image], top_k=1, backend="eager")
        Classifier(model, backend="eager")(image)
        TorchBackend(model, device="cpu", backend="eager")
        assert seen == [dtype] * 3


def test_bench_auto_times_what_the_commands_would_run(timed, private_cache):
    from vitkit.bench.throughput import bench_precisions

    _, state = timed
    config, cpu = tiny_model().config, torch.device("cpu")
    assert bench_precisions(["auto"], "inference", config, 32, cpu) == ["fp32"]
    assert bench_precisions(["bf16", "auto", "fp32"], "inference", config, 32, cpu) == [
        "bf16", "fp32"]
    state["faster"] = "bf16"
    assert bench_precisions(["auto", "fp32"], "inference", config, 4, cpu) == ["bf16", "fp32"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_runs_the_runs_dtype_between_its_layers(monkeypatch, dtype):
    """What flows between the int8 layers is the dtype the run computes in, so `eval` (fp32
    on a CPU) gets the same int8 numbers on every CPU, and a server the faster recipe."""
    from vitkit.infer import backends, int8

    asked = []
    monkeypatch.setattr(int8, "quantize_int8", lambda model, calibration, activations=None:
                        asked.append(activations))
    calibration = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    backends.build_runner(tiny_model(), "int8", dtype, torch.device("cpu"), calibration)
    assert asked == [dtype]
