"""Placement of caller-given buffers: each standard-numerics pass (inference,
training forward, backward; NCHW and NHWC) timed with its inputs (x, dy,
and the per-channel parameters) and its output (y, dx) at byte offsets from
a 64-byte boundary, in interleaved rounds, outputs given (out=).

    python benchmarks/alignment.py                  # the default shapes, float32 and float64, 1 and 2 threads
    python benchmarks/alignment.py --shapes 1x64x56x56 --dtype float32 --threads 1
    python benchmarks/alignment.py --layout NHWC --offsets 0,4,16,32,48 --rounds 9 --json a.json

Every buffer is a view of an over-allocated byte array (np.frombuffer at the
offset), so a placement is exactly the byte offset asked for, from a page
boundary: 0 is 64-byte aligned, 16 is what NumPy's allocator gives, 4
(float32) or 8 (float64) is one element past a line's start. Inputs take
every offset of --offsets and outputs independently every offset (all
pairs); the inputs' offset is the same for x, dy and the parameters. As
each buffer starts at its offset from a page, an output is (output offset -
input offset) bytes past its input modulo 4 KB: the pairs include outputs a
little past or before their inputs (4K aliasing), and no gap depends on
where the allocator put the buffers.

A round times each placement in a shuffled order: one untimed call, then
--calls calls, each timed alone, the round's figure being the fastest (on a
shared machine the other calls time the neighbours too).
Printed per kernel, shape, dtype and thread count: the median over rounds of
the best and the worst placement, their ratio (worst / best: the target is
at most 1.1) with the range of that ratio over the rounds, and which
placements they were (input offset / output offset, bytes). Every placement
writes the same bits as the aligned one (checked on every row). Timings are
the machine's of the moment: compare the columns of one run.
"""
import argparse
import platform
import random
import statistics
import sys
from pathlib import Path

import numpy as np

import bnkernels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_shapes, timed_calls, write_json  # noqa: E402

DEFAULT_SHAPES = [(1, 64, 56, 56), (8, 32, 14, 14), (1, 256, 7, 7), (8, 64, 56, 56)]
KERNELS = ("inference", "training forward", "backward")


def parse_list(kind):
    def parse(text):
        try:
            return [kind(item) for item in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got "
                                             f"{text!r}") from None
    return parse


def placed(shape, dtype, offset):
    """An uninitialised C-contiguous array of `shape` starting `offset` bytes
    past a page (4 KB) boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + 4096 + 128, np.uint8)
    start = (-raw.ctypes.data) % 4096 + offset
    return np.frombuffer(raw, dtype, count=nbytes // dtype.itemsize,
                         offset=start).reshape(shape)


def calls_for(kernel, shape, dtype, layout, in_offset, out_offset, values):
    """(output, call) for one kernel at one placement; `values` holds the
    inputs' contents (aligned), copied into placed arrays."""
    stored = shape if layout == "NCHW" else (shape[0], *shape[2:], shape[1])

    def put(name, offset, new_shape=None):
        a = placed(values[name].shape if new_shape is None else new_shape, dtype, offset)
        a[...] = values[name].reshape(a.shape)
        return a

    x, dy = put("x", in_offset, stored), put("dy", in_offset, stored)
    weight, bias = put("weight", in_offset), put("bias", in_offset)
    running_mean, running_var = put("mean", in_offset), put("var", in_offset)
    out = placed(stored, dtype, out_offset)
    out[...] = 0
    if kernel == "inference":
        return out, lambda: bnkernels.batch_norm_forward(
            x, weight, bias, running_mean, running_var, training=False, out=out,
            layout=layout)
    if kernel == "training forward":
        return out, lambda: bnkernels.batch_norm_forward(
            x, weight, bias, None, None, out=out, layout=layout)
    _, saved = bnkernels.batch_norm_forward(x, weight, bias, None, None, layout=layout)
    return out, lambda: bnkernels.batch_norm_backward(dy, saved, out=out)


def measure(kernel, shape, dtype, layout, offsets, rounds, calls, seed=0):
    """{(in_offset, out_offset): [each round's best, seconds]} and whether every
    placement wrote the aligned placement's bits."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    values = {"x": rng.standard_normal(shape).astype(dtype) * 2 + 1,
              "dy": rng.standard_normal(shape).astype(dtype),
              "weight": rng.uniform(0.5, 2, channels).astype(dtype),
              "bias": rng.standard_normal(channels).astype(dtype),
              "mean": rng.standard_normal(channels).astype(dtype),
              "var": rng.uniform(0.5, 2, channels).astype(dtype)}
    if layout == "NHWC":
        for name in ("x", "dy"):
            values[name] = np.ascontiguousarray(np.moveaxis(values[name], 1, -1))
    placements = [(i, o) for i in offsets for o in offsets]
    runs = {p: calls_for(kernel, shape, dtype, layout, *p, values) for p in placements}
    same_bits = True
    reference = None
    for p, (out, call) in runs.items():
        call()
        if reference is None:
            reference = out.copy()
        same_bits &= reference.tobytes() == out.tobytes()
    times = {p: [] for p in placements}
    order = list(placements)
    shuffle = random.Random(seed)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for p in order:
            times[p].append(min(timed_calls(runs[p][1], calls)))
    return times, same_bits


def summarize(times):
    """Best and worst placement by median over rounds, their ratio and the
    range of the per-round ratio (worst / best of that round)."""
    medians = {p: statistics.median(t) for p, t in times.items()}
    best = min(medians, key=medians.get)
    worst = max(medians, key=medians.get)
    per_round = [times[worst][k] / times[best][k] for k in range(len(times[best]))]
    return {"best": best, "worst": worst, "best_s": medians[best], "worst_s": medians[worst],
            "ratio": medians[worst] / medians[best],
            "ratio_range": (min(per_round), max(per_round)),
            "medians": {f"{i}/{o}": m for (i, o), m in medians.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=parse_shapes, default=DEFAULT_SHAPES,
                        help="NxCxHxW,... (default: %(default)s)")
    parser.add_argument("--dtype", choices=("float32", "float64"), action="append")
    parser.add_argument("--threads", type=parse_list(int), default=[1, 2])
    parser.add_argument("--layout", choices=("NCHW", "NHWC"), action="append")
    parser.add_argument("--kernel", choices=KERNELS, action="append")
    parser.add_argument("--offsets", type=parse_list(int), default=None,
                        help="byte offsets from a 64-byte boundary (default: 0, one "
                             "element, 16, 32, 48)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20,
                        help="timed calls per placement and round")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    dtypes = args.dtype or ["float32", "float64"]
    layouts = args.layout or ["NCHW", "NHWC"]
    kernels = args.kernel or list(KERNELS)
    rows = []
    print(f"# {platform.processor() or platform.machine()}, bnkernels "
          f"{bnkernels.__version__}, {args.rounds} rounds x {args.calls} calls; "
          f"offsets in bytes (inputs/output)")
    print(f"{'kernel':17} {'layout':6} {'dtype':7} {'shape':14} {'thr':>3} "
          f"{'best us':>8} {'worst us':>8} {'ratio':>6} {'range':>11}  best   worst  bits")
    for threads in args.threads:
        bnkernels.set_num_threads(threads)
        for layout in layouts:
            for dtype in dtypes:
                size = np.dtype(dtype).itemsize
                offsets = args.offsets or [0, size, 16, 32, 48]
                for shape in args.shapes:
                    for kernel in kernels:
                        times, same = measure(kernel, shape, dtype, layout, offsets,
                                              args.rounds, args.calls)
                        s = summarize(times)
                        shape_text = "x".join(map(str, shape))
                        lo, hi = s["ratio_range"]
                        print(f"{kernel:17} {layout:6} {dtype:7} {shape_text:14} "
                              f"{threads:3d} {s['best_s'] * 1e6:8.1f} "
                              f"{s['worst_s'] * 1e6:8.1f} {s['ratio']:6.2f} "
                              f"{lo:5.2f}-{hi:<5.2f}  {s['best'][0]:2d}/{s['best'][1]:<2d}  "
                              f"{s['worst'][0]:2d}/{s['worst'][1]:<2d}  "
                              f"{'same' if same else 'DIFFER'}", flush=True)
                        rows.append({"kernel": kernel, "layout": layout, "dtype": dtype,
                                     "shape": shape, "threads": threads,
                                     "same_bits": same, **s})
    if args.json:
        write_json(args.json, rows)
    return 0 if all(r["same_bits"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
