"""float8 inference on GPUs that multiply float8 matrices (CUDA compute capability 8.9 or
newer: Ada, Hopper, Blackwell), through torchao: each encoder linear layer keeps its weights in
float8 (e4m3) with one scale per output row and scales its inputs per row on every call; the
patch embedding, LayerNorms, the attention products, GELU and the head stay in bf16. Then
compiled with frozen weights, like `backend='compiled'`.

float8 changes the numbers more than bf16 does (3 mantissa bits), which is why `--backend
auto` never picks it: a caller asks for it."""

from __future__ import annotations

import torch
from torch import nn

from ..device import has_float8
from ..errors import require
from ..models import VisionTransformer
from .optimize import compile_frozen, optimize_for_inference

# float8 matrix products need both sides of the weight to be multiples of 16
FLOAT8_MULTIPLE = 16


def float8_layer(module: nn.Module, name: str) -> bool:
    """Whether the layer called `name` computes in float8: a linear layer whose sides are
    multiples of 16, anywhere but in a classification head (`head`, `head_dist`), whose few
    outputs are the logits themselves."""
    return (isinstance(module, nn.Linear) and not name.startswith("head")
            and module.in_features % FLOAT8_MULTIPLE == 0
            and module.out_features % FLOAT8_MULTIPLE == 0)


def check_float8_device(device: torch.device, what: str) -> None:
    """Refuse `what` on a device without float8 matrix units, saying what to use instead."""
    if not has_float8(device):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        raise ValueError(f"{what} needs a GPU that multiplies float8 matrices (CUDA compute "
                         f"capability 8.9 or newer: Ada, Hopper, Blackwell), and {name} has "
                         "none; use backend='compiled' (bf16) there")


def quantize_float8(model: VisionTransformer, device: torch.device | str,
                    compile: bool = True, cuda_graphs: bool = False) -> nn.Module:
    """A copy of `model` whose encoder linear layers (`float8_layer`) compute in float8, the
    rest in bf16: normalised float images in, fp32 logits out. compile: through inductor with
    frozen weights; cuda_graphs: replayed as CUDA graphs (see `compile_frozen`)."""
    device = torch.device(device)
    check_float8_device(device, "backend='fp8'")
    quantization = require("torchao.quantization", "fp8", "float8 inference")
    runner = optimize_for_inference(model, dtype=torch.bfloat16, device=device)
    config = quantization.Float8DynamicActivationFloat8WeightConfig(
        granularity=quantization.PerRow())
    quantization.quantize_(runner.model, config, filter_fn=float8_layer)
    if not compile:
        return runner
    return compile_frozen(runner, device=device, cuda_graphs=cuda_graphs)
