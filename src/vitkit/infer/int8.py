"""int8 inference on the CPU's int8 units (VNNI, AMX-INT8): PyTorch 2 export quantization with
torchao's x86 inductor quantizer, static (activation ranges calibrated on the user's images,
prepared by the one preprocessing path), then compiled so that oneDNN runs every linear layer
as an int8 matrix product.

The weights are quantized per output channel, the activations per tensor; the patch
embedding, LayerNorm, softmax and GELU stay in float. Where the CPU has bf16 units (AMX,
AVX-512 BF16) and bf16 measures faster for the model (`vitkit.infer.precision`), the graph is
compiled and run under bf16 autocast, PyTorch's "int8-mixed-bf16" recipe: what flows between
the int8 layers (the residual stream, LayerNorm, GELU, the fused attention) is bf16, half the
memory traffic of fp32; elsewhere it stays fp32 (measured on an Intel Xeon with AVX-512 BF16
and no AMX, where fp32 is the faster: int8 ViT-S/16 with bf16 between ran 0.91-0.95x of fp32
between). Where the CPU
has no VNNI (AVX2 only), the activations are quantized to 7 bits, as torchao advises for such
CPUs: their int8 kernels add pairs of u8 x s8 products in 16 bits, which saturate at 8."""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

from ..cpu import has_int8_dot_products
from ..errors import check_fixed_input, require
from ..models import VisionTransformer
from .batches import model_inputs
from .optimize import compile_frozen
from .precision import inference_dtype

log = logging.getLogger("vitkit")

CALIBRATION_BATCH = 32
MAX_BATCH = 4096  # the largest batch the exported graph accepts


def int8_activations(model: VisionTransformer) -> torch.dtype:
    """The dtype between `model`'s int8 layers on this CPU: the one its float forward pass
    runs faster in (`inference_dtype`, measured where the CPU has bf16 units), fp32
    elsewhere."""
    return inference_dtype(model, "cpu", CALIBRATION_BATCH)


def int8_between(dtype: torch.dtype) -> torch.dtype:
    """The dtype between the int8 layers of a run computing in `dtype`: the same, where
    int8 can take it (bf16 or fp32), else fp32."""
    return dtype if dtype in (torch.bfloat16, torch.float32) else torch.float32


def int8_reduce_range() -> bool:
    """Whether activations get 7 bits instead of 8 on this CPU: where its int8 kernels have
    no VNNI or AMX-INT8 (capped or absent), so that 16-bit pair sums cannot saturate."""
    return not has_int8_dot_products()


def int8_recipe(activations: torch.dtype, reduce_range: bool | None = None) -> str:
    """What decides int8's numbers and speed beyond the machine, in words (this CPU's
    default bits when `reduce_range` is None): the dtype between its layers and the
    activation bits."""
    reduce_range = int8_reduce_range() if reduce_range is None else reduce_range
    return (f"{str(activations).removeprefix('torch.')} between layers"
            + (", 7-bit activations" if reduce_range else ""))


class Int8Model(nn.Module):
    """A quantized, compiled ViT that takes normalised float images and returns fp32 logits;
    `calibrated_on` says how many images set its activation ranges, `activations` what
    dtype flows between its int8 layers, `reduce_range` whether activations have 7 bits."""

    def __init__(self, graph: nn.Module, config: object, calibrated_on: int,
                 activations: torch.dtype = torch.float32, reduce_range: bool = False) -> None:
        super().__init__()
        self.graph = graph
        self.config = config
        self.calibrated_on = calibrated_on
        self.activations = activations
        self.reduce_range = reduce_range
        self.dtype = torch.float32  # what it takes in

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_fixed_input(images.shape, (self.config.in_chans, *self.config.img_size), "int8")
        bf16 = self.activations == torch.bfloat16
        with warnings.catch_warnings(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            # inductor's int8 lowering warns about its own code
            warnings.filterwarnings("ignore", message="To copy construct from a tensor")
            return self.graph(images.float()).float()

    def train(self, mode: bool = True) -> Int8Model:
        """Only ever an inference graph: the mode is recorded and nothing below changes (an
        exported graph refuses train()/eval())."""
        self.training = mode
        return self


def quantize_int8(model: VisionTransformer, calibration: torch.Tensor,
                  compile: bool = True, activations: torch.dtype | None = None,
                  reduce_range: bool | None = None) -> Int8Model:
    """`model` with int8 weights and activations, calibrated on `calibration`: uint8
    (N, C, H, W) images at the model's size, as `vitkit.data.load_image` makes them (a few
    hundred suffice). The model itself is left untouched; the result runs on the CPU.

    activations: the dtype between the int8 layers, bf16 or fp32 (default: the faster for
    this model on this CPU, `int8_activations`). reduce_range: 7-bit activations (default: where
    the CPU has no VNNI, `int8_reduce_range`). Without `compile` the graph runs as reference
    (de)quantize ops in float: correct, slow, for checking accuracy without the compiler."""
    activations = activations or int8_activations(model)
    reduce_range = int8_reduce_range() if reduce_range is None else reduce_range
    if activations not in (torch.bfloat16, torch.float32):
        raise ValueError(f"activations must be torch.bfloat16 or torch.float32, not {activations}")
    if calibration.dtype != torch.uint8 or calibration.ndim != 4 or len(calibration) == 0:
        raise ValueError("calibration must be uint8 images (N, C, H, W) with N >= 1, got "
                         f"{calibration.dtype} {tuple(calibration.shape)}")
    pytree_log = logging.getLogger("torch.utils._pytree")  # torchao's import warns there
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "int8", "int8 quantization")
        x86 = require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", "int8",
                      "int8 quantization")
    finally:
        pytree_log.setLevel(level)
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config(
        reduce_range=reduce_range))
    # The patch embedding (a convolution, about 1% of a ViT's multiply-adds) stays in float:
    # inductor's int8 convolution with a dynamic batch fails its own stride check for some
    # shapes (1 channel, 2x2 patches), and the first layer is where int8 costs most accuracy.
    quantizer.set_module_type_qconfig(nn.Conv2d, None)
    float_model = copy.deepcopy(model).float().cpu().eval()
    example = model_inputs(float_model, calibration[:2])
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        exported = torch.export.export(float_model, (example,), dynamic_shapes=({0: batch},))
        try:
            prepared = pt2e.prepare_pt2e(exported.module(), quantizer)
        except ValueError as error:  # the quantizer's pattern matching refuses some graphs
            name = model.meta.name or type(model).__name__
            raise ValueError(f"backend='int8' cannot quantize {name}'s graph (torchao: "
                             f"{error}); backend='onnx-int8' or 'compiled' can run it") from error
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            prepared(model_inputs(float_model, calibration[start:start + CALIBRATION_BATCH]))
        graph = pt2e.convert_pt2e(prepared)
    if compile:
        graph = compile_frozen(graph, device="cpu")
    log.info("int8: calibrated on %d images, %s", len(calibration),
             int8_recipe(activations, reduce_range))
    return Int8Model(graph, model.config, len(calibration), activations, reduce_range).eval()
