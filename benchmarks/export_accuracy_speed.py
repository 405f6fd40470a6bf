"""ONNX export, measured: top-1 on the full test set and images/s at batch 1 and 32 for vitkit
eager (fp32), ONNX Runtime fp32, int8 dynamic and int8 static, beside timm fp32 eager of the
same architecture (vitkit's weights), all in one process with the same threads.

    python benchmarks/export_accuracy_speed.py --checkpoint RUN/checkpoint --data data/cifar10 \
        [--calibration data/cifar10/train] [--calibration-images 512] [--threads 1] \
        [--speed-model vit_small_patch16_224] [--no-record]

Static int8 is calibrated on --calibration images (default DATA/train), never the test set.
Targets: int8 top-1 within 0.5 points of fp32; int8 ONNX Runtime >= 2x timm fp32 at batch 32.
The tables are recorded in benchmarks/RESULTS.md (benchmarks/results_writer.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from results_writer import add_options, table, write_section

import vitkit
from vitkit.bench.workloads import peer_model
from vitkit.data import load_splits, model_input
from vitkit.export import OnnxClassifier, export_onnx

TITLE = "ONNX export: int8 accuracy and speed (benchmarks/export_accuracy_speed.py)"


def top1(run: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
         labels: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor],
         batch: int = 250) -> float:
    correct = 0
    for start in range(0, len(images), batch):
        logits = run(prepare(images[start:start + batch]))
        correct += int((logits.argmax(dim=1) == labels[start:start + batch]).sum())
    return correct / len(images)


def throughput(runners: dict[str, Callable[[torch.Tensor], torch.Tensor]], inputs: torch.Tensor,
               rounds: int = 5, seconds: float = 1.0) -> dict[str, float]:
    """Median images/s of each runner on `inputs`, the runners interleaved round by round."""
    for run in runners.values():
        run(inputs)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                run(inputs)
                calls += 1
            rates[name].append(calls * len(inputs) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="a folder with train/ and test/")
    parser.add_argument("--calibration", default=None, help="default: DATA/train")
    parser.add_argument("--calibration-images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--speed-model", default=None,
                        help="also time this preset (random weights), e.g. vit_small_patch16_224")
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = vitkit.create_model(None, pretrained=args.checkpoint).float().eval()
    config, prep = model.config, model.meta.preprocessing
    test = load_splits(args.data, img_size=config.img_size, in_chans=config.in_chans,
                       crop_pct=prep.crop_pct, interpolation=prep.interpolation,
                       only="test", progress=False).test
    calibration = args.calibration or os.path.join(args.data, "train")

    def prepare(pixels: torch.Tensor) -> torch.Tensor:
        return model_input(pixels, config.img_size, prep, config.in_chans)

    runners, paths, export_seconds = build_runners(model, calibration, args.calibration_images,
                                                   args.threads)
    accuracy = {name: top1(run, test.images, test.targets, prepare)
                for name, run in runners.items()}
    x1 = prepare(test.images[:1])
    x32 = prepare(test.images[:32])
    speed1 = throughput(runners, x1, args.rounds)
    speed32 = throughput(runners, x32, args.rounds)
    facts, body = report(args, model, len(test), accuracy, speed1, speed32, paths,
                         export_seconds)
    if args.speed_model:
        body += "\n\n" + speed_only(args, calibration)
    print(body)
    if not args.no_record:
        write_section(TITLE, body, facts=facts, path=args.results)


def build_runners(model: vitkit.VisionTransformer, calibration: str, count: int, threads: int
                  ) -> tuple[dict[str, Callable[[torch.Tensor], torch.Tensor]],
                             dict[str, Path], float]:
    """vitkit and timm eager (the same weights), and the three ONNX exports of the model."""
    timm_model = peer_model("timm", model.config).eval()
    timm_model.load_state_dict(model.state_dict())
    work = Path(tempfile.mkdtemp(prefix="vitkit-bench-"))
    started = time.perf_counter()
    paths = {"ONNX fp32": export_onnx(model, work / "fp32.onnx"),
             "ONNX int8 dynamic": export_onnx(model, work / "dynamic.onnx", int8="dynamic"),
             "ONNX int8 static": export_onnx(
                 model, work / "static.onnx", int8="static", calibration=[calibration],
                 max_calibration_images=count)}
    export_seconds = time.perf_counter() - started

    def eager(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return net(x)
        return run

    runners = {"vitkit eager fp32": eager(model), "timm eager fp32": eager(timm_model)}
    for name, path in paths.items():
        runners[name] = OnnxClassifier(path, threads=threads).logits
    return runners, paths, export_seconds


def speed_only(args: argparse.Namespace, calibration: str) -> str:
    """images/s of a larger preset with random weights (speed does not depend on them)."""
    torch.manual_seed(0)
    model = vitkit.create_model(args.speed_model, num_classes=10).eval()
    torch.nn.init.normal_(model.head.weight, std=0.02)
    runners, _, _ = build_runners(model, calibration, 64, args.threads)
    height, width = model.config.img_size
    speeds = {batch: throughput(runners, torch.randn(batch, 3, height, width), args.rounds)
              for batch in (1, 32)}
    timm1, timm32 = speeds[1]["timm eager fp32"], speeds[32]["timm eager fp32"]
    rows = [[name, f"{speeds[1][name]:.1f}", f"{speeds[1][name] / timm1:.2f}x",
             f"{speeds[32][name]:.1f}", f"{speeds[32][name] / timm32:.2f}x"] for name in runners]
    return (f"Speed only, {args.speed_model} (random weights, {height}x{width}, static int8 "
            "calibrated on 64 images), same threads:\n\n"
            + table(["runtime", "img/s batch 1", "vs timm", "img/s batch 32", "vs timm"], rows,
                    "lrrrr"))


def report(args: argparse.Namespace, model: vitkit.VisionTransformer, count: int,
           accuracy: dict[str, float], speed1: dict[str, float], speed32: dict[str, float],
           paths: dict[str, Path], export_seconds: float) -> tuple[list[str], str]:
    """The section's facts, and its table of accuracy and speed with the verdicts below it."""
    timm1, timm32 = speed1["timm eager fp32"], speed32["timm eager fp32"]
    fp32 = accuracy["ONNX fp32"]
    params = sum(p.numel() for p in model.parameters())
    facts = [f"threads: {args.threads} (torch and ONNX Runtime alike)",
             f"model: {model.meta.name} ({params / 1e6:.2f}M parameters, "
             f"{model.config.img_size[0]}x{model.config.img_size[1]}), test images: {count}; "
             f"static int8 calibrated on {args.calibration_images} training images; export and "
             f"quantization took {export_seconds:.0f} s"]
    rows = []
    for name in accuracy:
        size = f"{paths[name].stat().st_size / 1e6:.2f}" if name in paths else ""
        rows.append([name, f"{accuracy[name]:.4f}", f"{100 * (accuracy[name] - fp32):+.2f}",
                     f"{speed1[name]:.0f}", f"{speed1[name] / timm1:.2f}x",
                     f"{speed32[name]:.0f}", f"{speed32[name] / timm32:.2f}x", size])
    verdicts = []
    for name in ("ONNX int8 dynamic", "ONNX int8 static"):
        delta = 100 * abs(accuracy[name] - fp32)
        ratio = speed32[name] / timm32
        verdicts.append(f"{name}: top-1 within 0.5 points of fp32: "
                        f"{'met' if delta <= 0.5 else 'NOT met'} ({delta:.2f}); >= 2x timm fp32 "
                        f"at batch 32: {'met' if ratio >= 2 else 'NOT met'} ({ratio:.2f}x).")
    header = ["runtime", "top-1", "vs ONNX fp32 (points)", "img/s batch 1", "vs timm",
              "img/s batch 32", "vs timm", "file MB"]
    return facts, table(header, rows, "lrrrrrrr") + "\n\n" + "\n".join(verdicts)

if __name__ == "__main__":
    main()
