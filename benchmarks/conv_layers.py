#!/usr/bin/env python3
"""Every convolution of an Inception network: bnkernels' Conv2d against
PyTorch's conv2d, layer by layer, one thread unless told.

    python benchmarks/conv_layers.py [--nets inception_v3 googlenet bn_inception]
                                     [--batch 4] [--modes infer train] [--rounds 5]
                                     [--top 12] [--gemm-dw] [--threads 1]

The layers are those the network's eval forward calls (one of each shape,
with how often it occurs), on random float32 input of the shape it gets
there. ``infer``: Conv2d.forward in eval mode against conv2d under no_grad;
``train``: forward + backward in training mode (dL/dx, dL/dW) against
conv2d + autograd (x and the weight requiring gradients). Each round times
both sides, in turn, as the best of two calls after a warm-up; a layer's
time is its median over rounds. One thread on both sides (bnkernels, NumPy's
BLAS through threadpoolctl, torch). Printed: each network's total (each
layer's time times its count) on both sides, their ratio (torch /
bnkernels, above 1: bnkernels is faster), and the --top layers that lose the
most time to torch, with each side's GMAC/s. ``--threads N`` gives both
sides N threads (bnkernels' kernels and the BLAS count its products split
over, torch's intra-op pool). ``--gemm-dw`` turns off the
direct weight gradient (dL/dW by im2col + GEMM on every layer), for a
side-by-side run of the two.

Timings only: nothing here asserts a speed. Report the machine with them.
"""
import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import networks  # noqa: E402  (NETS and the recording hook)
from _common import cpu_model  # noqa: E402

import bnkernels  # noqa: E402
from bnkernels.nn import layers  # noqa: E402


def network_convs(net, batch):
    """{(input shape, out, kernel, stride, padding): count} of one network."""
    size, make, _ = networks.NETS[net]
    seen = defaultdict(int)
    model = make()
    for module in model._modules():
        if isinstance(module, layers.Conv2d):
            module.forward = networks._recording(module, seen)
    model.eval()
    model.forward(np.zeros((batch, 3, size, size), np.float32))
    return seen


def best_of_two(fn):
    fn()
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_layer(torch, shape, out, kernel, stride, padding, mode, rounds):
    """(bnkernels s, torch s, MACs) for one layer."""
    train = mode == "train"
    conv = layers.Conv2d(shape[1], out, kernel, stride, padding, bias=False, rng=0)
    conv.training = train
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(conv.output_shape(shape)).astype(np.float32)
    x_t = torch.from_numpy(x).requires_grad_(train)
    w_t = torch.from_numpy(conv.weight.copy()).requires_grad_(train)
    dy_t = torch.from_numpy(dy)

    def ours():
        conv.forward(x)
        if train:
            conv.backward(dy)

    def theirs():
        if train:
            torch.nn.functional.conv2d(x_t, w_t, None, stride, padding).backward(dy_t)
        else:
            with torch.no_grad():
                torch.nn.functional.conv2d(x_t, w_t, None, stride, padding)

    times = ([], [])
    for r in range(rounds):
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):
            times[side].append(best_of_two((ours, theirs)[side]))
    macs = conv.macs(shape) * (3 if train else 1)
    return statistics.median(times[0]), statistics.median(times[1]), macs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", choices=list(networks.NETS),
                        default=["inception_v3"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--modes", nargs="+", choices=["infer", "train"],
                        default=["infer", "train"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gemm-dw", action="store_true",
                        help="dL/dW by im2col + GEMM everywhere (no direct weight gradient)")
    args = parser.parse_args(argv)
    if args.gemm_dw:
        layers._DIRECT_DW_MAX_TAPS = 0
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(args.threads)
    bnkernels.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for net in args.nets:
            convs = network_convs(net, args.batch)
            for mode in args.modes:
                rows = []
                for (shape, out, kernel, stride, padding), count in convs.items():
                    ours, theirs, macs = time_layer(torch, shape, out, kernel, stride,
                                                    padding, mode, args.rounds)
                    rows.append((count, shape, out, kernel, stride, padding, ours, theirs,
                                 macs))
                total_ours = sum(r[0] * r[6] for r in rows)
                total_theirs = sum(r[0] * r[7] for r in rows)
                print(f"\n{net}, batch {args.batch}, {mode}, {args.threads} thread(s): "
                      f"{len(rows)} distinct layers, "
                      f"bnkernels {total_ours:.3f} s, torch {total_theirs:.3f} s, "
                      f"torch / bnkernels {total_theirs / total_ours:.2f}")
                print("| input | out | kernel | stride | padding | count | bnkernels ms | "
                      "torch ms | torch / bnkernels | bnkernels GMAC/s | torch GMAC/s |")
                print("|---|---|---|---|---|---|---|---|---|---|---|")
                rows.sort(key=lambda r: -r[0] * (r[6] - r[7]))
                for count, shape, out, kernel, stride, padding, ours, theirs, macs in \
                        rows[:args.top]:
                    print(f"| {shape} | {out} | {kernel} | {stride} | {padding} | {count} | "
                          f"{ours * 1e3:.2f} | {theirs * 1e3:.2f} | {theirs / ours:.2f} | "
                          f"{macs / ours / 1e9:.0f} | {macs / theirs / 1e9:.0f} |")
    print(f"\nmachine: {cpu_model()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, numpy {np.__version__}, "
          f"direct convolution: {bool(getattr(layers, '_DIRECT_AVAILABLE', False))}")


if __name__ == "__main__":
    main()
