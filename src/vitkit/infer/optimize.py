"""The fast inference path: weights stored in the compute dtype, no autograd, optionally
compiled with frozen weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..device import compile_options, default_dtype
from ..models import VisionTransformer


class InferenceModel(nn.Module):
    """A frozen copy of a ViT in `dtype` that takes any float images and returns fp32 logits.

    Holding bf16 weights avoids autocast's cast of every weight on every call; the input is
    cast once on the way in and the logits once on the way out.
    """

    def __init__(self, model: VisionTransformer, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.config = model.config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.to(self.dtype)).float()


def optimize_for_inference(
    model: VisionTransformer,
    dtype: torch.dtype | None = None,
    compile: bool = False,
    device: torch.device | str | None = None,
    dynamic: bool = True,
    cuda_graphs: bool = False,
) -> nn.Module:
    """A module computing the same logits as `model` (within `dtype` rounding), faster.

    dtype defaults to bf16 where the hardware has bf16 matrix units and fp32 elsewhere (see
    `vitkit.device`); `vitkit.infer.precision.inference_dtype` measures which of the two is
    faster for a model on this CPU, as vitkit's commands do. With compile=True the model
    goes through `torch.compile` with frozen weights (constant-folded, prepacked matrices);
    the first call then takes a while (`vitkit.infer.backends` decides when that pays);
    cuda_graphs (CUDA only) replays each batch size's kernels as one CUDA graph, which saves
    the launches that dominate small batches. The original model is left untouched.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = dtype or default_dtype(device)
    frozen = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    frozen.requires_grad_(False)
    wrapped = InferenceModel(frozen, dtype).eval()
    if not compile:
        return wrapped
    return compile_frozen(wrapped, dynamic, device, cuda_graphs)


def compile_frozen(module: nn.Module, dynamic: bool = True, device: torch.device | str = "cpu",
                   cuda_graphs: bool = False) -> nn.Module:
    """`module` (on `device`) through inductor with its weights frozen (constant-folded,
    prepacked for oneDNN), for no-grad inference. On the CPU inductor writes the code that
    calls its kernels in C++ rather than Python (`cpp_wrapper`): a ViT runs some hundred
    kernels per image, and at batch 1 under vitkit's short OpenMP spin calling them from
    Python cost the int8 path a quarter to half of its time (measured on a 2-core Xeon with
    AMX: int8 ViT-S/16 batch 1 64-97 against 49-50 images/s; at batch 32 level, int8
    ViT-B/16 0.8-1.1x from round to round, not shown beyond the machine's noise;
    `benchmarks/compile_wrapper.py`; compiling takes some 8 s longer). dynamic: one graph
    serves every batch size but 1 (which torch specialises), so a run's last short batch or
    a server's varying batches do not wait for the compiler again. cuda_graphs: inductor
    records each batch size's kernels once as a CUDA graph and replays it (ignored off CUDA);
    the graph reuses its output buffer, so each output is copied out."""
    import torch._inductor.config as inductor_config

    # The global switch, not torch.compile(options=...): the int8 lowering passes read it
    # outside the options' scope (measured: compiling a quantized graph fails without it).
    # It changes only graphs compiled without gradients.
    inductor_config.freezing = True
    options = {**(compile_options(device, cuda_graphs) or {}), **wrapper_options(device)}
    return NoGrad(torch.compile(module, dynamic=dynamic, options=options or None),
                  copy_output=bool(options and options.get("triton.cudagraphs")))


def wrapper_options(device: torch.device | str) -> dict[str, bool]:
    """How `compile_frozen`'s graphs call their kernels on `device`: from C++ on the CPU,
    inductor's default (Python) elsewhere."""
    return {"cpp_wrapper": True} if torch.device(device).type == "cpu" else {}


class NoGrad(nn.Module):
    """Runs `module` without gradients, whatever the caller's mode: inductor freezes weights
    only for graphs compiled without them (measured: an int8 graph compiled with gradients
    on ran at a third of its speed)."""

    def __init__(self, module: nn.Module, copy_output: bool = False) -> None:
        super().__init__()
        self.module = module
        self.copy_output = copy_output  # a CUDA graph's output is overwritten by its next run

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            output = self.module(*args)
            return output.clone() if self.copy_output else output

    def train(self, mode: bool = True) -> NoGrad:
        self.training = mode  # an inference graph: nothing below changes mode
        return self
