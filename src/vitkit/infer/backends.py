"""Which inference path runs a model, chosen by measurement: eager (the frozen copy in the
compute dtype), compiled (the same through inductor with frozen weights), openvino (OpenVINO's
CPU plugin in the same dtype, `vitkit.export.openvino_runner`), int8 (static quantization,
`vitkit.infer.int8`), onnx-int8 (ONNX Runtime running the int8 export,
`vitkit.export.onnx_int8_runner`) or fp8 (float8 linear layers on GPUs that have them,
`vitkit.infer.float8`). openvino is a candidate on the CPU where it is installed. The int8
paths are candidates only when calibration images are given, which is how a caller accepts
int8's numbers in place of the model's own; fp8 only when asked.

`choose_backend` times each path on this machine the first time it meets this model, batch
and dtype, remembers the figures ($VITKIT_CACHE/backend.json, keyed by CPU, torch, threads,
model and batch; `vitkit.measured`), and picks the one that finishes the work first: a
compile only pays when there are enough images to win its cost back."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import torch
from torch import nn

from ..measured import cache_file, choice_key, read_choices, remember, side_by_side
from ..models import VisionTransformer
from .batches import inference_module, model_inputs
from .optimize import optimize_for_inference, wrapper_options

log = logging.getLogger("vitkit")

BACKENDS = ("auto", "eager", "compiled", "openvino", "int8", "onnx-int8", "fp8")
# A guess at what building a faster path costs, before any has been measured on this machine:
# work that takes less than this eagerly is run eagerly without measuring anything.
SETUP_GUESS_S = 10.0
# A server whose model runs a whole batch faster than this is not limited by the model.
SERVER_FLOOR_S = 0.01
MEASURED_BATCH = 16
# Paths are timed in interleaved rounds: at least 3, and at least 1 s in all unless 15 rounds
# come first (measured at batch 1: one path timed alone right after another's build read
# 40 ms/image where side by side it ran 25).
MIN_ROUNDS, MAX_ROUNDS, MEASURE_S = 3, 15, 1.0


@dataclass(frozen=True)
class Timing:
    """One path, measured: seconds to build it (compile, calibrate) and per image."""

    setup_s: float
    image_s: float

    def describe(self, name: str) -> str:
        setup = f", {self.setup_s:.1f} s to build" if self.setup_s >= 0.05 else ""
        return f"{name} {1000 * self.image_s:.2f} ms/image{setup}"


@dataclass(frozen=True)
class BackendChoice:
    """The path chosen, why, and what was measured (measured now or read from the cache)."""

    backend: str
    reason: str
    timings: dict[str, Timing] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"backend {self.backend}: {self.reason}"


def build_runner(model: VisionTransformer, backend: str, dtype: torch.dtype,
                 device: torch.device, calibration: torch.Tensor | None = None) -> nn.Module:
    """The module that runs `model` on `backend` ('eager', 'compiled', 'openvino', 'int8',
    'onnx-int8' or 'fp8', which computes in bf16 whatever `dtype`): normalised float images
    in, logits out."""
    if backend == "eager":
        return inference_module(model, dtype, device)
    if backend == "compiled":
        return optimize_for_inference(model, dtype=dtype, device=device, compile=True)
    if backend == "openvino":
        if device.type != "cpu":
            raise ValueError(f"backend='openvino' runs on OpenVINO's CPU plugin, not on {device}")
        from ..export import openvino_runner

        return openvino_runner(model, dtype)
    if backend == "int8":
        if calibration is None:
            raise ValueError("backend='int8' needs calibration images (calibration=uint8 "
                             "(N, C, H, W) images prepared like the inputs)")
        if device.type != "cpu":
            raise ValueError(f"backend='int8' runs on the CPU's int8 units, not on {device}")
        from .int8 import int8_between, quantize_int8

        return quantize_int8(model, calibration, activations=int8_between(dtype))
    if backend == "onnx-int8":
        if device.type != "cpu":
            raise ValueError(f"backend='onnx-int8' runs on ONNX Runtime's CPU provider, not on "
                             f"{device}")
        from ..export import onnx_int8_runner

        return onnx_int8_runner(model)
    if backend == "fp8":
        from .float8 import quantize_float8

        return quantize_float8(model, device)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


# The optional paths and the packages each needs: candidates where installed; one that cannot
# be built for a model (torchao's quantizer refuses some graphs, e.g. a ResNet's) is left out.
INT8_PATHS = {"int8": ("torchao",), "onnx-int8": ("onnx", "onnxruntime")}
FLOAT_PATHS = {"openvino": ("openvino",)}
OPTIONAL_PATHS = {**FLOAT_PATHS, **INT8_PATHS}


def installed(paths: dict[str, tuple[str, ...]]) -> list[str]:
    """Those of `paths` whose packages this installation has."""
    return [name for name, needs in paths.items() if all(find_spec(module) for module in needs)]


def int8_paths() -> list[str]:
    """The int8 paths this installation can build: torchao's, and ONNX Runtime's."""
    return installed(INT8_PATHS)


def candidates(device: torch.device, calibrated: bool) -> list[str]:
    """The paths `choose_backend` weighs on `device`: eager and compiled; on the CPU also
    OpenVINO where installed, and the int8 paths where installed when `calibrated`."""
    if device.type != "cpu":
        return ["eager", "compiled"]
    return ["eager", "compiled"] + installed(FLOAT_PATHS) + (int8_paths() if calibrated else [])


def _time_paths(runners: dict[str, nn.Module], inputs: torch.Tensor,
                builds: dict[str, float]) -> dict[str, Timing]:
    """Each path warmed up (two calls; a compile happens in the first), then timed side by
    side: rounds of two calls of each path, the second timed, at least `MIN_ROUNDS` and
    `MEASURE_S` in all (at most `MAX_ROUNDS`), so that a noisy moment on a shared machine
    slows every path alike, while each timed call finds the caches as the chosen path will,
    running alone (a call right after another path's read ONNX Runtime's ViT-S/16 at batch 1
    at 34 ms/image, where it runs at 21); the median timed call of each. A path's setup is
    its build plus what its warm-up took beyond two steady calls."""
    warm_up: dict[str, float] = {}
    with torch.no_grad():  # as `evaluating` runs it: another grad mode would recompile
        for name, runner in runners.items():
            start = time.perf_counter()
            runner(inputs)
            runner(inputs)
            warm_up[name] = time.perf_counter() - start
        steady = side_by_side({name: functools.partial(runner, inputs)
                               for name, runner in runners.items()},
                              MIN_ROUNDS, MAX_ROUNDS, MEASURE_S, settle=1)
    return {name: Timing(builds[name] + max(0.0, warm_up[name] - 2 * steady[name]),
                         steady[name] / len(inputs)) for name in runners}


def recipe(name: str, dtype: torch.dtype, device: torch.device | str = "cpu") -> str:
    """The path and what decides its speed beyond the machine, so that a cached figure is
    measured again when that changes (int8: the dtype between its layers, the activation
    bits; the compiled paths: how their graphs call their kernels; openvino: its version)."""
    text = name
    if name == "int8":
        from .int8 import int8_between, int8_recipe

        text = f"int8, {int8_recipe(int8_between(dtype))}"
    if name in ("compiled", "int8"):
        text += "".join(f", {option}" for option in wrapper_options(device))
    if name == "openvino":
        from ..export import openvino_version

        text += f" {openvino_version()}"
    return text


def _cost(name: str, timing: Timing, images: int | None, built: dict) -> float:
    """Seconds to finish `images` on this path (per image when the work is open-ended)."""
    if images is None:
        return timing.image_s
    return images * timing.image_s + (0.0 if name in built else timing.setup_s)


def choose_backend(
    model: VisionTransformer, dtype: torch.dtype, device: torch.device, batch: int,
    images: int | None, calibration: torch.Tensor | None = None, cache: Path | None = None,
) -> tuple[BackendChoice, nn.Module]:
    """The fastest path for `images` images (None: a server, open-ended) in batches of
    `batch`, and its module ready to run. On the CPU openvino is a candidate where it is
    installed, and the int8 paths with `calibration` (onnx-int8 where ONNX Runtime is)."""
    device = torch.device(device)
    names = candidates(device, calibration is not None)
    path = cache or cache_file("backend")
    keys = {name: choice_key("backend", model.config, recipe(name, dtype, device), dtype,
                             device.type, batch) for name in names}
    known = read_choices(path)
    timings = {n: Timing(**known[k]) for n, k in keys.items() if k in known}
    built: dict[str, nn.Module] = {}
    # Timed on up to 16 images: per image that is within noise of larger CPU batches, and it
    # keeps the measurement a small part of the work it decides for.
    inputs = model_inputs(model, torch.zeros(min(batch, MEASURED_BATCH), model.config.in_chans,
                                             *model.config.img_size, dtype=torch.uint8), device)
    builds: dict[str, float] = {}

    def build(name: str) -> None:
        start = time.perf_counter()
        built[name] = build_runner(model, name, dtype, device, calibration)
        builds[name] = time.perf_counter() - start

    def measure(measured: list[str]) -> None:
        timings.update(_time_paths({n: built[n] for n in measured}, inputs, builds))
        for name in measured:
            remember(path, keys[name], vars(timings[name]))

    if "eager" not in timings:
        build("eager")
        measure(["eager"])
    too_little = _too_little(timings["eager"], batch, images,
                             [t.setup_s for n, t in timings.items() if n != "eager"])
    if too_little:
        return _chosen("eager", too_little, timings, built, model, dtype, device, calibration)
    failed = []
    for name in [n for n in names if n not in timings]:
        try:
            build(name)
        except Exception as error:  # noqa: BLE001 - an optional path: the others remain
            if name not in OPTIONAL_PATHS:
                raise
            failed.append(f"{name} could not be built for this model: "
                          f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
            log.warning("%s", failed[-1])
    fresh = [n for n in names if n in builds]  # eager again too, beside what it is weighed
    if set(fresh) - {"eager"}:                   # against, if it was built here
        measure(fresh)
    names = [n for n in names if n in timings]
    best = min(names, key=lambda n: _cost(n, timings[n], images, built))
    figures = "; ".join([timings[n].describe(n) for n in names] + failed)
    work = f"{images} images" if images is not None else "serving"
    reason = f"the fastest for {work} at batch {batch} ({figures})"
    return _chosen(best, reason, timings, built, model, dtype, device, calibration)


def _too_little(eager: Timing, batch: int, images: int | None, setups: list[float]) -> str:
    """Why no faster path is worth building for this work ('' when one may be)."""
    if images is None:
        if eager.image_s * batch < SERVER_FLOOR_S:
            return (f"a batch of {batch} takes {1000 * eager.image_s * batch:.1f} ms eagerly; "
                    "the model is not what limits a server")
        return ""
    eager_s = images * eager.image_s
    setup = min(setups, default=SETUP_GUESS_S)
    if eager_s < setup:
        return (f"{images} images take about {eager_s:.1f} s eagerly, less than the "
                f"{setup:.0f} s a faster path costs to build")
    return ""


def _chosen(name: str, reason: str, timings: dict[str, Timing], built: dict[str, nn.Module],
            model: VisionTransformer, dtype: torch.dtype, device: torch.device,
            calibration: torch.Tensor | None) -> tuple[BackendChoice, nn.Module]:
    runner = built.get(name) or build_runner(model, name, dtype, device, calibration)
    choice = BackendChoice(name, reason, dict(timings))
    log.info("%s", choice)
    return choice, runner


def select_runner(
    model: VisionTransformer, backend: str, dtype: torch.dtype, device: torch.device,
    batch: int, images: int | None, calibration: torch.Tensor | None = None,
) -> nn.Module:
    """The module for `backend`: built as asked, or chosen by `choose_backend` for 'auto'
    (which logs its choice and figures)."""
    if backend != "auto":
        return build_runner(model, backend, dtype, torch.device(device), calibration)
    return choose_backend(model, dtype, device, batch, images, calibration)[1]
