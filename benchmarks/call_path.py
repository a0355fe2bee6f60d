#!/usr/bin/env python3
"""The Python API's call path of the standard batch norm (NCHW): small shapes,
and the layers' default (fresh) outputs on a large one.

    python benchmarks/call_path.py small [--rounds 9] [--threads 1 2] [--dtype float32 float64]
    python benchmarks/call_path.py large [--rounds 5] [--shape 128 64 112 112]

``small``: inference and training forward at batch-1 and small shapes
(SMALL_SHAPES: bench --small's and (1,32,112,112)), bnkernels'
``batch_norm_forward(..., out=y)`` against onnxruntime's BatchNormalization
with io-binding (``run_with_iobinding`` to preallocated outputs) and PyTorch's
``native_batch_norm.out``: the calls ``python -m bnkernels bench`` times for
its "reused" rows (bnkernels.tools.bench's torch_calls and ort_calls). Each
round times every side with bench's time_calls_interleaved (short turns
of 3 calls after an untimed one); a round's ratio is the peer's median over
bnkernels' median. The report gives the median and range over rounds.

``large``: float32 inference at (128,64,112,112) (411 MB) by
``BatchNorm2d(C).eval()`` as most callers use it (``y = bn(x)`` in a loop,
the default path), the same layer with ``reuse_buffers=True``, and
onnxruntime's plain ``session.run`` (it allocates y), one thread each, in
interleaved rounds of a few calls each.

onnxruntime and torch are optional: a missing one leaves its column out.
Timings only: nothing here asserts a speed; report the machine with them.
"""
import argparse
import platform
import statistics
import sys
import time

import numpy as np

import bnkernels
from bnkernels.tools import bench

SMALL_SHAPES = tuple(dict.fromkeys(bench.SMALL_SHAPES + ((1, 32, 112, 112),)))
OPS = ("inference", "training forward")


def cpu_model():
    return bench.cpu_model() or platform.processor() or "unknown CPU"


def _optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def set_threads(n, torch):
    bnkernels.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def _summary(ratios):
    return f"{statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def small(args):
    torch = _optional("torch")
    ort = _optional("onnxruntime")
    onnx = _optional("onnx") if ort is not None else None
    if onnx is None:
        ort = None
    peers = [p for p, m in (("onnxruntime", ort), ("PyTorch", torch)) if m is not None]
    print(f"call path, small shapes: {cpu_model()}; {args.rounds} rounds of "
          f"{args.repeat} calls per side; ratio = peer time / bnkernels time "
          f"(> 1: bnkernels faster), median (range) over rounds")
    header = ("| shape | dtype | threads | op | bnkernels us | "
              + " | ".join(f"{p} us | vs {p}" for p in peers) + " |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for n in args.threads:
        set_threads(n, torch)
        for dtype in args.dtype:
            for shape in SMALL_SHAPES:
                t = bench.make_tensors(shape, dtype)
                ours = bench.numpy_api_calls(bnkernels, t, "standard", "reused")
                theirs = {}
                if ort is not None:
                    theirs["onnxruntime"] = bench.ort_calls(ort, onnx, t, "reused", n)
                if torch is not None:
                    theirs["PyTorch"] = bench.torch_calls(torch, t, "reused")
                for op in OPS:
                    fns = {"bnkernels": ours[op]}
                    fns.update({p: calls[op] for p, calls in theirs.items()})
                    medians = {name: [] for name in fns}
                    for _ in range(args.rounds):
                        timings = bench.time_calls_interleaved(fns, args.repeat)
                        for name, timing in timings.items():
                            medians[name].append(timing.median_ms * 1e3)
                    cells = [f"{statistics.median(medians['bnkernels']):.2f}"]
                    for p in peers:
                        ratios = [a / b for a, b in zip(medians[p], medians["bnkernels"])]
                        cells += [f"{statistics.median(medians[p]):.2f}", _summary(ratios)]
                    print(f"| {'x'.join(map(str, shape))} | {dtype} | {n} | {op} | "
                          + " | ".join(cells) + " |", flush=True)


def large(args):
    ort = _optional("onnxruntime")
    onnx = _optional("onnx") if ort is not None else None
    shape = tuple(args.shape)
    bnkernels.set_num_threads(1)
    t = bench.make_tensors(shape, np.float32)
    c = shape[1]
    default = bnkernels.BatchNorm2d(c).eval()
    reused = bnkernels.BatchNorm2d(c, reuse_buffers=True).eval()
    sides = {"BatchNorm2d default": default, "BatchNorm2d reuse_buffers": reused}
    session = None
    if ort is not None and onnx is not None:
        session = bench.ort_session(ort, onnx, shape, np.float32, False, 1)
        feeds = {"x": t.x, "scale": default.weight, "B": default.bias,
                 "mean": default.running_mean, "var": default.running_var}
    times = {name: [] for name in list(sides) + (["onnxruntime run()"] if session else [])}
    print(f"call path, large shape {'x'.join(map(str, shape))} float32 inference, 1 thread: "
          f"{cpu_model()}; {args.rounds} rounds of {args.calls} calls per side "
          f"(y = f(x) in a loop, the previous y dropped when the new one is bound)")
    for _ in range(args.rounds):
        for name in times:
            y = None
            for _ in range(args.calls):
                start = time.perf_counter()
                if name == "onnxruntime run()":
                    y = session.run(None, feeds)[0]
                else:
                    y = sides[name](t.x)
                times[name].append(time.perf_counter() - start)
            del y
    # the first two calls of each round may allocate (the layer's previous
    # output is still bound to y then): every call counts, as a loop sees it
    base = times["BatchNorm2d reuse_buffers"]
    print("| side | median ms | min ms | max ms | time / reuse_buffers' |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts) * 1e3:.1f} | {min(ts) * 1e3:.1f} | "
              f"{max(ts) * 1e3:.1f} | {statistics.median(ts) / statistics.median(base):.2f} |")
    if session:
        ort_median = statistics.median(times["onnxruntime run()"])
        print(f"onnxruntime run() / BatchNorm2d default: "
              f"{ort_median / statistics.median(times['BatchNorm2d default']):.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("small")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    p = sub.add_parser("large")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=6)
    p.add_argument("--shape", type=int, nargs=4, default=[128, 64, 112, 112])
    args = parser.parse_args(argv)
    (small if args.what == "small" else large)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
