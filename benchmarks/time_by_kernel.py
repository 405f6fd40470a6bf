"""Where a ViT forward pass spends its time on this CPU, by kind of kernel, for timm compiled
(bf16 where the CPU has bf16 units, as issue 24 compares) and vitkit's int8 and compiled
paths side by side in one process: linear layers (each layer by name), attention,
the patch convolution, and the rest (inductor's fused LayerNorm, GELU, (de)quantize and
residual code). It shows which kernels bound a ratio against timm: the int8 path runs the
same attention and much the same fused code as timm, so only its linear layers can put it
ahead, and the last table says how far they do.

    python benchmarks/time_by_kernel.py [--models vit_small_patch16_224 ...] [--batches 32 1]

Random weights and images (speed only). Graphs are built with inductor's Python wrapper so
that the profiler sees each kernel (vitkit's default C++ wrapper hides them; it changes the
time between kernels, not the kernels). Attention alone is timed at the model's shape too:
PyTorch's flash kernel (what every path here runs), inductor's flex attention, and oneDNN
Graph's fused attention (TorchScript, deprecated; measured as the one other CPU
implementation PyTorch ships).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections import defaultdict

from results_writer import add_options, table, write_section

MODELS = ["vit_small_patch16_224", "vit_base_patch16_224"]
BATCHES = [32, 1]
LAYERS = ["qkv", "proj", "fc1", "fc2"]  # the order inductor calls each block's linear layers
LINEAR = {"onednn::qlinear_pointwise", "mkldnn::_linear_pointwise", "aten::addmm", "aten::mm",
          "aten::linear"}
KINDS = ("linear", "attention", "convolution", "rest")


def kind(name: str) -> str:
    """The kind of kernel a profiler op name is."""
    if name in LINEAR:
        return "linear"
    if "scaled_dot_product" in name or "flex_attention" in name:
        return "attention"
    if "convolution" in name:
        return "convolution"
    return "rest"


def total(row: dict) -> float:
    """A profiled row's milliseconds per image over every kernel kind."""
    return sum(row.get(kind, 0.0) for kind in KINDS)


def runners(model: object, dtype: object) -> dict:
    """timm compiled under autocast, vitkit int8 and vitkit compiled, all of `model`."""
    import torch

    from vitkit.bench.workloads import peer_model
    from vitkit.infer import optimize
    from vitkit.infer.int8 import quantize_int8

    optimize.wrapper_options = lambda device: {}  # the profiler sees kernels, not one call
    timm = torch.compile(peer_model("timm", model.config).eval())

    def timm_compiled(images: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype, enabled=dtype != torch.float32):
            return timm(images)

    pixels = torch.randint(0, 256, (64, 3, *model.config.img_size), dtype=torch.uint8)
    return {"timm compiled": timm_compiled, "vitkit int8": quantize_int8(model, pixels),
            "vitkit compiled": optimize.optimize_for_inference(model, dtype=dtype,
                                                               compile=True)}


def profile(run: object, images: object, depth: int, calls: int) -> dict[str, float]:
    """Self CPU milliseconds per image of each kernel kind, and of each linear layer by name,
    over `calls` forward passes of `images`."""
    import torch

    with torch.no_grad():
        for _ in range(3):
            run(images)
        with torch.profiler.profile() as prof:
            for _ in range(calls):
                run(images)
    per_image = 1e-3 / (calls * len(images))
    found: dict[str, float] = defaultdict(float)
    linear = sorted((e for e in prof.events() if e.name in LINEAR),
                    key=lambda e: e.time_range.start)
    per_pass = 4 * depth + 1
    for index, event in enumerate(linear):
        position = index % per_pass
        name = LAYERS[position % 4] if position < 4 * depth else "head"
        found[name] += event.self_cpu_time_total * per_image
    for event in prof.key_averages():
        found[kind(event.key)] += event.self_cpu_time_total * per_image
    if len(linear) != calls * per_pass:
        raise RuntimeError(f"{len(linear)} linear-layer calls in {calls} passes of a "
                           f"{depth}-block ViT; the names by position would be wrong")
    return found


def time_kinds(model_name: str, batches: list[int], rounds: int) -> list[dict]:
    """`profile` of every runner at every batch, median over `rounds` alternating rounds."""
    import torch

    import vitkit
    from vitkit.infer.precision import inference_dtype

    torch.manual_seed(0)
    model = vitkit.create_model(model_name).eval()  # random weights: speed only
    config = model.config
    dtype = inference_dtype(model, "cpu", 32)
    built = runners(model, dtype)
    rows = []
    for batch in batches:
        images = torch.randn(batch, 3, *config.img_size)
        found: dict[str, list[dict]] = {name: [] for name in built}
        for _ in range(rounds):
            for name, run in built.items():
                found[name].append(profile(run, images, config.depth, max(2, 32 // batch)))
        for name, runs in found.items():
            keys = set().union(*runs)
            rows.append({"model": model_name, "batch": batch, "path": name,
                         "dtype": str(dtype).removeprefix("torch."),
                         **{key: statistics.median(r.get(key, 0.0) for r in runs)
                            for key in keys}})
    return rows


def attention_alone(heads: int, batch: int, repeats: int = 10) -> dict[str, float]:
    """Microseconds per head of one bf16 attention at ViT's 197 tokens, 64 per head, by
    kernel: PyTorch's flash (eager and compiled), flex attention (compiled) and oneDNN
    Graph's fused attention (a traced TorchScript graph)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = (torch.randn(batch, heads, 197, 64, dtype=torch.bfloat16) for _ in range(3))

    class Explicit(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return (q @ k.transpose(-1, -2) / 8.0).softmax(-1) @ v

    kernels = {"flash": F.scaled_dot_product_attention,
               "flash compiled": torch.compile(F.scaled_dot_product_attention),
               "flex compiled": torch.compile(flex_attention)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation
        torch.jit.enable_onednn_fusion(True)
        kernels["oneDNN Graph"] = torch.jit.freeze(torch.jit.trace(Explicit().eval(), (q, k, v)))
        seconds = defaultdict(list)
        for kernel in kernels.values():
            for _ in range(3):
                kernel(q, k, v)
        for _ in range(repeats):
            for name, kernel in kernels.items():
                start = time.perf_counter()
                kernel(q, k, v)
                seconds[name].append(time.perf_counter() - start)
        torch.jit.enable_onednn_fusion(False)
    return {name: statistics.median(s) * 1e6 / (batch * heads) for name, s in seconds.items()}


def kind_table(rows: list[dict]) -> str:
    """ms per image by kernel kind, and the ratio to timm compiled at that model and batch."""
    timm = {(r["model"], r["batch"]): r for r in rows if r["path"] == "timm compiled"}
    out = []
    for r in rows:
        base = timm[r["model"], r["batch"]]
        out.append([r["model"], r["batch"], r["path"], r["dtype"],
                    *(f"{r.get(k, 0.0):.2f}" for k in KINDS),
                    f"{total(r):.2f}", f"{total(base) / total(r):.2f}x"])
    return table(["model", "batch", "path", "dtype", "linear", "attention", "conv", "rest",
                  "total ms/image", "speed vs timm"], out, "lllrrrrrrr")


def layer_table(rows: list[dict]) -> str:
    """Each linear layer, vitkit int8 against timm compiled, and the ratio the int8 path would
    reach were its linear layers twice the speed of timm's (int8 units do twice the bf16
    multiply-adds per cycle), everything else as measured."""
    by = {(r["model"], r["batch"], r["path"]): r for r in rows}
    out = []
    for (model, batch, path), r in by.items():
        if path != "vitkit int8":
            continue
        base = by[model, batch, "timm compiled"]
        speed = [f"{base[n] / r[n]:.2f}x" for n in LAYERS + ["head"]]
        ideal = total(r) - r["linear"] + base["linear"] / 2
        out.append([model, batch, *speed, f"{base['linear'] / r['linear']:.2f}x",
                    f"{total(base) / ideal:.2f}x"])
    return table(["model", "batch", *LAYERS, "head", "all linear",
                  "speed vs timm with 2x linear"], out, "llrrrrrrr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=BATCHES)
    parser.add_argument("--rounds", type=int, default=3)
    add_options(parser)
    args = parser.parse_args()
    import vitkit  # noqa: F401 - first: its OpenMP settings must precede torch's import
    from vitkit.models import get_config

    rows = []
    attention = []
    for name in args.models:
        rows += time_kinds(name, args.batches, args.rounds)
        heads = get_config(name).num_heads
        for batch in args.batches:
            found = attention_alone(heads, batch)
            attention.append([name, batch, *(f"{found[k]:.1f}" for k in found),
                              f"{found['flash'] / min(found.values()):.2f}x"])
            print(attention[-1], flush=True)
    body = "\n\n".join([
        "Milliseconds per image by kernel kind (median of alternating rounds, self CPU "
        "time from torch.profiler):", kind_table(rows),
        "The int8 path's linear layers against timm's, speed as timm's time over vitkit's:",
        layer_table(rows),
        "One bf16 attention alone at the model's shape, microseconds per head:",
        table(["model", "batch", "flash", "flash compiled", "flex compiled", "oneDNN Graph",
               "flash / fastest"], attention, "llrrrrr")])
    print(body)
    if not args.no_record:
        from vitkit.bench.throughput import cpu_kind

        write_section(f"Time by kernel: timm compiled against vitkit int8 and compiled, "
                      f"{cpu_kind()} (benchmarks/time_by_kernel.py)", body, path=args.results)


if __name__ == "__main__":
    main()
