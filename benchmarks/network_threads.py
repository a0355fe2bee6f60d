#!/usr/bin/env python3
"""Where a network's threads go: its eval forward (or training step) on 1
and 2 threads, with the time of its convolutions split by the path Conv2d
takes.

    python benchmarks/network_threads.py [--net inception_v3] [--batch 4]
                                         [--runs 2] [--blas-one] [--no-backoff]
                                         [--train] [--pieces {c,numpy,both}]

Each setting (threads 1, then 2; --runs times, alternating) runs the
network's eval forward three times untimed, then once timed, and prints
the forward's seconds and the seconds its Conv2d calls took by path:
"direct" (the direct convolution), "1x1" (a GEMM of x itself) and "gemm"
(im2col + GEMM, or the whole-batch products). ``--train`` times a training
step instead (forward, softmax cross-entropy, backward), with each path's
forward and backward apart ("1x1 backward": dL/dW and dL/dx of the 1x1
layers). ``--blas-one`` holds NumPy's
BLAS at one thread for the whole run (threadpoolctl), so that only the
kernels' OpenMP team uses the second core; ``--no-backoff`` switches off
the kernels' back-off on a busy machine (``_kernels._set_thread_backoff``).
``--pieces numpy`` runs the split products' pieces as NumPy matmuls on
Python threads instead of the BLAS called from C on the kernels' team
(``bnkernels.nn._blas.use_c_products``); ``both`` alternates the two.

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
from bnkernels.nn import _blas, layers  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=list(networks.NETS), default="inception_v3")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--blas-one", action="store_true")
    parser.add_argument("--no-backoff", action="store_true")
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--pieces", choices=["c", "numpy", "both"], default="c")
    args = parser.parse_args(argv)
    size, make, _ = networks.NETS[args.net]
    model = make()
    model.train(args.train)
    x = np.random.default_rng(0).standard_normal((args.batch, 3, size, size)).astype(
        np.float32)
    labels = np.random.default_rng(1).integers(0, 1000, args.batch)
    loss = layers.SoftmaxCrossEntropy()
    spent = {}
    forward, backward = layers.Conv2d.forward, layers.Conv2d.backward

    def tally(conv, input_shape, what, start):
        shape = conv.output_shape(input_shape)
        path = ("direct" if conv._direct(shape) else "1x1" if conv._pointwise else "gemm")
        key = f"{path} {what}" if args.train else path
        spent[key] = spent.get(key, 0.0) + time.perf_counter() - start

    def timed_forward(conv, inputs):
        start = time.perf_counter()
        y = forward(conv, inputs)
        tally(conv, inputs.shape, "forward", start)
        return y

    def timed_backward(conv, dy):
        input_shape = conv._saved[0].shape
        start = time.perf_counter()
        dx = backward(conv, dy)
        tally(conv, input_shape, "backward", start)
        return dx

    def run():
        if args.train:
            model.zero_grad()
            loss.forward(model.forward(x), labels)
            model.backward(loss.backward())
        else:
            model.forward(x)

    layers.Conv2d.forward, layers.Conv2d.backward = timed_forward, timed_backward
    _kernels._set_thread_backoff(not args.no_backoff)
    limit = contextlib.nullcontext()
    if args.blas_one:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=1, user_api="blas")
    try:
        with limit:
            for run_index in range(args.runs):
                for threads in (1, 2):
                    bnkernels.set_num_threads(threads)
                    modes = {"c": [True], "numpy": [False], "both": [True, False]}[args.pieces]
                    for use_c in modes if run_index % 2 == 0 else modes[::-1]:
                        _blas.use_c_products = use_c
                        for _ in range(3):
                            run()
                        spent.clear()
                        start = time.perf_counter()
                        run()
                        total = time.perf_counter() - start
                        paths = ", ".join(f"{k} {v:.3f}" for k, v in sorted(spent.items()))
                        print(f"{args.net} batch {args.batch}, {threads} thread(s), "
                              f"{'C' if use_c else 'NumPy'} pieces: "
                              f"{'training step' if args.train else 'forward'} {total:.3f} s; "
                              f"Conv2d by path (s): {paths}")
    finally:
        layers.Conv2d.forward, layers.Conv2d.backward = forward, backward
        _blas.use_c_products = True
        _kernels._set_thread_backoff(True)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, blas-one {args.blas_one}, "
          f"back-off {not args.no_backoff}")


if __name__ == "__main__":
    main()
