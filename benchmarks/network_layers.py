"""Pooling and BN+ReLU layers at the shapes whole Inception networks use:
bnkernels vs PyTorch, layer by layer, interleaved.

    python benchmarks/network_layers.py [--batch 4] [--threads 1] [--rounds 7]
                                        [--nets googlenet,bn_inception,inception_v3]
                                        [--kinds maxpool,avgpool,global,bn_relu,relu]
                                        [--mode train,infer] [--json PATH]

The layers are read from the networks of bnkernels.nn.inception (GoogLeNet in
its torchvision variant and in the paper's, which has ReLU without BN;
BN-Inception; Inception-v3 at 299x299) by walking each network's
``_child_inputs`` for an input of --batch images: every MaxPool2d, AvgPool2d,
GlobalAvgPool2d, BatchNorm with activation="relu" and ReLU, with the shape it
receives. Identical layers (same kind, arguments and input shape) are timed
once and counted as often as they occur.

Each layer runs two ways on the same float input:
- bnkernels: the layer as the network calls it (a fresh layer object of
  bnkernels.nn.layers / BatchNorm2d, fresh outputs, ``forward`` then
  ``backward``);
- PyTorch: torch.nn.functional.max_pool2d / avg_pool2d /
  adaptive_avg_pool2d(1) / batch_norm + relu(inplace=True) (torchvision's
  BasicConv2d) / relu, autograd for the backward (the input gradient; BN's
  parameter gradients too).
``train``: one forward (batch statistics) and one backward of a fixed dy;
``infer``: one forward in eval mode (PyTorch under no_grad).

Rounds are interleaved: in each round every layer is timed on both sides
(each side the best of a few calls, after a warm-up), and the per-layer ratio
PyTorch / bnkernels (> 1: bnkernels is faster) is the median over rounds,
with its range. The total per kind and network weighs each layer's median
time by how often it occurs. Thread counts are equal on both sides.
"""
import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

import bnkernels
from bnkernels.nn import inception, layers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_rows  # noqa: E402

NETWORKS = {
    "googlenet": (lambda: inception.googlenet(variant="torchvision"), 224),
    "googlenet_paper": (lambda: inception.googlenet(), 224),
    "bn_inception": (lambda: inception.bn_inception(), 224),
    "inception_v3": (lambda: inception.inception_v3(), 299),
}
KINDS = ("maxpool", "avgpool", "global", "bn_relu", "relu")


def _walk(module, shape, found):
    found.append((module, tuple(shape)))
    for child, child_shape in module._child_inputs(shape):
        _walk(child, child_shape, found)


def layer_specs(network, batch, size):
    """Counter of (kind, input shape, options) over the layers of network."""
    found = []
    _walk(network, (batch, 3, size, size), found)
    specs = Counter()
    for module, shape in found:
        if isinstance(module, layers.MaxPool2d):
            specs[("maxpool", shape, (module.kernel_size, module.stride, module.padding,
                                      module.ceil_mode))] += 1
        elif isinstance(module, layers.AvgPool2d):
            specs[("avgpool", shape, (module.kernel_size, module.stride, module.padding,
                                      module.ceil_mode, module.count_include_pad))] += 1
        elif isinstance(module, layers.GlobalAvgPool2d):
            specs[("global", shape, ())] += 1
        elif isinstance(module, layers.BatchNorm) and module.activation == "relu":
            specs[("bn_relu", shape, (module.eps,))] += 1
        elif isinstance(module, layers.ReLU) and len(shape) == 4:
            specs[("relu", shape, ())] += 1
    return specs


def _bnkernels_layer(kind, shape, options):
    if kind == "maxpool":
        kernel, stride, padding, ceil = options
        return layers.MaxPool2d(kernel, stride, padding, ceil_mode=ceil)
    if kind == "avgpool":
        kernel, stride, padding, ceil, with_pad = options
        return layers.AvgPool2d(kernel, stride, padding, ceil_mode=ceil,
                                count_include_pad=with_pad)
    if kind == "global":
        return layers.GlobalAvgPool2d()
    if kind == "bn_relu":
        return layers.BatchNorm2d(shape[1], eps=options[0], activation="relu")
    return layers.ReLU()


def _torch_function(torch, kind, shape, options):
    F = torch.nn.functional
    if kind == "maxpool":
        kernel, stride, padding, ceil = options
        return lambda x: F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil)
    if kind == "avgpool":
        kernel, stride, padding, ceil, with_pad = options
        return lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode=ceil,
                                      count_include_pad=with_pad)
    if kind == "global":
        return lambda x: F.adaptive_avg_pool2d(x, 1)
    if kind == "bn_relu":
        c = shape[1]
        weight = torch.ones(c, requires_grad=True)
        bias = torch.zeros(c, requires_grad=True)
        mean, var = torch.zeros(c), torch.ones(c)
        eps = options[0]

        def bn_relu(x):
            training = torch.is_grad_enabled()
            return F.relu(F.batch_norm(x, mean, var, weight, bias, training, 0.1, eps),
                          inplace=True)
        return bn_relu
    return F.relu


def _sides(torch, kind, shape, options, mode, rng):
    """{side: a zero-argument callable running the layer once}."""
    x = rng.standard_normal(shape).astype(np.float32)
    layer = _bnkernels_layer(kind, shape, options)
    dy = rng.standard_normal(layer.output_shape(shape)).astype(np.float32)
    function = _torch_function(torch, kind, shape, options)
    if mode == "train":
        layer.train()

        def ours():
            layer.forward(x)
            layer.backward(dy)

        tdy = torch.from_numpy(dy)

        def theirs():
            tx = torch.from_numpy(x).requires_grad_()
            function(tx).backward(tdy)
    else:
        layer.eval()

        def ours():
            layer.forward(x)

        tx = torch.from_numpy(x)

        def theirs():
            with torch.no_grad():
                function(tx)
    return {"bnkernels": ours, "torch": theirs}


def _best(call, calls):
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def run(args, torch):
    """Rows, one per distinct layer: kind, shape, options, mode, count per
    network, the median seconds of each side and the ratio's median and range."""
    specs = {}
    for net in args.nets:
        build, size = NETWORKS[net]
        for spec, count in layer_specs(build(), args.batch, size).items():
            if spec[0] in args.kinds:
                specs.setdefault(spec, {})[net] = count
    rng = np.random.default_rng(0)
    cases = [(spec, mode, _sides(torch, *spec, mode, rng))
             for spec in specs for mode in args.mode]
    for _, _, sides in cases:   # warm-up: allocations, first-touch, lazy init
        for call in sides.values():
            call()
    times = [{"bnkernels": [], "torch": []} for _ in cases]
    for _ in range(args.rounds):
        for case, record in zip(cases, times):
            for side in ("bnkernels", "torch"):
                record[side].append(_best(case[2][side], args.calls))
    rows = []
    for (spec, mode, _), record in zip(cases, times):
        ratios = [t / b for b, t in zip(record["bnkernels"], record["torch"])]
        rows.append({"kind": spec[0], "shape": list(spec[1]), "options": repr(spec[2]),
                     "mode": mode, "count": specs[spec],
                     "bnkernels_s": statistics.median(record["bnkernels"]),
                     "torch_s": statistics.median(record["torch"]),
                     "ratio": statistics.median(ratios),
                     "ratio_range": [min(ratios), max(ratios)]})
    return rows


def totals(rows, nets):
    """{(net, kind, mode): (bnkernels s, torch s)} weighted by the counts, and
    (net, "all", mode) over the kinds."""
    out = {}
    for row in rows:
        for net, count in row["count"].items():
            for kind in (row["kind"], "all"):
                key = (net, kind, row["mode"])
                ours, theirs = out.get(key, (0.0, 0.0))
                out[key] = (ours + count * row["bnkernels_s"], theirs + count * row["torch_s"])
    return {key: out[key] for key in sorted(out, key=lambda k: (nets.index(k[0]), k[1], k[2]))}


def report(rows, nets):
    lines = ["| kind | input | options | mode | count | bnkernels us | PyTorch us "
             "| PyTorch / bnkernels (median, range) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        counts = ", ".join(f"{net} {n}" for net, n in row["count"].items())
        lo, hi = row["ratio_range"]
        lines.append(f"| {row['kind']} | {'x'.join(map(str, row['shape']))} | "
                     f"{row['options']} | {row['mode']} | {counts} | "
                     f"{row['bnkernels_s'] * 1e6:.0f} | {row['torch_s'] * 1e6:.0f} | "
                     f"{row['ratio']:.2f}x ({lo:.2f}-{hi:.2f}) |")
    lines += ["", "| network | kind | mode | bnkernels ms | PyTorch ms | PyTorch / bnkernels |",
              "|---|---|---|---|---|---|"]
    for (net, kind, mode), (ours, theirs) in totals(rows, nets).items():
        lines.append(f"| {net} | {kind} | {mode} | {ours * 1e3:.2f} | {theirs * 1e3:.2f} | "
                     f"{theirs / ours:.2f}x |")
    return "\n".join(lines)


def _choices(allowed):
    def parse(text):
        values = [v for v in text.split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of "
                                             f"{', '.join(allowed)}, got {text!r}")
        return values
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3,
                        help="calls per side per round; the best one counts")
    parser.add_argument("--nets", type=_choices(list(NETWORKS)),
                        default=["googlenet", "bn_inception", "inception_v3"])
    parser.add_argument("--kinds", type=_choices(KINDS), default=list(KINDS))
    parser.add_argument("--mode", type=_choices(["train", "infer"]), default=["train", "infer"])
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if min(args.batch, args.threads, args.rounds, args.calls) < 1:
        parser.error("--batch, --threads, --rounds and --calls must be >= 1")
    import torch
    from threadpoolctl import threadpool_limits

    bnkernels.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        rows = run(args, torch)
    print(report(rows, args.nets))
    print(f"\nfloat32, batch {args.batch}, {args.threads} thread(s) on both sides, "
          f"{args.rounds} interleaved rounds (best of {args.calls} calls each); "
          f"torch {torch.__version__}, bnkernels {bnkernels.__version__}")
    write_rows(args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
