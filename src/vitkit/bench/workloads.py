"""The benchmarked workloads: inference and training steps of vitkit and of its peers.

timm and transformers are imported here only when asked for: they are the yardsticks,
never dependencies of vitkit itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ImageTensorDataset
from ..device import compile_options, has_float8
from ..infer.optimize import optimize_for_inference
from ..models import Preprocessing, VisionTransformer, ViTConfig


@dataclass
class Workload:
    """One thing to time: `step()` processes `batch` images."""

    name: str
    step: Callable[[], object]
    batch: int
    optional: bool = False  # a path that may fail to build here: left out, not fatal


def peer_model(library: str, config: ViTConfig) -> nn.Module:
    """The same architecture built by timm or transformers, returning logits."""
    if library == "timm":
        import timm.models.vision_transformer as timm_vit

        return timm_vit.VisionTransformer(
            img_size=config.img_size, patch_size=config.patch_size, in_chans=config.in_chans,
            num_classes=config.num_classes, embed_dim=config.embed_dim, depth=config.depth,
            num_heads=config.num_heads, mlp_ratio=config.mlp_dim / config.embed_dim,
            global_pool=config.global_pool,
        )
    if library == "hf":
        from transformers import ViTConfig as HFConfig
        from transformers import ViTForImageClassification

        hf_config = HFConfig(
            image_size=config.img_size[0], patch_size=config.patch_size,
            num_channels=config.in_chans, hidden_size=config.embed_dim,
            num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
            intermediate_size=config.mlp_dim, layer_norm_eps=config.layer_norm_eps,
            num_labels=config.num_classes, hidden_act="gelu", qkv_bias=config.qkv_bias,
            attn_implementation="sdpa",
        )
        return _LogitsOnly(ViTForImageClassification(hf_config))
    raise ValueError(f"unknown peer library {library!r}; use 'timm' or 'hf'")


class _LogitsOnly(nn.Module):
    """Hugging Face models return an output object; benchmarks want the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images).logits


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def inference_workloads(
    config: ViTConfig, batch: int, dtype: torch.dtype, device: torch.device,
    peers: list[str], compile: bool,
) -> list[Workload]:
    """Forward passes: vitkit's fast path (a frozen copy in the compute dtype), vitkit and each
    peer under autocast (as their users run them, the like-for-like comparison), and with
    `compile` each of those compiled too, plus on the CPU vitkit's OpenVINO path in `dtype`
    and its int8 paths (PyTorch int8 through inductor, and ONNX Runtime int8 of `vitkit
    export`) where installed, and on a GPU the compiled path replayed as CUDA graphs and,
    where it has float8 units, fp8."""
    torch.manual_seed(0)
    model = VisionTransformer(config).eval()
    images = torch.randn(batch, config.in_chans, *config.img_size, device=device)
    workloads = []
    fast = optimize_for_inference(model, dtype=dtype, device=device)
    workloads.append(Workload("vitkit", lambda: fast(images), batch))
    if compile:
        compiled = optimize_for_inference(model, dtype=dtype, device=device, compile=True)
        workloads.append(Workload("vitkit compiled", lambda: compiled(images), batch))
    if compile and device.type == "cpu":
        workloads += openvino_workloads(model, images, dtype)
        workloads += int8_workloads(model, images, dtype)
    if compile and device.type == "cuda":
        workloads += gpu_workloads(model, images, dtype)
    contenders = [("vitkit autocast", model.to(device))]
    contenders += [(library, peer_model(library, config).to(device).eval()) for library in peers]
    for name, module in contenders:
        variants = [(name, module)] + ([(f"{name} compiled", torch.compile(module))]
                                       if compile else [])
        for label, runner in variants:
            def forward(runner: nn.Module = runner) -> torch.Tensor:
                with torch.inference_mode(), _autocast(device, dtype):
                    return runner(images)

            workloads.append(Workload(label, forward, batch))
    return workloads


def openvino_workloads(model: VisionTransformer, images: torch.Tensor,
                       dtype: torch.dtype) -> list[Workload]:
    """`backend='openvino'` computing in `dtype`, where OpenVINO is installed."""
    if not importlib.util.find_spec("openvino"):
        return []
    from ..export import openvino_runner

    runner = openvino_runner(model, dtype)
    return [Workload("vitkit openvino", lambda: runner(images), len(images))]


def int8_workloads(model: VisionTransformer, images: torch.Tensor,
                   dtype: torch.dtype = torch.float32) -> list[Workload]:
    """vitkit's int8 paths that are installed: `backend='int8'` (torchao) with `dtype`
    between its layers, as a run computing in `dtype` builds it, and `backend='onnx-int8'`
    (ONNX Runtime running `vitkit export --int8 dynamic`). Calibrated on random pixels:
    speed only."""
    workloads = []
    batch = len(images)
    pixels = torch.randint(0, 256, (16, *images.shape[1:]), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    if importlib.util.find_spec("torchao"):
        from ..infer.int8 import quantize_int8

        int8 = quantize_int8(model, pixels, activations=dtype)
        workloads.append(Workload("vitkit int8", lambda: int8(images), batch))
    if importlib.util.find_spec("onnxruntime"):
        from ..export import onnx_int8_runner

        onnx_int8 = onnx_int8_runner(model)
        workloads.append(Workload("vitkit onnx-int8", lambda: onnx_int8(images), batch))
    return workloads


def float8_rows(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether to time fp8: in bf16 runs (fp8 computes the rest of the model in bf16), on a
    device with float8 units, with torchao installed."""
    return (dtype == torch.bfloat16 and has_float8(device)
            and importlib.util.find_spec("torchao") is not None)


def built_on_first_call(build: Callable[[], Callable[[], object]]) -> Callable[[], object]:
    """A step that builds what it runs on its first call, inside the warm-up, where a path
    that fails to build here is left out (`Workload.optional`) instead of ending the run."""
    built: list[Callable[[], object]] = []

    def step() -> object:
        if not built:
            built.append(build())
        return built[0]()

    return step


def gpu_workloads(model: VisionTransformer, images: torch.Tensor,
                  dtype: torch.dtype) -> list[Workload]:
    """vitkit's compiled path replayed as CUDA graphs, and `backend='fp8'` (`float8_rows`)."""
    batch, device = len(images), images.device

    def graphs() -> Callable[[], object]:
        runner = optimize_for_inference(model, dtype=dtype, device=device, compile=True,
                                        cuda_graphs=True)
        return lambda: runner(images)

    def fp8() -> Callable[[], object]:
        from ..infer.float8 import quantize_float8

        runner = quantize_float8(model, device)
        return lambda: runner(images)

    workloads = [Workload("vitkit compiled, CUDA graphs", built_on_first_call(graphs), batch,
                          optional=True)]
    if float8_rows(device, dtype):
        workloads.append(Workload("vitkit fp8 compiled", built_on_first_call(fp8), batch,
                                  optional=True))
    return workloads


def float8_training_workload(config: ViTConfig, device: torch.device, make_step: Callable,
                             batch: int) -> Workload:
    """vitkit compiled with its encoder's linear layers in float8, as precision='fp8' trains
    (the steps run in bf16 autocast around them)."""

    def build() -> Callable[[], object]:
        from ..train.precision import to_float8_training

        model = VisionTransformer(config).to(device).train()
        to_float8_training(model, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        return make_step(torch.compile(model, options=compile_options(device)), optimizer,
                         torch.bfloat16)

    return Workload("vitkit fp8 compiled", built_on_first_call(build), batch, optional=True)


Batches = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def augmented_batches(dataset: ImageTensorDataset, config: ViTConfig, batch: int,
                      recipe: str = "small-data") -> Batches:
    """Random batches of `dataset` (its uint8 tensor cache) through the recipe's batched
    augmentation, exactly as `vitkit train` feeds its model."""
    from ..train import get_recipe
    from ..train.augment import BatchAugment, channel_stats

    mean, std = channel_stats(dataset.images)
    augment = BatchAugment(get_recipe(recipe), dataset.num_classes,
                           Preprocessing(mean=mean, std=std, crop_pct=1.0),
                           config.img_size, tuple(dataset.images.shape[-2:]))
    generator = torch.Generator().manual_seed(0)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(dataset), (batch,), generator=generator)
        return augment(dataset.images[index], dataset.targets[index])

    return next_batch


def training_workloads(
    config: ViTConfig, batch: int, dtype: torch.dtype, device: torch.device,
    peers: list[str], compile: bool, batches: Batches | None = None,
) -> list[Workload]:
    """Training steps (forward, backward, AdamW step): on a fixed random batch, or, when
    `batches` is given, on a fresh batch from it inside every timed step (the data pipeline
    is then part of each library's time). With `compile` on a GPU, also vitkit compiled
    with CUDA graphs, and `precision='fp8'` compiled (`float8_rows`)."""
    torch.manual_seed(0)
    fixed = (torch.randn(batch, config.in_chans, *config.img_size, device=device),
             torch.randint(0, config.num_classes, (batch,), device=device))

    def make_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                  autocast: torch.dtype = dtype) -> Callable[[], object]:
        def step() -> None:
            images, labels = batches() if batches is not None else fixed
            images, labels = images.to(device), labels.to(device)
            with _autocast(device, autocast):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    workloads = []
    ours = VisionTransformer(config).to(device).train()
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    workloads.append(Workload(
        "vitkit", make_step(ours, torch.optim.AdamW(ours.parameters(), lr=1e-4, **fused)), batch
    ))
    if compile:
        compiled = VisionTransformer(config).to(device).train()
        optimizer = torch.optim.AdamW(compiled.parameters(), lr=1e-4, **fused)
        workloads.append(Workload(
            "vitkit compiled",
            make_step(torch.compile(compiled, options=compile_options(device)), optimizer), batch
        ))
    if compile and device.type == "cuda":  # forward and backward replayed as CUDA graphs
        graphs = VisionTransformer(config).to(device).train()
        optimizer = torch.optim.AdamW(graphs.parameters(), lr=1e-4, **fused)
        replayed = torch.compile(graphs, options=compile_options(device, cuda_graphs=True))
        workloads.append(Workload("vitkit compiled, CUDA graphs", make_step(replayed, optimizer),
                                  batch, optional=True))
    if compile and float8_rows(device, dtype):
        workloads.append(float8_training_workload(config, device, make_step, batch))
    for library in peers:
        peer = peer_model(library, config).to(device).train()
        optimizer = torch.optim.AdamW(peer.parameters(), lr=1e-4)
        workloads.append(Workload(library, make_step(peer, optimizer), batch))
        if compile:
            peer = peer_model(library, config).to(device).train()
            optimizer = torch.optim.AdamW(peer.parameters(), lr=1e-4)
            workloads.append(Workload(f"{library} compiled",
                                      make_step(torch.compile(peer), optimizer), batch))
    return workloads
