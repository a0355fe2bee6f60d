#!/usr/bin/env python3
"""Whole Inception networks: bnkernels.nn against torchvision's same
architecture, training step and inference, and where bnkernels' step goes.

    python benchmarks/networks.py [--nets googlenet inception_v3 bn_inception]
                                  [--batch 4 8] [--threads 1 2] [--rounds 3]
                                  [--steps 1] [--modes train infer] [--load]
                                  [--breakdown] [--limit-blas] [--json PATH]
    python benchmarks/networks.py --conv-paths [--nets ...] [--batch 4] [--rounds 5]

Networks (float32, NCHW, training mode with batch statistics for the step):
- googlenet: ``inception.googlenet(variant="torchvision")`` against
  ``torchvision.models.googlenet(aux_logits=False)``, 224x224;
- inception_v3: ``inception.inception_v3()`` against
  ``torchvision.models.inception_v3(aux_logits=False)``, 299x299;
- bn_inception: ``inception.bn_inception()`` against the same network in
  torch's own layers (``bnkernels.torch.to_torch``; torchvision has no
  BN-Inception), 224x224.
The torchvision networks' weights are loaded into bnkernels' (their
state_dict keys are the same), so both sides compute the same function of the
same input.

A training step is forward, the loss (softmax cross-entropy against fixed
labels), and backward, gradients zeroed first (torch: set to None, its
default); no optimizer. Neither side computes dL/dx of the images (torch's
do not require grad; bnkernels: ``backward(..., input_grad=False)``).
Inference is the eval-mode forward (torch: under ``torch.inference_mode``).
Thread counts are like for like: the "threads" column is
``bnkernels.set_num_threads`` and ``torch.set_num_threads``; bnkernels'
layers run NumPy's BLAS on as many threads (bnkernels.nn._blas).

Both sides run in this process. Each round times every case, bnkernels and
torch one after the other (the order alternating between rounds), ``--steps``
calls each after one untimed call; the table gives, over the rounds, the
median (and range) of each side's median, and the ratio torch / bnkernels
(above 1: bnkernels is faster) with its range over rounds.

``--load`` runs a busy loop (a Python ``while True: pass``) pinned to every
core but the first while the benchmark runs, unpinned, on all of them: the
"another process on the second core" case. ``--breakdown`` adds bnkernels'
step split by kind of layer (benchmarks/inception_blocks.py's instrument:
convolution GEMMs and their layout copies, im2col/col2im, BN + ReLU, pooling,
the rest), timed on separate steps after the rounds.

``--conv-paths`` times instead each of the networks' convolutions (one
of each shape, at its input shape in the network) on Conv2d's two GEMM
paths, per-sample products and whole-batch products
(``_BATCH_GEMM_MAX_POSITIONS`` switched; the direct convolution off),
alternating, on one thread, in thread CPU time: the measurement behind
that threshold. ``benchmarks/conv_layers.py`` times the layers as Conv2d
runs them, direct convolution included, against PyTorch.

Timings only: nothing here asserts a speed. Report the machine with them
(printed at the end).
"""
import argparse
import importlib.machinery
import importlib.util
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import bnkernels
from bnkernels.nn import inception
from bnkernels.nn.layers import SoftmaxCrossEntropy
from bnkernels.tools import bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy_loops, span, timed_calls, write_rows  # noqa: E402
from inception_blocks import KINDS, instrument  # noqa: E402

NETS = {
    "googlenet": (224, lambda: inception.googlenet(variant="torchvision", rng=0),
                  lambda models: models.googlenet(weights=None, aux_logits=False,
                                                  init_weights=True)),
    "inception_v3": (299, lambda: inception.inception_v3(rng=0),
                     lambda models: models.inception_v3(weights=None, aux_logits=False,
                                                        init_weights=True)),
    "bn_inception": (224, lambda: inception.bn_inception(rng=0), None),
}


def import_torchvision(torch):
    """torchvision.models, or None. torchvision from the package index is a
    CUDA build whose C extension does not load next to the CPU torch; its
    model definitions need only the two operators its import registers fake
    kernels for, declared here when the extension does not load (as
    tests/test_inception_torchvision.py does)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        return None
    loads = False
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(spec.origin).parent / f"_C{suffix}"
        if path.exists():
            try:
                torch.ops.load_library(str(path))
                loads = True
            except OSError:
                pass
            break
    if not loads:
        library = torch.library.Library("torchvision", "DEF")
        for name in ("nms", "qnms"):
            library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) "
                           "-> Tensor")
        import_torchvision.keep = library
    import torchvision
    return torchvision.models


def build(net, batch, torch, models):
    """(ours, theirs, x, labels) for one network and batch size."""
    size, ours_fn, theirs_fn = NETS[net]
    ours = ours_fn()
    if theirs_fn is None:
        from bnkernels.torch import to_torch
        theirs = to_torch(ours)
    else:
        theirs = theirs_fn(models)
        ours.load_state_dict({key: value.detach().numpy()
                              for key, value in theirs.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, 1000, batch)
    return ours, theirs, x, labels


def calls(ours, theirs, x, labels, torch):
    """{(mode, side): function} of the four things timed."""
    loss = SoftmaxCrossEntropy()
    x_t = torch.from_numpy(x)
    labels_t = torch.from_numpy(labels)
    loss_t = torch.nn.CrossEntropyLoss()

    def our_step():
        ours.train()
        ours.zero_grad()
        loss.forward(ours.forward(x), labels)
        ours.backward(loss.backward(), input_grad=False)

    def our_infer():
        ours.eval()
        ours.forward(x)

    def their_step():
        theirs.train()
        theirs.zero_grad()
        loss_t(theirs(x_t), labels_t).backward()

    def their_infer():
        theirs.eval()
        with torch.inference_mode():
            theirs(x_t)

    return {("train", "bnkernels"): our_step, ("train", "torch"): their_step,
            ("infer", "bnkernels"): our_infer, ("infer", "torch"): their_infer}


def set_threads(threads, torch, limit_blas=False):
    bnkernels.set_num_threads(threads)
    torch.set_num_threads(threads)
    if limit_blas:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads, user_api="blas")


def breakdown(ours, x, labels, steps):
    """{kind: seconds per step} of bnkernels' training step."""
    tally = defaultdict(float)
    instrument(ours, tally)
    loss = SoftmaxCrossEntropy()

    def step():
        ours.train()
        ours.zero_grad()
        loss.forward(ours.forward(x), labels)
        ours.backward(loss.backward(), input_grad=False)
    step()
    tally.clear()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    total = (time.perf_counter() - start) / steps
    parts = {kind: tally[kind] / steps for kind in KINDS[:-1]}
    parts["conv GEMM (BLAS)"] -= parts["im2col/col2im (C)"]   # nested inside conv
    parts["other"] = total - sum(parts.values())
    return parts, total


def conv_paths(args):
    """Each network's convolutions (one of each shape, on its input in the
    network at --batch) timed forward + backward on both of Conv2d's paths
    (per sample, whole batch), alternating, --rounds times, one thread and
    one BLAS thread, in the calling thread's CPU time (all the work is on
    it; other processes' load then counts much less). Returns {output
    positions: [per-sample s, whole-batch s]} summed over the layers (times their count in the network)."""
    from threadpoolctl import threadpool_limits
    from bnkernels.nn import layers
    bnkernels.set_num_threads(1)
    layers._DIRECT_AVAILABLE = False   # the two GEMM paths, not the direct kernel
    totals = defaultdict(lambda: [0.0, 0.0])
    with threadpool_limits(limits=1, user_api="blas"):
        for net in args.nets:
            size, make, _ = NETS[net]
            seen = defaultdict(int)
            model = make()
            for module in model._modules():
                if isinstance(module, layers.Conv2d):
                    module.forward = _recording(module, seen)
            model.eval()
            model.forward(np.zeros((args.batch[0], 3, size, size), np.float32))
            for (shape, out, kernel, stride, padding), count in seen.items():
                conv = layers.Conv2d(shape[1], out, kernel, stride, padding, bias=False, rng=0)
                rng = np.random.default_rng(0)
                x = rng.standard_normal(shape).astype(np.float32)
                dy = rng.standard_normal(conv.output_shape(shape)).astype(np.float32)
                times = [[], []]
                for r in range(args.rounds):
                    for path in (0, 1) if r % 2 == 0 else (1, 0):
                        layers._BATCH_GEMM_MAX_POSITIONS = (0, 1 << 62)[path]
                        conv.forward(x)
                        conv.backward(dy)
                        start = time.thread_time()
                        conv.forward(x)
                        conv.backward(dy)
                        times[path].append(time.thread_time() - start)
                positions = math.prod(dy.shape[2:])
                for path in (0, 1):
                    totals[positions][path] += count * statistics.median(times[path])
    return dict(sorted(totals.items()))


def _recording(conv, seen):
    forward = conv.forward

    def record(x):
        seen[(x.shape, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)] += 1
        return forward(x)
    return record


def run(args):
    import torch
    models = import_torchvision(torch)
    results = []
    others = sorted(os.sched_getaffinity(0))[1:] if args.load else []
    with busy_loops(others) as loops:
        for net in args.nets:
            if NETS[net][2] is not None and models is None:
                print(f"{net}: torchvision not installed, skipped", file=sys.stderr)
                continue
            for batch in args.batch:
                ours, theirs, x, labels = build(net, batch, torch, models)
                fns = calls(ours, theirs, x, labels, torch)
                times = defaultdict(list)
                for r in range(args.rounds):
                    print(f"{net} batch {batch}: round {r + 1}/{args.rounds}", file=sys.stderr,
                          flush=True)
                    for threads in args.threads:
                        set_threads(threads, torch, args.limit_blas)
                        for mode in args.modes:
                            sides = ["bnkernels", "torch"]
                            for side in sides if r % 2 == 0 else sides[::-1]:
                                times[(threads, mode, side)].append(statistics.median(
                                    timed_calls(fns[(mode, side)], args.steps)))
                for threads in args.threads:
                    for mode in args.modes:
                        ours_t = times[(threads, mode, "bnkernels")]
                        theirs_t = times[(threads, mode, "torch")]
                        row = {"net": net, "batch": batch, "threads": threads, "mode": mode,
                               "load": bool(loops), "bnkernels_s": ours_t, "torch_s": theirs_t,
                               "ratios": [t / o for o, t in zip(ours_t, theirs_t)]}
                        if args.breakdown and mode == "train":
                            set_threads(threads, torch, args.limit_blas)
                            parts, total = breakdown(build(net, batch, torch, models)[0], x,
                                                     labels, args.steps)
                            row["breakdown_s"], row["breakdown_total_s"] = parts, total
                        results.append(row)
    return results


def format_rows(rows, breakdown_on):
    head = "| net | batch | threads | load | mode | bnkernels s | torch s | torch / bnkernels |"
    rule = "|---|---|---|---|---|---|---|---|"
    if breakdown_on:
        head += " " + " | ".join(KINDS) + " |"
        rule += "---|" * len(KINDS)
    lines = [head, rule]
    for row in rows:
        line = (f"| {row['net']} | {row['batch']} | {row['threads']} | "
                f"{'loaded' if row['load'] else 'free'} | {row['mode']} | "
                f"{span(row['bnkernels_s'], '{:.3f}')} | {span(row['torch_s'], '{:.3f}')} | "
                f"{span(row['ratios'], '{:.2f}')} |")
        if breakdown_on:
            parts, total = row.get("breakdown_s"), row.get("breakdown_total_s")
            line += " " + " | ".join(
                "-" if parts is None else f"{100 * parts[kind] / total:.0f}%"
                for kind in KINDS) + " |"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=["googlenet"])
    parser.add_argument("--batch", nargs="+", type=bench.positive_int, default=[4])
    parser.add_argument("--threads", nargs="+", type=bench.positive_int, default=[1, 2])
    parser.add_argument("--modes", nargs="+", choices=["train", "infer"],
                        default=["train", "infer"])
    parser.add_argument("--rounds", type=bench.positive_int, default=3)
    parser.add_argument("--steps", type=bench.positive_int, default=1,
                        help="timed calls per side per round (their median)")
    parser.add_argument("--load", action="store_true",
                        help="a busy loop on every core but the first")
    parser.add_argument("--limit-blas", action="store_true",
                        help="also limit NumPy's BLAS to the thread count for the whole "
                             "process (threadpoolctl), as a build without bnkernels.nn._blas "
                             "needs to be compared like for like")
    parser.add_argument("--breakdown", action="store_true",
                        help="bnkernels' training step by kind of layer")
    parser.add_argument("--conv-paths", action="store_true",
                        help="instead: the networks' convolutions on Conv2d's per-sample "
                             "and whole-batch paths, by output size")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.conv_paths:
        print("| output positions per sample | per-sample s | whole-batch s | "
              "per-sample / whole-batch |\n|---|---|---|---|")
        for positions, (per_sample, whole) in conv_paths(args).items():
            print(f"| {positions} | {per_sample:.4f} | {whole:.4f} | {per_sample / whole:.2f} |")
        print(f"\n{', '.join(args.nets)}, batch {args.batch[0]}, one thread, median of "
              f"{args.rounds} rounds per layer, forward + backward, float32, thread CPU "
              f"seconds")
        return 0
    rows = run(args)
    print(format_rows(rows, args.breakdown))
    machine = bench.describe_machine(sys.modules.get("torch"))
    print(f"\n{machine['cpu_model']}, {machine['usable_cores']} usable cores, "
          f"{'busy loop on every core but the first' if args.load else 'no added load'}; "
          f"{'BLAS limited to the thread count; ' if args.limit_blas else ''}"
          f"float32; {args.rounds} rounds of {args.steps} timed call(s) per side; "
          f"numpy {machine['numpy']}, torch {machine['torch']}.")
    write_rows(args, rows, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
