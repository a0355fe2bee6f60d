"""Inception blocks, forward + backward: bnkernels vs the same blocks on the
pure-NumPy reference vs PyTorch, and where bnkernels' time goes.

    python benchmarks/inception_blocks.py [--batch 8] [--threads 1] [--repeat 5]
                                          [--dtype float32] [--json PATH]

Each block is built once (bnkernels.nn.inception, float32, training mode: batch
statistics) and run three ways on the same input and the same parameters:
- bnkernels: im2col/col2im and pools in C, BN in C, matrix products on NumPy's BLAS;
- NumPy: ``bnkernels.reference.numpy_twin`` of the block (bnkernels.reference:
  im2col, pools and batch norm in NumPy; the same BLAS products);
- PyTorch: ``bnkernels.torch.to_torch`` of the block (torch's own CPU conv,
  batch norm and pools, autograd), when PyTorch is installed.
One step is forward, then backward of a fixed dy (PyTorch: the graph's backward
with dy, input gradient included). Thread counts are equal on all sides:
bnkernels, the BLAS NumPy uses (threadpoolctl) and PyTorch. Median of --repeat
steps after one warm-up step.

The breakdown times bnkernels' layers inside the same kind of step, by kind:
matrix products of the convolutions (BLAS), im2col/col2im (C), batch norm with
its fused ReLU (C), pooling (C), and the rest (ReLU without BN, concatenation,
bias terms, Python). Outputs are fresh arrays on every side.
"""
import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import bnkernels
from bnkernels import reference
from bnkernels.nn import inception, layers
from bnkernels.tools import bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_rows  # noqa: E402

BLOCKS = {
    # name: (builder, input shape per image (C, H, W))
    "GoogLeNet inception (3a)": (
        lambda **kw: inception.InceptionV1(192, 64, 96, 128, 16, 32, 32, **kw), (192, 28, 28)),
    "BN-Inception (3a)": (
        lambda **kw: inception.InceptionBN(192, 64, 64, 64, 64, 96, 32, pool="avg", **kw),
        (192, 28, 28)),
    "BN-Inception stride 2 (3c)": (
        lambda **kw: inception.InceptionBN(320, 0, 128, 160, 64, 96, 0, stride=2, **kw),
        (320, 28, 28)),
    "Inception-v3 A (35x35)": (
        lambda **kw: inception.InceptionV3A(192, 32, **kw), (192, 35, 35)),
    "Inception-v3 B (17x17, n=7)": (
        lambda **kw: inception.InceptionV3B(768, 128, **kw), (768, 17, 17)),
    "Inception-v3 C (8x8)": (
        lambda **kw: inception.InceptionV3C(1280, **kw), (1280, 8, 8)),
}

KINDS = ["conv GEMM (BLAS)", "im2col/col2im (C)", "batch norm + ReLU (C)", "pooling (C)",
         "other"]


class _TimedKernels:
    """Stands in for a layer's ``kernels`` module and adds the time of its
    im2col/col2im calls to a tally."""

    def __init__(self, kernels, tally):
        self._kernels, self._tally = kernels, tally

    def __getattr__(self, name):
        function = getattr(self._kernels, name)
        if name not in ("im2col", "col2im"):
            return function

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._tally["im2col/col2im (C)"] += time.perf_counter() - start
        return timed


def _kind(layer):
    if isinstance(layer, layers.Conv2d):
        return "conv GEMM (BLAS)"   # minus its im2col/col2im, counted apart
    if isinstance(layer, layers.BatchNorm2d):
        return "batch norm + ReLU (C)"
    if isinstance(layer, (layers.MaxPool2d, layers.AvgPool2d, layers.GlobalAvgPool2d)):
        return "pooling (C)"
    return None


def instrument(module, tally):
    """Time every leaf layer of module by kind (instance attributes wrap
    forward and backward; the class is untouched)."""
    stack = [module]
    while stack:
        layer = stack.pop()
        children = layer.children()
        stack.extend(child for _, child in children)
        kind = _kind(layer)
        if kind is None:
            continue
        if isinstance(layer, layers.Conv2d):
            layer.kernels = _TimedKernels(layer.kernels, tally)
        for method in ("forward", "backward"):
            setattr(layer, method, _timed(getattr(layer, method), kind, tally))


def _timed(function, kind, tally):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            tally[kind] += time.perf_counter() - start
    return timed


def breakdown(block, x, dy, repeat):
    """{kind: ms per step} of bnkernels' layers, and the step's total ms."""
    tally = defaultdict(float)
    instrument(block, tally)
    block.forward(x)
    block.backward(dy)
    tally.clear()
    start = time.perf_counter()
    for _ in range(repeat):
        block.forward(x)
        block.backward(dy)
    total = (time.perf_counter() - start) / repeat * 1e3
    parts = {kind: tally[kind] / repeat * 1e3 for kind in KINDS[:-1]}
    parts["conv GEMM (BLAS)"] -= parts["im2col/col2im (C)"]   # nested inside conv
    parts["other"] = total - sum(parts.values())
    return parts, total


def step_numpy(block, x, dy):
    def step():
        block.forward(x)
        return block.backward(dy)
    return step


def step_torch(torch, block, x, dy):
    x_t = torch.from_numpy(x).requires_grad_(True)
    dy_t = torch.from_numpy(dy)

    def step():
        x_t.grad = None
        block(x_t).backward(dy_t)
        return x_t.grad
    return step


def run(args):
    try:
        import torch
    except ImportError:
        torch = None
    from threadpoolctl import threadpool_limits

    dtype = np.dtype(args.dtype)
    bnkernels.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
        from bnkernels.torch import to_torch
    rows = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for name, (build, shape) in BLOCKS.items():
            print(f"{name} ...", file=sys.stderr, flush=True)
            block = build(batch_norm=True, dtype=dtype, rng=0)
            rng = np.random.default_rng(0)
            x = rng.standard_normal((args.batch, *shape)).astype(dtype)
            dy = rng.standard_normal(block.output_shape(x.shape)).astype(dtype)
            times = {"bnkernels": bench.time_call(step_numpy(block, x, dy), args.repeat),
                     "numpy": bench.time_call(
                         step_numpy(reference.numpy_twin(block), x, dy), args.repeat)}
            if torch is not None:
                times["torch"] = bench.time_call(
                    step_torch(torch, to_torch(block), x, dy), args.repeat)
            parts, total = breakdown(block, x, dy, args.repeat)
            rows.append({"block": name, "input": [args.batch, *shape],
                         "macs_forward": block.macs(x.shape),
                         "ms": {side: timing.median_ms for side, timing in times.items()},
                         "breakdown_ms": parts, "breakdown_total_ms": total})
    return rows


def format_rows(rows):
    lines = ["| block | input | bnkernels ms | NumPy ms | PyTorch ms | vs NumPy | vs PyTorch |"
             " " + " | ".join(KINDS) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(KINDS)]
    for row in rows:
        ms = row["ms"]
        ours = ms["bnkernels"]
        torch_ms = ms.get("torch")
        split = row["breakdown_ms"]
        total = row["breakdown_total_ms"]
        lines.append(
            f"| {row['block']} | {'x'.join(map(str, row['input']))} | {ours:.1f} | "
            f"{ms['numpy']:.1f} | {'-' if torch_ms is None else f'{torch_ms:.1f}'} | "
            f"{ms['numpy'] / ours:.2f}x | "
            f"{'-' if torch_ms is None else f'{torch_ms / ours:.2f}x'} | "
            + " | ".join(f"{100 * split[kind] / total:.0f}%" for kind in KINDS) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=bench.positive_int, default=8)
    parser.add_argument("--threads", type=bench.positive_int, default=1)
    parser.add_argument("--repeat", type=bench.positive_int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    rows = run(args)
    print(format_rows(rows))
    machine = bench.describe_machine(sys.modules.get("torch"))
    print(f"\n{machine['cpu_model']}, {args.threads} thread(s) on every side, {args.dtype}, "
          f"batch {args.batch}, median of {args.repeat} steps; numpy {machine['numpy']}, "
          f"torch {machine['torch']}. Percentages: bnkernels' step by kind of layer.")
    write_rows(args, rows, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
