"""Side-by-side timings of batch norm: bnkernels vs the NumPy reference vs PyTorch.

    python benchmarks/compare.py [--repeat 7] [--shapes 32,64,56,56 8,32,14,14]

Same inputs, one thread on every side (torch.set_num_threads(1); bnkernels is
single-threaded), every call allocating its outputs fresh on every side. Prints
a Markdown table of the median time in ms of each side, and how many times
longer the NumPy reference and PyTorch take than bnkernels' standard numerics
(above 1x: bnkernels is faster).
"""
import argparse
import statistics
import time

import numpy as np

import bnkernels
from bnkernels import reference


def median_ms(fn, repeat):
    fn()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def cases(shape, dtype):
    rng = np.random.default_rng(0)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w, b = np.ones(c, dtype), np.zeros(c, dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)

    def ours(module, numerics):
        _, saved = module.batch_norm_forward(x, w, b, rm, rv, numerics=numerics)
        return {
            "training forward": lambda: module.batch_norm_forward(x, w, b, rm, rv,
                                                                  numerics=numerics),
            "inference": lambda: module.batch_norm_forward(x, w, b, rm, rv, training=False,
                                                           numerics=numerics),
            "backward": lambda: module.batch_norm_backward(dy, saved),
        }

    sides = {"bnkernels standard": ours(bnkernels, "standard"),
             "bnkernels darknet": ours(bnkernels, "darknet"),
             "NumPy reference": ours(reference, "standard")}
    try:
        import torch
    except ImportError:
        return sides
    torch.set_num_threads(1)
    tx = torch.from_numpy(x).requires_grad_()
    tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    tdy = torch.from_numpy(dy)
    F = torch.nn.functional

    def torch_forward(training):
        with torch.no_grad():
            return F.batch_norm(tx, trm, trv, tw, tb, training=training)

    ty = F.batch_norm(tx, trm, trv, tw, tb, training=True)
    sides[f"PyTorch {torch.__version__.split('+')[0]}"] = {
        "training forward": lambda: torch_forward(True),
        "inference": lambda: torch_forward(False),
        "backward": lambda: torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True),
    }
    return sides


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--shapes", nargs="+", default=["32,64,56,56", "8,32,14,14"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    header = None
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split(","))
        sides = cases(shape, np.dtype(args.dtype))
        if header is None:
            header = list(sides)
            others = header[2:]
            print(f"| shape ({args.dtype}) | op | " + " | ".join(f"{n} ms" for n in header)
                  + " | " + " | ".join(f"standard vs {n}" for n in others) + " |")
            print("|---" * (2 + len(header) + len(others)) + "|")
        for op in ("training forward", "inference", "backward"):
            times = [median_ms(sides[name][op], args.repeat) for name in header]
            ratios = [f"{t / times[0]:.2f}x" for t in times[2:]]
            print(f"| {shape} | {op} | " + " | ".join(f"{t:.3f}" for t in times)
                  + " | " + " | ".join(ratios) + " |")

if __name__ == "__main__":
    main()
