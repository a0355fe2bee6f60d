"""Streaming stores on and off, side by side: each standard-numerics pass
that writes a tensor (inference, training forward, backward), timed with
bnkernels.set_streaming_threshold at 16 MiB (the default, or --threshold) and
at None (never stream), in turns as `bench` times its sides (one untimed call,
then three timed), outputs reused (out=).

    python benchmarks/streaming.py                       # float32 and float64, 1 and 2 threads
    python benchmarks/streaming.py --shapes 8x64x32x32 --threads 1 --json streaming.json
    python benchmarks/streaming.py --layout NHWC --dtype float32 --offsets 0,8,24,64,256,500

Prints one row per shape, dtype, threads, output offset and op: best ms of
each side, and their ratio (through the cache / streamed: above 1, streaming
is faster). --offsets places the outputs that many elements into larger
buffers, to try placements of the output relative to its input (every offset
is tried on the same arrays). The same bits either way (checked on every
row). Timings are the machine's of the moment: compare the columns of one
run.
"""
import argparse
import platform
import sys
from pathlib import Path

import numpy as np

import bnkernels
from bnkernels.tools.bench import time_calls_interleaved

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_shapes, write_json  # noqa: E402

DEFAULT = bnkernels.get_streaming_threshold()
DEFAULT_SHAPES = [(32, 64, 56, 56), (64, 256, 28, 28), (128, 1024, 7, 7)]


def passes(shape, dtype, layout="NCHW", offsets=(0,), seed=0):
    """{(offset, op): (output, call)} for one shape (N, C, H, W), each call
    writing into a preallocated output `offset` elements into its buffer; in
    NHWC the arrays are (N, H, W, C)."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    stored = shape if layout == "NCHW" else (shape[0], shape[2], shape[3], shape[1])
    x = rng.standard_normal(stored).astype(dtype)
    dy = rng.standard_normal(stored).astype(dtype)
    size = x.size
    y_buffer = np.empty(size + max(offsets), dtype)
    dx_buffer = np.empty(size + max(offsets), dtype)
    weight = rng.uniform(0.5, 2, channels).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    running_mean, running_var = np.zeros(channels, dtype), np.ones(channels, dtype)
    _, saved = bnkernels.batch_norm_forward(x, weight, bias, None, None, layout=layout)
    calls = {}
    for offset in offsets:
        y = y_buffer[offset:offset + size].reshape(stored)
        dx = dx_buffer[offset:offset + size].reshape(stored)
        calls[offset, "inference"] = (y, lambda y=y: bnkernels.batch_norm_forward(
            x, weight, bias, running_mean, running_var, training=False, out=y,
            layout=layout))
        calls[offset, "training forward"] = (y, lambda y=y: bnkernels.batch_norm_forward(
            x, weight, bias, None, None, out=y, layout=layout))
        calls[offset, "backward"] = (dx, lambda dx=dx: bnkernels.batch_norm_backward(
            dy, saved, out=dx))
    return calls


def best_of_both(call, output, threshold, repeat):
    """Best seconds of `call` through the cache and streamed, in turns as
    `bench` times its sides (one untimed call, then three timed), and
    whether both wrote the same bytes."""
    settings = {"cached": None, "streamed": threshold}

    def with_setting(setting):
        def run():
            bnkernels.set_streaming_threshold(setting)
            call()
        return run
    written = {}
    try:
        timings = time_calls_interleaved(
            {side: with_setting(setting) for side, setting in settings.items()}, repeat)
        for side, setting in settings.items():
            output[...] = 0
            with_setting(setting)()
            written[side] = output.tobytes()
    finally:
        bnkernels.set_streaming_threshold(DEFAULT)
    best = {side: min(timing.times) for side, timing in timings.items()}
    return best, written["cached"] == written["streamed"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=parse_shapes, default=DEFAULT_SHAPES)
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threshold", type=int, metavar="BYTES",
                        help="the streamed side's threshold (default 16 MiB)")
    parser.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    parser.add_argument("--offsets", default="0", metavar="N,...",
                        help="elements before each output in its buffer (default 0)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    threshold = 16 << 20 if args.threshold is None else args.threshold
    if not bnkernels.streaming_available():
        print("this CPU has no AVX-512F, so the kernels never stream: nothing to compare",
              file=sys.stderr)
        return 1
    rows = []
    offsets = [int(n) for n in args.offsets.split(",")]
    print(f"{'shape':>14} {'dtype':>7} {'threads':>7} {'offset':>6} {'op':>16} "
          f"{'cached ms':>10} {'streamed ms':>11} {'ratio':>6}")
    for threads in [int(n) for n in args.threads.split(",")]:
        bnkernels.set_num_threads(threads)
        for dtype in args.dtype.split(","):
            for shape in args.shapes:
                calls = passes(shape, np.dtype(dtype), args.layout, offsets)
                for (offset, op), (output, call) in calls.items():
                    best, same = best_of_both(call, output, threshold, args.repeat)
                    if not same:
                        raise SystemExit(f"{op} {shape} {dtype}: streamed bytes differ")
                    row = {"shape": "x".join(map(str, shape)), "dtype": dtype,
                           "threads": threads, "layout": args.layout,
                           "offset": offset, "op": op,
                           "cached_ms": best["cached"] * 1e3,
                           "streamed_ms": best["streamed"] * 1e3,
                           "ratio": best["cached"] / best["streamed"],
                           "bytes_per_output": int(np.prod(shape)) * np.dtype(dtype).itemsize}
                    rows.append(row)
                    print(f"{row['shape']:>14} {dtype:>7} {threads:>7} {offset:>6} {op:>16} "
                          f"{row['cached_ms']:>10.3f} {row['streamed_ms']:>11.3f} "
                          f"{row['ratio']:>5.2f}x", flush=True)
    bnkernels.set_num_threads(None)
    if args.json:
        write_json(args.json, {"machine": platform.processor() or platform.machine(),
                               "numpy": np.__version__, "bnkernels": bnkernels.__version__,
                               "threshold_bytes": threshold, "repeat": args.repeat,
                               "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
