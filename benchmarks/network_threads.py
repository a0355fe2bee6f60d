#!/usr/bin/env python3
"""Where a network's threads go: its eval forward on 1 and 2 threads, with
the time of its convolutions split by the path Conv2d takes.

    python benchmarks/network_threads.py [--net inception_v3] [--batch 4]
                                         [--runs 2] [--blas-one] [--no-backoff]

Each setting (threads 1, then 2; --runs times, alternating) runs the
network's eval forward three times untimed, then once timed, and prints
the forward's seconds and the seconds its Conv2d calls took by path:
"direct" (the direct convolution), "1x1" (a GEMM of x itself) and "gemm"
(im2col + GEMM, or the whole-batch products). ``--blas-one`` holds NumPy's
BLAS at one thread for the whole run (threadpoolctl), so that only the
kernels' OpenMP team uses the second core; ``--no-backoff`` switches off
the kernels' back-off on a busy machine (``_kernels._set_thread_backoff``).

Timings only: nothing here asserts a speed. Report the machine with them.
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import networks  # noqa: E402
from _common import cpu_model  # noqa: E402

import bnkernels  # noqa: E402
from bnkernels import _kernels  # noqa: E402
from bnkernels.nn import layers  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=list(networks.NETS), default="inception_v3")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--blas-one", action="store_true")
    parser.add_argument("--no-backoff", action="store_true")
    args = parser.parse_args(argv)
    size, make, _ = networks.NETS[args.net]
    model = make()
    model.eval()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, size, size)).astype(
        np.float32)
    spent = {}
    forward = layers.Conv2d.forward

    def timed(conv, inputs):
        start = time.perf_counter()
        y = forward(conv, inputs)
        shape = conv.output_shape(inputs.shape)
        path = ("direct" if conv._direct(shape) else "1x1" if conv._pointwise else "gemm")
        spent[path] = spent.get(path, 0.0) + time.perf_counter() - start
        return y

    layers.Conv2d.forward = timed
    _kernels._set_thread_backoff(not args.no_backoff)
    limit = contextlib.nullcontext()
    if args.blas_one:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=1, user_api="blas")
    try:
        with limit:
            for _ in range(args.runs):
                for threads in (1, 2):
                    bnkernels.set_num_threads(threads)
                    for _ in range(3):
                        model.forward(x)
                    spent.clear()
                    start = time.perf_counter()
                    model.forward(x)
                    total = time.perf_counter() - start
                    paths = ", ".join(f"{k} {v:.3f}" for k, v in sorted(spent.items()))
                    print(f"{args.net} batch {args.batch}, {threads} thread(s): forward "
                          f"{total:.3f} s; Conv2d by path (s): {paths}")
    finally:
        layers.Conv2d.forward = forward
        _kernels._set_thread_backoff(True)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, blas-one {args.blas_one}, "
          f"back-off {not args.no_backoff}")


if __name__ == "__main__":
    main()
