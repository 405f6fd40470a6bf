"""The ceiling int8 sets on this CPU: one matrix product at ViT-S/16's shapes (batch 32, 197
tokens) in fp32 (PyTorch, ONNX Runtime) against ONNX Runtime's u8 x s8 integer product, the
kernel its int8 path runs. On a CPU whose int8 units are no faster than its fp32 ones (AVX2
without VNNI) no int8 path can be much faster than fp32 overall.

    python benchmarks/int8_gemm.py [--rows 6304] [--shapes 384x1152 4096x4096]

A large square product (`--shapes 4096x4096`) shows each kind's ceiling, where neither is held
back by memory or by the shape.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

SHAPES = [(384, 1152), (384, 1536), (1536, 384)]  # qkv, fc1, fc2: (K, N)


def median_seconds(call, repeats: int = 10) -> float:
    """Median of `repeats` timed calls after two untimed."""
    call()
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ort_matmul(op: str, rows: int, k: int, n: int, a_type: int, b: np.ndarray, y_type: int,
               threads: int) -> ort.InferenceSession:
    """A one-node ONNX graph `op`(A, B) with B constant, loaded on the CPU provider."""
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])], "product",
        [helper.make_tensor_value_info("A", a_type, [rows, k])],
        [helper.make_tensor_value_info("Y", y_type, [rows, n])],
        [helper.make_tensor("B", helper.np_dtype_to_tensor_dtype(b.dtype), list(b.shape),
                            b.tobytes(), raw=True)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32 * 197)
    parser.add_argument("--shapes", nargs="+", default=[f"{k}x{n}" for k, n in SHAPES],
                        help="the weights' shapes, K x N (default: ViT-S/16's qkv, fc1, fc2)")
    args = parser.parse_args()
    shapes = [tuple(int(d) for d in shape.split("x")) for shape in args.shapes]
    threads, rng = torch.get_num_threads(), np.random.default_rng(0)
    print(f"{threads} threads; GFLOP/s (int8: GOP/s)")
    print("| K x N | torch fp32 | ORT fp32 | ORT int8 (u8 x s8) | int8 / torch fp32 |")
    print("|---|---:|---:|---:|---:|")
    for k, n in shapes:
        a = torch.randn(args.rows, k)
        w = torch.randn(k, n)
        fp32 = median_seconds(lambda a=a, w=w: a @ w)
        session = ort_matmul("MatMul", args.rows, k, n, TensorProto.FLOAT,
                             w.numpy(), TensorProto.FLOAT, threads)
        floats = a.numpy()
        ort_fp32 = median_seconds(lambda s=session, x=floats: s.run(None, {"A": x}))
        weights = rng.integers(-128, 128, (k, n), dtype=np.int8)
        session = ort_matmul("MatMulInteger", args.rows, k, n, TensorProto.UINT8, weights,
                             TensorProto.INT32, threads)
        inputs = rng.integers(0, 256, (args.rows, k), dtype=np.uint8)
        int8 = median_seconds(lambda s=session, x=inputs: s.run(None, {"A": x}))
        ops = 2 * args.rows * k * n / 1e9
        print(f"| {k} x {n} | {ops / fp32:.0f} | {ops / ort_fp32:.0f} | {ops / int8:.0f} | "
              f"{fp32 / int8:.2f}x |")


if __name__ == "__main__":
    main()
