"""New outputs with and without the output cache (bnkernels.set_cache_limit).

    python benchmarks/output_cache.py [--shapes 64x256x28x28,128x64x112x112]
        [--dtype float32,float64] [--rounds 5] [--calls 10] [--threads 1]

A loop of ``y, _ = batch_norm_forward(x, ..., training=False)`` (inference,
standard numerics, ``out=None``), every call counted, the previous y dropped
before the next call, as a user's loop does. Rounds alternate the cache on
(the default limit) and off (0), so both run under the same background load;
``out=`` into one preallocated array is the floor. Prints the median over
rounds of each round's median call, in ms, and the ratios. Timings only.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import bnkernels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_shapes  # noqa: E402


def timed_loop(x, params, calls, out=None):
    times = []
    y = None
    for _ in range(calls):
        start = time.perf_counter()
        y, _ = bnkernels.batch_norm_forward(x, *params, training=False, out=out)
        times.append(time.perf_counter() - start)
    del y
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=parse_shapes,
                        default=parse_shapes("64x256x28x28,128x64x112x112"))
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    bnkernels.set_num_threads(args.threads)
    limit = bnkernels.cache_info()["limit"]
    print("| shape | dtype | cache on ms | cache off ms | out= ms | off / on | on / out= |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for shape in args.shapes:
        for dtype in args.dtype.split(","):
            x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
            c = shape[1]
            params = (np.ones(c, dtype), np.zeros(c, dtype), np.zeros(c, dtype),
                      np.ones(c, dtype))
            out = np.empty_like(x)
            sides = {"on": [], "off": [], "out": []}
            for r in range(args.rounds):
                order = ["on", "off", "out"] if r % 2 == 0 else ["out", "off", "on"]
                for side in order:
                    bnkernels.set_cache_limit(0 if side == "off" else limit)
                    bnkernels.empty_cache()
                    sides[side].append(timed_loop(x, params, args.calls,
                                                  out if side == "out" else None))
            bnkernels.set_cache_limit(limit)
            on, off, floor = (statistics.median(sides[k]) for k in ("on", "off", "out"))
            print(f"| {'x'.join(map(str, shape))} | {dtype} | {on * 1e3:.2f} | {off * 1e3:.2f} "
                  f"| {floor * 1e3:.2f} | {off / on:.2f} | {on / floor:.2f} |")
    print(f"\n{args.threads} thread(s), {args.rounds} rounds of {args.calls} calls per side, "
          "median of medians; the first call of each 'on' round fills the cache")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
