#!/usr/bin/env python3
"""The direct weight gradient in a network's training step: time and memory,
on and off.

    python benchmarks/direct_dw.py [--nets inception_v3 googlenet] [--batch 4]
                                   [--threads 1 2] [--runs 2]

Each (network, setting, thread count) runs in a fresh process, the settings
alternating --runs times: "direct" (Conv2d's default) and "gemm" (dL/dW by
im2col + GEMM on every layer). A process runs one warm-up training step
(forward, loss, backward) and then times three; it prints their median, its
peak RSS (``resource.getrusage``, the warm-up included) and the bytes of
columns buffers its layers keep afterwards.

Timings only: nothing here asserts a speed. Report the machine with them.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def one(net, setting, threads, batch):
    sys.path.insert(0, HERE)
    import networks
    import bnkernels
    from bnkernels.nn import layers
    if setting == "gemm":
        layers._DIRECT_DW_MAX_TAPS = 0
    bnkernels.set_num_threads(threads)
    size, make, _ = networks.NETS[net]
    model = make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, 1000, batch)
    loss = layers.SoftmaxCrossEntropy()

    def step():
        model.train()
        model.zero_grad()
        loss.forward(model.forward(x), labels)
        model.backward(loss.backward())
    step()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    kept = sum(m._cols_buffer.nbytes for m in model._modules()
               if getattr(m, "_cols_buffer", None) is not None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"step_s": statistics.median(times), "peak_rss_bytes": peak, "cols_bytes": kept}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", default=["inception_v3", "googlenet"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        net, setting, threads = args.one
        print(json.dumps(one(net, setting, int(threads), args.batch)))
        return
    print("| net | threads | dL/dW | step s | peak RSS MB | columns kept MB |")
    print("|---|---|---|---|---|---|")
    for net in args.nets:
        for threads in args.threads:
            for _ in range(args.runs):
                for setting in ("direct", "gemm"):
                    out = subprocess.run(
                        [sys.executable, __file__, "--batch", str(args.batch), "--one", net,
                         setting, str(threads)], check=True, capture_output=True, text=True)
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    print(f"| {net} | {threads} | {setting} | {row['step_s']:.3f} | "
                          f"{row['peak_rss_bytes'] / 2**20:.0f} | "
                          f"{row['cols_bytes'] / 2**20:.0f} |", flush=True)
    sys.path.insert(0, HERE)
    from _common import cpu_model
    print(f"\nmachine: {cpu_model()}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
