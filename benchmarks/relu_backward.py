"""The ReLU layer's backward (bnkernels.nn.layers.ReLU) in two builds, side by side:

    python benchmarks/relu_backward.py BEFORE_DIR AFTER_DIR [--rounds 7]
        [--shapes 4x128x7x7,4x64x56x56,4x64x112x112] [--threads 1]

BEFORE_DIR and AFTER_DIR are source trees built in place (``python setup.py
build_ext --inplace``); each runs in its own worker process with its folder
first on sys.path (the worker checks ``bnkernels.__file__`` lies in it). A
round times every shape once in each build, float32, the order of the builds
alternating from case to case and round to round; a time is the median of a
block of backward calls (as many as fit in 20 ms, at least 3, after one
untimed call). The report gives, per shape, each build's median time over the
rounds and the after/before ratio's median and range (below 1: after is
faster). Timings only: nothing here asserts a speed.
"""
import argparse
import json
import statistics
import subprocess
import sys

WORKER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import bnkernels
from bnkernels.nn.layers import ReLU
assert os.path.realpath(bnkernels.__file__).startswith(os.path.realpath(sys.argv[1]))
bnkernels.set_num_threads(int(sys.argv[2]))
for line in sys.stdin:
    shape = tuple(json.loads(line))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    relu = ReLU()
    relu.forward(x)
    relu.backward(dy)
    times, spent = [], 0.0
    while len(times) < 3 or spent < 0.02:
        t = time.perf_counter()
        relu.backward(dy)
        t = time.perf_counter() - t
        times.append(t)
        spent += t
    print(json.dumps(sorted(times)[len(times) // 2]), flush=True)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shapes", default="4x128x7x7,4x64x56x56,4x64x112x112")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    shapes = [[int(v) for v in s.split("x")] for s in args.shapes.split(",")]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, path, str(args.threads)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for path in (args.before, args.after)]

    def measure(side, shape):
        workers[side].stdin.write(json.dumps(shape) + "\n")
        workers[side].stdin.flush()
        return json.loads(workers[side].stdout.readline())

    times = {(i, side): [] for i in range(len(shapes)) for side in (0, 1)}
    for r in range(args.rounds):
        for i, shape in enumerate(shapes):
            order = (0, 1) if (r + i) % 2 == 0 else (1, 0)
            for side in order:
                times[i, side].append(measure(side, shape))
    for w in workers:
        w.stdin.close()
        w.wait()
    print(f"ReLU backward, float32, {args.threads} thread(s), {args.rounds} rounds")
    print(f"{'shape':>16} {'before us':>10} {'after us':>10} {'after/before':>13} {'range':>14}")
    for i, shape in enumerate(shapes):
        ratios = [a / b for a, b in zip(times[i, 1], times[i, 0])]
        print(f"{'x'.join(map(str, shape)):>16} "
              f"{statistics.median(times[i, 0]) * 1e6:10.1f} "
              f"{statistics.median(times[i, 1]) * 1e6:10.1f} "
              f"{statistics.median(ratios):13.3f} "
              f"{min(ratios):6.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
