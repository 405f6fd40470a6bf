"""The inference paths (eager, compiled, openvino, int8, onnx-int8) and `--backend auto`:
each path computes the model's answers, auto measures once per model and CPU, reads the
figures back after, and measures again for another model or another CPU."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vitkit
from tests.conftest import one_line_error, tiny_model
from tests.serve_helpers import png_bytes
from vitkit.cli.main import main
from vitkit.data import load_digits
from vitkit.export import openvino_version
from vitkit.infer import backends, evaluate, predict
from vitkit.infer.backends import BackendChoice, Timing, build_runner, choose_backend
from vitkit.infer.batches import model_inputs
from vitkit.infer.int8 import quantize_int8

pytest.importorskip("torchao")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny digits ViT trained for a few hundred steps (about 95% test top-1), saved."""
    torch.manual_seed(0)
    model = tiny_model().train()
    train = load_digits("train")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        index = torch.randint(len(train), (64,), generator=generator)
        loss = F.cross_entropy(model(model_inputs(model, train.images[index])),
                               train.targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.meta.class_names = train.classes
    folder = tmp_path_factory.mktemp("trained") / "checkpoint"
    vitkit.save_pretrained(model.eval(), folder)
    return folder


def test_compiled_and_int8_compute_the_models_answers(trained):
    """Compiled logits equal eager ones (fp32 rounding); int8 top-1 stays within 2 points of
    fp32 on the held-out digits, at every batch size (1, odd, full) through one graph."""
    model = vitkit.load_pretrained(trained)
    test = load_digits("test")
    inputs = model_inputs(model, test.images)
    with torch.no_grad():
        eager = model(inputs)
        compiled = build_runner(model, "compiled", torch.float32, CPU)
        assert (compiled(inputs) - eager).abs().max() < 1e-4
        int8 = build_runner(model, "int8", torch.float32, CPU, load_digits("train").images[:256])
        quantized = int8(inputs)
        # Not bit-equal across batch sizes: on AMX oneDNN picks other kernels per batch, and
        # where the CPU has bf16 units the values between the int8 layers are bf16 (a
        # relative step of 2^-8). Same answer, logits within 1% of their range.
        scale = quantized.abs().max()
        for rows in (slice(0, 1), slice(0, 7)):
            part = int8(inputs[rows])
            assert torch.equal(part.argmax(1), quantized[rows].argmax(1))
            assert (part - quantized[rows]).abs().max() <= 0.01 * scale
    fp32_top1 = (eager.argmax(1) == test.targets).float().mean().item()
    int8_top1 = (quantized.argmax(1) == test.targets).float().mean().item()
    assert fp32_top1 > 0.85
    assert abs(int8_top1 - fp32_top1) < 0.02, (fp32_top1, int8_top1)
    assert (quantized - eager).abs().max() > 0  # it really is another computation


def test_the_compiled_path_in_bf16_keeps_the_answers(trained):
    """The compiled path in bf16, the default dtype of `predict`, `serve` and the Classifier
    on a CPU with bf16 units (forced here, whatever this CPU has), against eager bf16."""
    model = vitkit.load_pretrained(trained)
    inputs = model_inputs(model, load_digits("test").images[:64])
    with torch.no_grad():
        eager = build_runner(model, "eager", torch.bfloat16, CPU)(inputs)
        compiled = build_runner(model, "compiled", torch.bfloat16, CPU)(inputs)
    assert compiled.dtype == torch.float32
    agree = (compiled.argmax(1) == eager.argmax(1)).float().mean()
    assert agree > 0.95 and (compiled - eager).abs().max() <= 0.05 * eager.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_onnx_int8_computes_the_models_answers(trained, dtype):
    """ONNX Runtime int8 (dynamic) against eager fp32 on the held-out digits: top-1 within 2
    points, the same answer at batch 1 as in the full batch, fp32 logits whatever dtype the
    inputs come in (bf16 is what `predict` hands it on a CPU with bf16 units)."""
    pytest.importorskip("onnxruntime")
    model = vitkit.load_pretrained(trained)
    test = load_digits("test")
    inputs = model_inputs(model, test.images)
    runner = build_runner(model, "onnx-int8", dtype, CPU)
    with torch.no_grad():
        eager = model(inputs)
        quantized = runner(inputs.to(dtype))
        single = runner(inputs[:1].to(dtype))
    assert quantized.dtype == torch.float32 and quantized.shape == eager.shape
    assert torch.equal(single.argmax(1), quantized[:1].argmax(1))
    fp32_top1 = (eager.argmax(1) == test.targets).float().mean().item()
    int8_top1 = (quantized.argmax(1) == test.targets).float().mean().item()
    assert abs(int8_top1 - fp32_top1) < 0.02, (fp32_top1, int8_top1)
    assert (quantized - eager).abs().max() > 0  # it really is another computation
    assert all(p.dtype == torch.float32 for p in model.parameters())  # left untouched


def test_onnx_int8_through_predict_and_the_server(trained):
    pytest.importorskip("onnxruntime")
    model = vitkit.load_pretrained(trained)
    images = list(load_digits("test").images[:40])
    eager = predict(model, images, top_k=1, backend="eager", fp32=True)
    int8 = predict(model, images, top_k=1, backend="onnx-int8")
    agree = sum(a.labels == b.labels for a, b in zip(eager, int8, strict=True))
    assert agree >= 38, agree
    assert_served(model, "onnx-int8", "int8 dynamic")


def assert_served(model, path: str, quantization: str) -> None:
    """A server of `model` on `path` says so, with its quantization, and answers a PNG."""
    from fastapi.testclient import TestClient

    from vitkit.serve import TorchBackend, create_app

    backend = TorchBackend(model, device="cpu", backend=path, max_batch=4)
    assert backend.describe()["path"] == path
    assert backend.describe()["quantization"] == quantization
    with TestClient(create_app(backend, max_batch=4), base_url="http://127.0.0.1") as client:
        answer = client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_openvino_computes_the_models_answers(trained, dtype):
    """OpenVINO's CPU plugin in fp32 gives eager fp32's logits (rounding); asked for bf16
    (forced, whatever this CPU has) eager bf16's answers. One graph takes every batch size;
    logits come back fp32 whatever the inputs' dtype, and the model is left untouched."""
    pytest.importorskip("openvino")
    model = vitkit.load_pretrained(trained)
    test = load_digits("test")
    inputs = model_inputs(model, test.images)
    runner = build_runner(model, "openvino", dtype, CPU)
    # bf16 where OpenVINO has kernels for it on this CPU (AVX-512 and up), else it keeps f32
    assert runner.precision in (("f32",) if dtype == torch.float32 else ("bf16", "f32"))
    with torch.no_grad():
        eager = build_runner(model, "eager", dtype, CPU)(inputs)
        logits = runner(inputs.to(dtype))
        parts = [runner(inputs[rows]) for rows in (slice(0, 1), slice(1, 8))]
    assert logits.dtype == torch.float32 and logits.shape == eager.shape
    scale = eager.abs().max()
    tolerance = 1e-4 if dtype == torch.float32 else 0.05  # bf16: another order of sums
    assert (logits - eager).abs().max() <= tolerance * scale
    assert (torch.cat(parts) - logits[:8]).abs().max() <= tolerance * scale
    agree = (logits.argmax(1) == eager.argmax(1)).float().mean().item()
    assert agree >= (1.0 if dtype == torch.float32 else 0.97), agree
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.train()  # the runner holds its own weights: changing the model changes nothing
    with torch.no_grad():
        before = runner(inputs[:8])
        for parameter in model.parameters():
            parameter.mul_(0.5)
        assert (runner(inputs[:8]) - before).abs().max() <= tolerance * scale
    assert model.training


def test_openvino_through_predict_and_the_server(trained):
    pytest.importorskip("openvino")
    model = vitkit.load_pretrained(trained)
    images = list(load_digits("test").images[:40])
    eager = predict(model, images, top_k=1, backend="eager", fp32=True)
    ov = predict(model, images, top_k=1, backend="openvino", fp32=True)
    assert [a.labels for a in eager] == [b.labels for b in ov]
    assert_served(model, "openvino", "none")


def test_openvino_says_what_it_cannot_run(monkeypatch):
    """Off the CPU, in a dtype OpenVINO's CPU plugin does not compute in, or not installed:
    each a clear error naming what to do."""
    model = tiny_model()
    with pytest.raises(ValueError, match="OpenVINO's CPU plugin, not on meta"):
        build_runner(model, "openvino", torch.float32, torch.device("meta"))
    pytest.importorskip("openvino")
    with pytest.raises(ValueError, match="torch.float32 or torch.bfloat16, not torch.float16"):
        build_runner(model, "openvino", torch.float16, CPU)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(vitkit.errors.MissingExtra, match=r"openvino.*not installed"):
        build_runner(model, "openvino", torch.float32, CPU)


def test_int8_says_which_paths_can_run_a_graph_its_quantizer_refuses(monkeypatch):
    """torchao's quantizer refuses some graphs (measured: a ResNet's, 'Input partition has
    more than one output node'); the error names the model and the paths that can run it."""
    import torchao.quantization.pt2e.quantize_pt2e as pt2e

    def refuse(*args, **kwargs):
        raise ValueError("Input partition has more than one output node")

    monkeypatch.setattr(pt2e, "prepare_pt2e", refuse)
    model = tiny_model()
    model.meta.name = "tiny"
    with pytest.raises(ValueError, match=r"cannot quantize tiny's graph .*'onnx-int8' or "
                                         r"'compiled' can run it"):
        build_runner(model, "int8", torch.float32, CPU, torch.zeros(2, 1, 8, 8,
                                                                     dtype=torch.uint8))


@pytest.mark.parametrize("backend", ["int8", "onnx-int8", "openvino"])
def test_fixed_size_paths_say_what_input_they_take(trained, backend):
    """The paths whose graph is built for the model's image size refuse another size, another
    channel count or a missing batch dimension with the eager model's plain words (not the
    runtime's, and without the minute a recompile would take), and still run a right batch."""
    pytest.importorskip({"int8": "torchao", "onnx-int8": "onnxruntime",
                         "openvino": "openvino"}[backend])
    model = vitkit.load_pretrained(trained)
    calibration = load_digits("train").images[:32]
    runner = (quantize_int8(model, calibration, compile=False) if backend == "int8"
              else build_runner(model, backend, torch.float32, CPU))
    with torch.no_grad():
        assert runner(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
        assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)  # eager takes other sizes
        with pytest.raises(ValueError, match=rf"backend='{backend}' runs the model at the 8x8 "
                                             r"images it was built for, got 16x16.*'eager'"):
            runner(torch.zeros(2, 1, 16, 16))
        with pytest.raises(ValueError, match="takes 1-channel images, got 3 channels"):
            runner(torch.zeros(2, 3, 8, 8))
        with pytest.raises(ValueError, match=r"\(B, C, H, W\).*unsqueeze"):
            runner(torch.zeros(8, 8))


def test_int8_needs_calibration_and_the_cpu():
    model = tiny_model()
    with pytest.raises(ValueError, match="calibration"):
        build_runner(model, "int8", torch.float32, CPU)
    with pytest.raises(ValueError, match="uint8"):
        build_runner(model, "int8", torch.float32, CPU, torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="backend must be one of"):
        build_runner(model, "fastest", torch.float32, CPU)
    with pytest.raises(ValueError, match="ONNX Runtime's CPU provider, not on meta"):
        build_runner(model, "onnx-int8", torch.float32, torch.device("meta"))


class FakePaths:
    """build_runner and the timing replaced: each path 'measures' as the test says, and every
    build is recorded (so a test can see what was measured and what was read back)."""

    def __init__(self, monkeypatch, timings: dict[str, Timing]) -> None:
        self.timings, self.built = timings, []
        monkeypatch.setattr(backends, "build_runner", self.build)
        monkeypatch.setattr(backends, "_time_paths", self.time)

    def build(self, model, name, dtype, device, calibration=None):
        self.built.append(name)
        return Uniform(name, model.config.num_classes)

    def time(self, runners, inputs, builds):
        return {name: self.timings[runner.path] for name, runner in runners.items()}


class Uniform(torch.nn.Module):
    """Equal logits for every class: a stand-in runner that records its path's name."""

    def __init__(self, path: str, classes: int) -> None:
        super().__init__()
        self.path, self.classes = path, classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(images), self.classes)


TIMINGS = {"eager": Timing(0.0, 0.010), "compiled": Timing(20.0, 0.006),
           "openvino": Timing(5.0, 0.0095), "int8": Timing(30.0, 0.003),
           "onnx-int8": Timing(5.0, 0.004)}


def test_auto_measures_once_then_reads_the_figures_back(monkeypatch, tmp_path):
    fake = FakePaths(monkeypatch, TIMINGS)
    cache, model = tmp_path / "backend.json", tiny_model()
    choice, _ = choose_backend(model, torch.float32, CPU, 32, 100_000, cache=cache)
    assert choice.backend == "compiled" and fake.built == ["eager", "compiled", "openvino"]
    assert "compiled 6.00 ms/image, 20.0 s to build" in choice.reason
    stored = json.loads(cache.read_text())
    assert sorted(v["image_s"] for v in stored.values()) == [0.006, 0.0095, 0.010]
    fake.built.clear()
    again, _ = choose_backend(model, torch.float32, CPU, 32, 100_000, cache=cache)
    assert again.backend == "compiled" and fake.built == ["compiled"]  # built, not measured
    fake.built.clear()  # another model, another batch: measured afresh
    choose_backend(tiny_model(depth=1), torch.float32, CPU, 32, 100_000, cache=cache)
    choose_backend(model, torch.float32, CPU, 16, 100_000, cache=cache)
    assert fake.built == ["eager", "compiled", "openvino"] * 2


def test_auto_measures_again_on_another_cpu(monkeypatch, tmp_path):
    fake = FakePaths(monkeypatch, TIMINGS)
    cache, model = tmp_path / "backend.json", tiny_model()
    choose_backend(model, torch.float32, CPU, 32, 100_000, cache=cache)
    monkeypatch.setattr("vitkit.measured.cpu_identity", lambda: "Another CPU|avx2 amx_int8")
    fake.built.clear()
    choose_backend(model, torch.float32, CPU, 32, 100_000, cache=cache)
    assert fake.built == ["eager", "compiled", "openvino"]
    assert len(json.loads(cache.read_text())) == 6


def test_auto_measures_int8_again_when_its_activation_bits_change(monkeypatch, tmp_path):
    """The int8 figure holds for its recipe: capping oneDNN below VNNI (7-bit activations,
    or a vitkit that changes the recipe) makes it measured afresh, nothing else."""
    from vitkit.infer import int8

    fake = FakePaths(monkeypatch, TIMINGS)
    cache, model = tmp_path / "backend.json", tiny_model()
    calibration = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    monkeypatch.setattr(int8, "has_int8_dot_products", lambda: True)
    choose_backend(model, torch.float32, CPU, 32, None, calibration, cache=cache)
    assert backends.recipe("int8", torch.float32) == "int8, float32 between layers, cpp_wrapper"
    assert backends.recipe("int8", torch.bfloat16) == "int8, bfloat16 between layers, cpp_wrapper"
    assert backends.recipe("compiled", torch.float32, "cpu") == "compiled, cpp_wrapper"
    assert backends.recipe("compiled", torch.float32, "cuda") == "compiled"
    assert backends.recipe("eager", torch.float32) == "eager"
    assert backends.recipe("openvino", torch.float32) == f"openvino {openvino_version()}"
    monkeypatch.setattr(int8, "has_int8_dot_products", lambda: False)  # capped below VNNI
    fake.built.clear()
    choose_backend(model, torch.float32, CPU, 32, None, calibration, cache=cache)
    assert fake.built == ["int8"]
    assert backends.recipe("int8", torch.float32) == ("int8, float32 between layers, "
                                                      "7-bit activations, cpp_wrapper")


@pytest.mark.parametrize("images, calibrated, expected", [
    (100, False, "eager"),  # 1 s of eager work: nothing else can pay for itself
    (5_000, False, "eager"),  # 50 s eagerly; 20 s + 30 s compiled, 5 + 47.5 openvino
    (100_000, False, "compiled"),
    (100_000, True, "int8"),
    (10_000, True, "onnx-int8"),  # 45 s, against 60 s for int8 with its 30 s to build
    (None, True, "int8"),  # a server: the fastest per image
])
def test_auto_picks_what_finishes_first(monkeypatch, tmp_path, images, calibrated, expected):
    fake = FakePaths(monkeypatch, TIMINGS)
    cache, model = tmp_path / "backend.json", tiny_model()
    calibration = torch.zeros(4, 1, 8, 8, dtype=torch.uint8) if calibrated else None
    choose_backend(model, torch.float32, CPU, 32, 10**9, calibration, cache=cache)  # measure
    fake.built.clear()
    choice, _ = choose_backend(model, torch.float32, CPU, 32, images, calibration, cache=cache)
    assert isinstance(choice, BackendChoice) and choice.backend == expected
    assert fake.built == [expected]


def test_the_int8_paths_are_candidates_only_with_calibration_and_where_installed(
        monkeypatch, tmp_path):
    fake = FakePaths(monkeypatch, TIMINGS)
    calibration = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    choice, _ = choose_backend(tiny_model(), torch.float32, CPU, 32, None, calibration,
                               cache=tmp_path / "a")
    assert sorted(choice.timings) == ["compiled", "eager", "int8", "onnx-int8", "openvino"]
    assert "onnx-int8 4.00 ms/image, 5.0 s to build" in choice.reason
    choice, _ = choose_backend(tiny_model(), torch.float32, CPU, 32, None, cache=tmp_path / "b")
    assert sorted(choice.timings) == ["compiled", "eager", "openvino"]  # int8 not accepted
    monkeypatch.setattr(backends, "find_spec",
                        lambda name: None if name in ("onnxruntime", "openvino") else object())
    fake.built.clear()
    choice, _ = choose_backend(tiny_model(), torch.float32, CPU, 32, None, calibration,
                               cache=tmp_path / "c")
    assert fake.built == ["eager", "compiled", "int8"]
    assert sorted(choice.timings) == ["compiled", "eager", "int8"]
    fake.built.clear()  # off the CPU: neither OpenVINO nor int8
    choose_backend(tiny_model(), torch.float32, torch.device("meta"), 32, None, calibration,
                   cache=tmp_path / "d")
    assert fake.built == ["eager", "compiled"]


def test_auto_picks_openvino_where_it_runs_fastest(monkeypatch, tmp_path):
    """openvino computes the model's own numbers, so it is weighed without calibration; a
    server takes it where it runs fastest per image, and its figure is kept as any other's."""
    fake = FakePaths(monkeypatch, {**TIMINGS, "openvino": Timing(2.0, 0.005)})
    cache = tmp_path / "backend.json"
    choice, _ = choose_backend(tiny_model(), torch.float32, CPU, 1, None, cache=cache)
    assert choice.backend == "openvino" and "openvino 5.00 ms/image, 2.0 s to build" in (
        choice.reason)
    fake.built.clear()
    assert choose_backend(tiny_model(), torch.float32, CPU, 1, None, cache=cache)[0].backend == (
        "openvino") and fake.built == ["openvino"]


def test_an_int8_path_that_cannot_be_built_is_left_out(monkeypatch, tmp_path, caplog):
    """torchao's quantizer refuses some graphs (a ResNet's); auto says so and runs the
    fastest of the rest. A path every run needs still fails loudly."""
    fake = FakePaths(monkeypatch, TIMINGS)
    build = fake.build

    def refuse(model, name, *args, **kwargs):
        if name in ("int8", "compiled"):
            raise ValueError(f"{name} refused\nsecond line")
        return build(model, name, *args, **kwargs)

    monkeypatch.setattr(backends, "build_runner", refuse)
    calibration = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="compiled refused"):
        choose_backend(tiny_model(), torch.float32, CPU, 32, None, calibration,
                       cache=tmp_path / "a")
    monkeypatch.setattr(backends, "build_runner", lambda model, name, *a, **k: (
        refuse(model, name, *a, **k) if name == "int8" else build(model, name, *a, **k)))
    choice, _ = choose_backend(tiny_model(), torch.float32, CPU, 32, None, calibration,
                               cache=tmp_path / "b")
    assert choice.backend == "onnx-int8" and "int8" not in choice.timings
    assert "int8 could not be built for this model: ValueError: int8 refused)" in choice.reason
    assert "int8 could not be built" in caplog.text


def test_auto_does_not_measure_for_a_few_images(monkeypatch, tmp_path):
    fake = FakePaths(monkeypatch, TIMINGS)
    choice, _ = choose_backend(tiny_model(), torch.float32, CPU, 8, 20, cache=tmp_path / "c")
    assert choice.backend == "eager" and fake.built == ["eager"]
    assert "20 images take about 0.2 s eagerly" in choice.reason


def test_a_classifier_switches_once_its_images_repay_the_compile(monkeypatch, tmp_path):
    FakePaths(monkeypatch, TIMINGS)
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path))
    classifier = vitkit.Classifier(tiny_model(), device="cpu")
    monkeypatch.setattr(backends, "SETUP_GUESS_S", 20.0)
    images = [torch.zeros(1, 8, 8, dtype=torch.uint8)] * 500
    classifier(images)  # 5 s eagerly: stays eager
    assert classifier.choice.backend == "eager"
    for _ in range(6):  # 3,500 images seen: 35 s eagerly > 20 s + 21 s compiled
        classifier(images)
    assert classifier.choice.backend == "compiled"


def test_predict_and_eval_commands_take_each_path(trained, tmp_path, capsys):
    """`vitkit predict --backend compiled` gives the eager probabilities; `vitkit eval
    --backend int8` calibrates on the train split and reports int8 in metrics.json."""
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image

    for i, image in enumerate(load_digits("test").images[:5]):
        Image.fromarray(image[0].numpy()).save(folder / f"{i}.png")
    answers = {}
    for path in ("eager", "compiled"):
        assert main(["predict", "--checkpoint", str(trained), str(folder), "--backend", path,
                     "--format", "json", "--fp32"]) == 0
        answers[path] = json.loads(capsys.readouterr().out)
    for a, b in zip(answers["eager"], answers["compiled"], strict=True):
        assert a["labels"] == b["labels"]
        assert max(abs(x - y) for x, y in zip(a["probs"], b["probs"], strict=True)) < 1e-4
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(trained), "--data", "digits", "--backend", "int8",
                 "--max-calibration-images", "128", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dtype"] == "int8" and metrics["backend"] == "int8"
    fp32 = evaluate(vitkit.load_pretrained(trained), load_digits("test"))
    assert abs(metrics["top1"] - fp32["top1"]) < 0.02


@pytest.mark.parametrize("argv, phrase", [
    (["--backend", "int8"], "--backend int8 needs images to calibrate on"),
    (["--backend", "eager", "--calibration", "x"], "--calibration is for --backend int8"),
    (["--backend", "onnx"], "--backend onnx runs an .onnx file"),
])
def test_backend_flags_that_cannot_work_are_refused(trained, tmp_path, capsys, argv, phrase):
    code = main(["predict", "--checkpoint", str(trained), str(tmp_path), *argv])
    one_line_error(capsys, code, phrase)


def test_fp8_is_refused_on_a_device_without_float8_units(trained, tmp_path, capsys):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    code = main(["predict", "--checkpoint", str(trained), str(tmp_path), "--backend", "fp8",
                 "--device", "cpu"])
    line = one_line_error(capsys, code, "--backend fp8 needs a GPU that multiplies float8")
    assert "use --backend compiled" in line


def test_a_server_runs_the_compiled_path_warmed(trained):
    from fastapi.testclient import TestClient

    from vitkit.serve import TorchBackend, create_app

    backend = TorchBackend(vitkit.load_pretrained(trained), device="cpu", fp32=True,
                           backend="compiled", max_batch=4)
    assert backend.describe()["path"] == "compiled"
    with TestClient(create_app(backend, max_batch=4), base_url="http://127.0.0.1") as client:
        answer = client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0][0]["label"] in [str(i) for i in range(10)]


@pytest.mark.parametrize("bf16_units", [True, False])
def test_int8_runs_bf16_between_its_layers_only_where_it_pays(monkeypatch, trained, bf16_units):
    """Both branches of the int8 graph, uncompiled, on a CPU where the model's forward pass
    measures faster in bf16 or in fp32 (`inference_dtype`, forced): bf16 between the int8
    layers (the graph runs under autocast) only in the first, and either way the answers
    stay."""
    from vitkit.infer import int8

    monkeypatch.setattr(int8, "inference_dtype", lambda model, device, batch: (
        torch.bfloat16 if bf16_units else torch.float32))
    model = vitkit.load_pretrained(trained)
    test = load_digits("test")
    quantized = int8.quantize_int8(model, load_digits("train").images[:128], compile=False)
    assert quantized.activations == (torch.bfloat16 if bf16_units else torch.float32)
    inputs = model_inputs(model, test.images)
    seen = []
    quantized.graph.register_forward_hook(
        lambda module, args, output: seen.append(torch.is_autocast_enabled("cpu")))
    with torch.no_grad():
        answers = quantized(inputs)
        agree = (answers.argmax(1) == model(inputs).argmax(1)).float().mean()
    assert seen == [bf16_units] and answers.dtype == torch.float32
    assert agree > 0.97
    assert next(model.parameters()).dtype == torch.float32  # left untouched


@pytest.mark.parametrize("vnni", [True, False])
def test_int8_activations_get_7_bits_only_without_vnni(monkeypatch, trained, vnni):
    """Both branches forced (a CPU with VNNI, one with AVX2 only), uncompiled: without VNNI
    every activation is quantized to 0..127, so that the kernels' 16-bit sums of two u8 x s8
    products cannot saturate; with it, to 0..255. The answers stay either way."""
    from vitkit.infer import int8

    monkeypatch.setattr(int8, "has_int8_dot_products", lambda: vnni)
    model = vitkit.load_pretrained(trained)
    test = load_digits("test")
    quantized = int8.quantize_int8(model, load_digits("train").images[:128], compile=False)
    assert quantized.reduce_range is not vnni
    ranges = {tuple(node.args[3:5]) for node in quantized.graph.graph.nodes
              if "quantize_per_tensor" in str(node.target) and "dequantize" not in str(node.target)}
    assert ranges == {(0, 255 if vnni else 127)}
    inputs = model_inputs(model, test.images)
    with torch.no_grad():
        agree = (quantized(inputs).argmax(1) == model(inputs).argmax(1)).float().mean()
    assert agree > 0.97


def test_int8_refuses_activations_it_cannot_run(trained):
    with pytest.raises(ValueError, match="activations must be torch.bfloat16 or torch.float32"):
        vitkit.infer.int8.quantize_int8(vitkit.load_pretrained(trained),
                                        load_digits("train").images[:8], compile=False,
                                        activations=torch.float16)


def test_a_server_of_a_small_model_stays_eager_without_compiling(tmp_path, monkeypatch):
    """`vitkit serve`'s default (auto): a model that runs a whole batch in a few ms is not
    what limits a server, so nothing is compiled at start."""
    from tests.serve_helpers import tiny_checkpoint
    from vitkit.serve import load_backend

    monkeypatch.setattr(backends, "_time_paths",
                        lambda runners, inputs, builds: {n: Timing(0.0, 1e-5) for n in runners})
    backend = load_backend(tiny_checkpoint(tmp_path / "c"), device="cpu")
    assert backend.path == "eager" and "not what limits a server" in backend.choice.reason


class Sleeper(torch.nn.Module):
    """A path that takes `seconds` a call (its first call `first` more: a compile; a call
    right after another path's `cold` more: caches that path filled), and writes its name in
    `log` at every call."""

    def __init__(self, name: str, seconds: float, log: list[str], first: float = 0.0,
                 cold: float = 0.0) -> None:
        super().__init__()
        self.name, self.seconds, self.log, self.first, self.cold = name, seconds, log, first, cold

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        extra = self.first if not self.log.count(self.name) else 0.0
        extra += self.cold if self.log and self.log[-1] != self.name else 0.0
        time.sleep(self.seconds + extra)
        self.log.append(self.name)
        return images


def test_paths_are_timed_side_by_side_in_rounds(monkeypatch):
    """Every path is warmed up, then timed in rounds of two calls each, the second timed (a
    noisy moment slows them alike, and the timed call finds the caches as a path running
    alone does), at least MIN_ROUNDS and at most MAX_ROUNDS; the setup counts the build and
    what the warm-up took beyond two steady calls (the compile)."""
    monkeypatch.setattr(backends, "MEASURE_S", 0.2)
    log: list[str] = []
    runners = {"slow": Sleeper("slow", 0.02, log, first=0.3),
               "fast": Sleeper("fast", 0.002, log, cold=0.05)}
    inputs = torch.zeros(4, 1, 8, 8)
    timings = backends._time_paths(runners, inputs, {"slow": 1.0, "fast": 0.5})
    assert log[:4] == ["slow", "slow", "fast", "fast"]  # the warm-up, path by path
    rounds = log[4:]
    assert rounds == ["slow", "slow", "fast", "fast"] * (len(rounds) // 4)
    assert backends.MIN_ROUNDS <= len(rounds) // 4 <= backends.MAX_ROUNDS
    assert timings["fast"].image_s < 0.02 / 4  # its warm calls, not the 0.052 s cold ones
    assert timings["fast"].image_s < timings["slow"].image_s
    assert 0.015 / 4 < timings["slow"].image_s < 0.2 / 4
    assert 1.25 < timings["slow"].setup_s < 2.0  # 1 s build + the 0.3 s first call
    assert 0.5 <= timings["fast"].setup_s < 0.8


def test_the_command_line_offers_the_library_s_paths():
    from vitkit.cli.backend_args import PATHS

    assert PATHS == backends.BACKENDS
