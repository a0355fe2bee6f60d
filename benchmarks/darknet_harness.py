#!/usr/bin/env python3
"""Darknet-exact numerics next to Darknet's own CPU batch-norm layer.

    python benchmarks/darknet_harness.py --harness DIR [--rounds 5] [--threads 1 2]
        [--forks pj ab] [--builds strict ofast] [--darknet-build ofast]
        [--shapes 1x32x208x208 8x64x56x56 ...]

DIR holds the Darknet harness binaries (``dk_pj_ofast``, ``dk_ab_ofast``, and
``dk_pj_strict``, ``dk_ab_strict`` for ``--darknet-build strict``). They are
not part of this repository: build them as DIR/README.md says (the harness
source, ``dkharness.c``, linked against each fork's own objects: pjreddie
f6afaabc with its Makefile's ``-Ofast``, AlexeyAB 59596d78 with ``make
LIBSO=0``, GPU, OpenCV, OpenMP and AVX off).

Each shape's inputs (x, dy, scales, biases, rolling mean and variance) are
written as raw float32 into a temporary directory. A round runs, for each
fork, the harness's ``time`` command (``embedded``: how a
``[convolutional]`` layer with ``batch_normalize=1`` calls
forward_batchnorm_layer and backward_batchnorm_layer, with
OMP_NUM_THREADS=1) and, in this process, bnkernels' ``BatchNorm`` layer
with that fork's numerics for each ``--builds`` entry (``reuse_buffers=True``,
as Darknet's layers keep their arrays): the same phases (training forward,
training backward, their sum per iteration, inference forward), each timed
REPS times after WARM untimed calls, with the input, scales and statistics
Darknet got. The sides alternate their order from round to round. The ratio
of a round is Darknet's median time over bnkernels' median time (above 1:
bnkernels is faster); the table gives the median and the range over rounds.

``same bits`` compares the harness's hashes of the training output y,
dx, the rolling statistics and the inference output with the same hashes of
bnkernels' results: bnkernels' ``ofast`` build must match the -Ofast
binary everywhere, the ``strict`` build the strict binary everywhere; the
forward is the same in both Darknet builds, so the strict build against the
-Ofast binary matches y and the inference output (and the rolling
statistics), not dx.

``--threads 2`` runs bnkernels on 2 threads against Darknet's
single-threaded CPU build; the report labels each row with both counts.

Timings only: nothing here asserts a speed. The numbers depend on the
machine and on whatever else it runs; report the machine with them.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import bnkernels
from bnkernels.batchnorm import BatchNorm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, write_json  # noqa: E402

SHAPES = [(1, 32, 208, 208), (1, 64, 104, 104), (1, 256, 26, 26), (8, 64, 56, 56),
          (16, 64, 28, 28)]
PHASES = ["train_fwd", "train_bwd", "train_fwdbwd", "infer"]
NUMERICS = {("pj", "strict"): "darknet", ("pj", "ofast"): "darknet-ofast",
            ("ab", "strict"): "darknet-alexeyab", ("ab", "ofast"): "darknet-alexeyab-ofast"}


def shape_arg(text):
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is NxCxHxW, got {text!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is NxCxHxW (each >= 1), got {text!r}")
    return shape


def hash_f32(a):
    """The harness's hash: sum_i bits(a[i]) * (2i + 1) mod 2**64."""
    u = np.ascontiguousarray(a, np.float32).ravel().view(np.uint32).astype(np.uint64)
    weights = 2 * np.arange(u.size, dtype=np.uint64) + 1
    with np.errstate(over="ignore"):
        return f"{int((u * weights).sum(dtype=np.uint64)):016x}"


def write_inputs(shape, directory, seed=0):
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.standard_normal(shape, np.float32) * np.float32(2) + np.float32(0.5),
        "dy": rng.standard_normal(shape, np.float32),
        "scales": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "biases": (rng.standard_normal(c) * 0.1).astype(np.float32),
        "rm": (rng.standard_normal(c) * 0.1).astype(np.float32),
        "rv": rng.uniform(0.5, 1.5, c).astype(np.float32),
    }
    for name, a in arrays.items():
        a.astype("<f4").tofile(os.path.join(directory, name + ".bin"))
    return arrays


def run_darknet(binary, shape, reps, warm, directory):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [binary, "time", *map(str, shape), str(reps), str(warm), directory, "embedded"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    times, hashes = {}, {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        if record["phase"] == "hashes":
            hashes = {k: record[k] for k in ("y", "dx", "rolling_mean", "rolling_variance",
                                              "y_infer")}
        else:
            times[record["phase"]] = record["median_ms"]
    return times, hashes


def run_bnkernels(numerics, arrays, reps, warm):
    """The harness's loop with bnkernels' layer: per iteration a training
    forward and backward, then as many inference forwards."""
    x, dy = arrays["x"], arrays["dy"]
    layer = BatchNorm(x.shape[1], numerics=numerics, dtype=np.float32,
                      reuse_buffers=True)
    layer.weight[...] = arrays["scales"]
    layer.bias[...] = arrays["biases"]
    layer.running_mean[...] = arrays["rm"]
    layer.running_var[...] = arrays["rv"]
    clock = time.perf_counter
    fwd, bwd, both, infer = [], [], [], []
    layer.train()
    for _ in range(warm + reps):
        t0 = clock()
        y = layer.forward(x)
        t1 = clock()
        dx = layer.backward(dy)
        t2 = clock()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        both.append(t2 - t0)
    hashes = {"y": hash_f32(y), "dx": hash_f32(dx),
              "rolling_mean": hash_f32(layer.running_mean),
              "rolling_variance": hash_f32(layer.running_var)}
    layer.eval()
    for _ in range(warm + reps):
        t0 = clock()
        y = layer.forward(x)
        infer.append(clock() - t0)
    hashes["y_infer"] = hash_f32(y)
    times = {phase: 1e3 * statistics.median(t[warm:])
             for phase, t in zip(PHASES, (fwd, bwd, both, infer))}
    return times, hashes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness", required=True,
                        help="directory of the harness binaries (see its README.md)")
    parser.add_argument("--shapes", type=shape_arg, nargs="+", default=SHAPES)
    parser.add_argument("--forks", nargs="+", choices=["pj", "ab"], default=["pj", "ab"])
    parser.add_argument("--builds", nargs="+", choices=["strict", "ofast"],
                        default=["strict", "ofast"], help="bnkernels' numerics builds")
    parser.add_argument("--darknet-build", choices=["ofast", "strict"], default="ofast",
                        help="which Darknet binary to time against")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="bnkernels' thread counts (Darknet always runs on 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--json", help="write every round's times to this file")
    args = parser.parse_args(argv)

    binaries = {}
    for fork in args.forks:
        path = os.path.join(args.harness, f"dk_{fork}_{args.darknet_build}")
        if not os.access(path, os.X_OK):
            parser.error(f"--harness: no executable {path} (build it as "
                         f"{os.path.join(args.harness, 'README.md')} says)")
        binaries[fork] = path
    if max(args.threads) > 1 and not bnkernels.openmp_enabled():
        parser.error("--threads above 1 needs a bnkernels build with OpenMP")

    print(f"# {cpu_model()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
          f"NumPy {np.__version__}, bnkernels {bnkernels.__version__}")
    print(f"# Darknet: {args.darknet_build} binaries in {args.harness}, embedded, 1 thread; "
          f"{args.rounds} rounds of median-of-{args.reps} (after {args.warm} warm-up calls)")
    print("# command: " + " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])))
    previous_threads = bnkernels.get_num_threads()
    records = []  # (shape, fork, build, threads, round, darknet times, bnkernels times)
    mismatches = {}
    with tempfile.TemporaryDirectory() as directory:
        for shape in args.shapes:
            arrays = write_inputs(shape, directory)
            for r in range(args.rounds):
                for fork in args.forks:
                    cases = [(b, t) for b in args.builds for t in args.threads]
                    if r % 2:
                        cases.reverse()
                    order = ["darknet", "bnkernels"] if r % 2 == 0 else ["bnkernels", "darknet"]
                    mine = {}
                    for side in order:
                        if side == "darknet":
                            dk_times, dk_hashes = run_darknet(binaries[fork], shape, args.reps,
                                                              args.warm, directory)
                            continue
                        for build, threads in cases:
                            bnkernels.set_num_threads(threads)
                            mine[build, threads] = run_bnkernels(NUMERICS[fork, build], arrays,
                                                                 args.reps, args.warm)
                    bnkernels.set_num_threads(previous_threads)
                    for (build, threads), (times, hashes) in mine.items():
                        records.append((shape, fork, build, threads, r, dk_times, times))
                        same = [k for k in hashes if hashes[k] == dk_hashes[k]]
                        mismatches[shape, fork, build] = sorted(set(hashes) - set(same))
    print()
    print(f"{'shape':<18} {'fork':<4} {'bnkernels':<9} {'thr':>3}  {'phase':<13} "
          f"{'Darknet ms':>10} {'bnkernels ms':>12}  {'ratio median [range]':<22} differ from "
          f"Darknet's bits")
    summary = []
    for shape in args.shapes:
        for fork in args.forks:
            for build in args.builds:
                for threads in args.threads:
                    rows = [rec for rec in records if rec[:4] == (shape, fork, build, threads)]
                    for phase in PHASES:
                        dk = [rec[5][phase] for rec in rows]
                        bk = [rec[6][phase] for rec in rows]
                        ratios = [d / b for d, b in zip(dk, bk)]
                        differ = mismatches[shape, fork, build]
                        summary.append({"shape": shape, "fork": fork, "build": build,
                                        "threads": threads, "phase": phase,
                                        "darknet_ms": dk, "bnkernels_ms": bk,
                                        "ratios": ratios, "differ": differ})
                        print(f"{'x'.join(map(str, shape)):<18} {fork:<4} {build:<9} "
                              f"{threads:>3}  {phase:<13} {statistics.median(dk):>10.3f} "
                              f"{statistics.median(bk):>12.3f}  "
                              f"{statistics.median(ratios):5.2f}x [{min(ratios):.2f}-"
                              f"{max(ratios):.2f}]{'':<7} "
                              f"{', '.join(differ) if differ else 'none'}")
    if args.json:
        write_json(args.json, {"machine": cpu_model(), "darknet_build": args.darknet_build,
                               "rows": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
