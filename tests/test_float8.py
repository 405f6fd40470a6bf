"""float8 (torchao) for GPUs of compute capability 8.9+, checked on the CPU: training with
precision='fp8' (torchao emulates float8 on the CPU, so the path runs here as on a GPU),
backend='fp8' inference (torchao refuses it off such GPUs, so its hardware check is lifted
here), and the CUDA-graph option of the compiled path."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import vitkit
from tests.conftest import digits_subset, randomise, tiny_model
from vitkit.train import TrainRun, get_recipe, train

pytest.importorskip("torchao")

ENCODER_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def _fp8_run(out, **kwargs) -> TrainRun:
    recipe = get_recipe("small-data", epochs=1, batch_size=8, randaugment=False, hflip=False,
                        ema_decay=0.9, warmup_epochs=0.25)
    return TrainRun(model=tiny_model(), train_set=digits_subset(32),
                    val_set=digits_subset(16, "test"), recipe=recipe, out_dir=out,
                    precision="fp8", progress=False, seed=1, **kwargs)


@pytest.fixture
def float8_units(monkeypatch):
    """Pretend the CPU multiplies float8 matrices: vitkit's check, and torchao's own for
    dynamic float8 inference (a private name: if torchao renames it, this fixture fails)."""
    import torchao.quantization.quant_api as quant_api

    import vitkit.infer.float8 as float8

    monkeypatch.setattr(float8, "has_float8", lambda device: True)
    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda granularity: None)


def test_float8_layers_are_the_encoders_linears_of_width_16_never_a_head():
    from vitkit.infer.float8 import float8_layer

    model = vitkit.create_model("deit_tiny_distilled_patch16_224", depth=2, img_size=32,
                                num_classes=10)
    chosen = sorted(name for name, module in model.named_modules()
                    if float8_layer(module, name))
    assert chosen == sorted(f"blocks.{i}.{layer}" for i in range(2) for layer in ENCODER_LINEARS)
    assert not float8_layer(nn.Linear(24, 32), "blocks.0.mlp.fc1")  # 24 is no multiple of 16
    assert not float8_layer(nn.Linear(32, 32), "head_dist")


def test_fp8_inference_is_refused_without_float8_units_saying_what_to_use():
    from vitkit.infer.backends import build_runner

    with pytest.raises(ValueError, match=r"backend='fp8' needs a GPU .*8\.9.*compiled"):
        build_runner(tiny_model(), "fp8", torch.float32, torch.device("cpu"))


def test_fp8_inference_quantizes_the_encoders_linears_and_stays_close(float8_units):
    from vitkit.infer.float8 import quantize_float8

    model = randomise(tiny_model(), scale=0.3).eval()
    images = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        reference = model(images)
    eager = quantize_float8(model, "cpu", compile=False)
    kinds = {name: type(module.weight).__name__ for name, module in eager.model.named_modules()
             if isinstance(module, nn.Linear)}
    assert {kinds[f"blocks.{i}.{layer}"] for i in range(2) for layer in ENCODER_LINEARS} == {
        "Float8Tensor"}
    assert kinds["head"] == "Parameter" and eager.model.head.weight.dtype == torch.bfloat16
    spread = (reference.max() - reference.min()).item()
    with torch.no_grad():
        out = eager(images)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert (out - reference).abs().max().item() < 0.1 * spread  # compiled: the eval test below
    assert all(type(p).__name__ == "Parameter" for p in model.parameters())  # left untouched


def test_fp8_training_runs_saves_a_plain_checkpoint_and_resumes_exactly(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="vitkit"):
        whole = train(_fp8_run(tmp_path / "whole"))
    assert whole.finished and whole.steps == 4
    assert "float8 is emulated" in caplog.text  # said on a device without float8 units
    assert "8 linear layers compute in float8" in caplog.text
    loaded = vitkit.load_pretrained(tmp_path / "whole" / "checkpoint")
    plain = tiny_model()
    assert set(loaded.state_dict()) == set(plain.state_dict())
    assert not torch.equal(loaded.blocks[0].attn.qkv.weight, plain.blocks[0].attn.qkv.weight)
    assert all(type(m) in (nn.Linear, nn.Conv2d) for m in loaded.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)))
    train(_fp8_run(tmp_path / "split", stop_after=2))
    train(_fp8_run(tmp_path / "split", resume=True))
    a, b = (torch.load(tmp_path / run / "state" / "last.pt", weights_only=True)
            for run in ("whole", "split"))
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"


def test_fp8_training_swaps_layers_before_the_optimizer_sees_them():
    from vitkit.train.precision import to_float8_training

    model = tiny_model()
    before = {name: p.data_ptr() for name, p in model.named_parameters()}
    assert to_float8_training(model, torch.device("cpu")) == 8
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    images, labels = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    losses = []
    for _ in range(5):
        with torch.autocast("cpu", torch.bfloat16):
            loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert {name for name, _ in model.named_parameters()} == set(before)


def test_fp8_refuses_combinations_it_has_not_been_tested_with(tmp_path):
    from vitkit.train.precision import check_float8_training

    with pytest.raises(ValueError, match="with lora_rank= use precision='bf16'"):
        check_float8_training("fp8", lora_rank=4, fsdp=False)
    with pytest.raises(ValueError, match="fsdp=True"):
        check_float8_training("fp8", lora_rank=0, fsdp=True)
    check_float8_training("bf16", lora_rank=4, fsdp=True)  # not this check's business
    lora = get_recipe("small-data", epochs=1, batch_size=8, lora_rank=4)
    run = TrainRun(model=tiny_model(), train_set=digits_subset(16), recipe=lora,
                   out_dir=tmp_path, precision="fp8", progress=False)
    with pytest.raises(ValueError, match="lora_rank"):
        train(run)  # refused before anything is written
    assert not any(tmp_path.iterdir())


def test_training_precision_names_every_choice_when_wrong():
    from vitkit.train.precision import training_dtype

    assert training_dtype(tiny_model(), "fp8", torch.device("cpu"), 8) == torch.bfloat16
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp8, not 'fp16'"):
        training_dtype(tiny_model(), "fp16", torch.device("cpu"), 8)


def test_cuda_graphs_ask_inductor_for_them_on_cuda_only_and_copy_the_output(monkeypatch):
    from vitkit.infer import optimize

    seen = []

    def fake_compile(module, dynamic, options):
        seen.append(options)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    module = nn.Identity()
    on_gpu = optimize.compile_frozen(module, device="cuda", cuda_graphs=True)
    on_cpu = optimize.compile_frozen(module, device="cpu", cuda_graphs=True)
    assert seen[0]["triton.cudagraphs"] is True
    assert not (seen[1] or {}).get("triton.cudagraphs")
    x = torch.randn(3)
    assert on_gpu(x).data_ptr() != x.data_ptr() and torch.equal(on_gpu(x), x)
    assert on_cpu(x).data_ptr() == x.data_ptr()  # nothing to copy without a graph


def test_bench_times_fp8_training_and_inference_where_float8_is_native(float8_units,
                                                                        monkeypatch):
    import vitkit.bench.workloads as workloads

    monkeypatch.setattr(workloads, "has_float8", lambda device: True)
    config = tiny_model().config
    cpu = torch.device("cpu")
    assert [w.name for w in workloads.training_workloads(
        config, 4, torch.float32, cpu, [], compile=True)] == ["vitkit", "vitkit compiled"]
    train_rows = workloads.training_workloads(config, 4, torch.bfloat16, cpu, [], compile=True)
    assert [w.name for w in train_rows] == ["vitkit", "vitkit compiled", "vitkit fp8 compiled"]
    model = randomise(tiny_model()).eval()
    gpu_rows = workloads.gpu_workloads(model, torch.randn(4, 1, 8, 8), torch.bfloat16)
    assert [w.name for w in gpu_rows] == ["vitkit compiled, CUDA graphs", "vitkit fp8 compiled"]
    for workload in (train_rows[-1], gpu_rows[-1]):  # the CUDA-graph row is plain on the CPU
        workload.step()


def test_an_optional_path_that_fails_here_is_left_out_and_the_others_are_timed(capsys):
    from vitkit.bench.throughput import measure
    from vitkit.bench.workloads import Workload

    def broken() -> None:
        raise RuntimeError("no kernel for this GPU\nlong traceback text")

    workloads = [Workload("plain", lambda: None, 1),
                 Workload("vitkit fp8 compiled", broken, 1, optional=True)]
    results = measure(workloads, torch.device("cpu"), rounds=1, min_time=0.0)
    assert list(results) == ["plain"]
    assert ("vitkit fp8 compiled left out: it failed here: RuntimeError: no kernel for this GPU"
            in capsys.readouterr().out)
    with pytest.raises(RuntimeError):  # a path that is not optional still fails the run
        measure([Workload("plain", broken, 1)], torch.device("cpu"), rounds=1, min_time=0.0)


def test_eval_with_fp8_runs_the_float8_path_and_says_so(float8_units, tmp_path):
    import json

    from vitkit.cli.main import main

    checkpoint = tmp_path / "checkpoint"
    model = randomise(tiny_model(), scale=0.3)
    model.meta.class_names = [str(i) for i in range(10)]
    vitkit.save_pretrained(model, checkpoint)
    results = {}
    for backend in ("eager", "fp8"):
        out = tmp_path / backend
        assert main(["eval", "--checkpoint", str(checkpoint), "--data", "digits", "--backend",
                     backend, "--out", str(out), "--no-progress"]) == 0
        results[backend] = json.loads((out / "metrics.json").read_text())
    assert results["fp8"]["dtype"] == "float8" and results["fp8"]["backend"] == "fp8"
    assert abs(results["fp8"]["top1"] - results["eager"]["top1"]) < 0.1
