#!/usr/bin/env python3
"""Threads on a busy machine: bnkernels at 1 and 2 (or more) threads, with the
other cores free and with a busy loop on each of them.

    python benchmarks/busy_threads.py calls [--rounds 7] [--threads 1 2]
    python benchmarks/busy_threads.py step  [--rounds 3] [--batch 4] [--torch]
    python benchmarks/busy_threads.py both --compare /path/to/other/build

``calls``: per-call times of batch_norm_forward (inference, training) and
batch_norm_backward, float32 NCHW, standard numerics, reused outputs, at
(8,32,14,14), (1,64,56,56), (32,64,56,56) and (128,1024,7,7).
``step``: one GoogLeNet (bnkernels.nn.inception.googlenet, batch norm)
training step (forward, loss, backward, SGD) at --batch; ``--torch`` adds
torchvision's GoogLeNet step at the same thread count (torch.set_num_threads).

"Loaded" runs one busy loop (a process spinning in pure Python) pinned to each
core but the first while the benchmark runs on every core; "free" runs no
loop. Both sides of a comparison run in
the same round, one after the other, in alternating order, and the rounds are
repeated: the report gives the median and the range over rounds of each
round's median time. ``--compare DIR`` runs the same cases with the bnkernels
package found in DIR (a copy of another build's ``bnkernels/`` directory's
parent) as the "before" side, each side in its own process.

Timings only: nothing here asserts a speed. The numbers depend on the machine
and on whatever else it runs; report the machine with them.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy_loops, cpu_model, span, timed_calls, write_json  # noqa: E402

SHAPES = [(8, 32, 14, 14), (1, 64, 56, 56), (32, 64, 56, 56), (128, 1024, 7, 7)]
KINDS = ["inference", "train-fwd", "train-bwd"]


# ---------------------------------------------------------------------------
# One side, in its own process: prints one JSON object of median times
# ---------------------------------------------------------------------------

def _time_call(fn, min_seconds=0.05, min_reps=5):
    """Median seconds of fn() over repeats lasting about min_seconds."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2000:
            break
    return statistics.median(times)


def side_calls(threads):
    import numpy as np
    import bnkernels
    out = {}
    for shape in SHAPES:
        rng = np.random.default_rng(0)
        c = shape[1]
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        w, b = np.ones(c, np.float32), np.zeros(c, np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        y = np.empty_like(x)
        dx = np.empty_like(x)
        _, saved = bnkernels.batch_norm_forward(x, w, b, rm, rv, training=True)
        calls = {
            "inference": lambda: bnkernels.batch_norm_forward(
                x, w, b, rm, rv, training=False, out=y),
            "train-fwd": lambda: bnkernels.batch_norm_forward(
                x, w, b, rm, rv, training=True, out=y),
            "train-bwd": lambda: bnkernels.batch_norm_backward(dy, saved, out=dx),
        }
        for t in threads:
            bnkernels.set_num_threads(t)
            for kind in KINDS:
                out[f"{shape}|{kind}|{t}"] = _time_call(calls[kind])
    return out


def side_step(threads, batch, steps, use_torch):
    import numpy as np
    out = {}
    if use_torch:
        import torch
        from networks import import_torchvision   # the CPU torch's way in
        models = import_torchvision(torch)
        tmodel = models.googlenet(weights=None, aux_logits=False, init_weights=True)
        tmodel.train()
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
        tx = torch.randn(batch, 3, 224, 224)
        ty = torch.randint(0, 1000, (batch,))
        loss_fn = torch.nn.CrossEntropyLoss()

        def torch_step():
            topt.zero_grad()
            loss = loss_fn(tmodel(tx), ty)
            loss.backward()
            topt.step()
    import bnkernels
    from bnkernels.nn.inception import googlenet
    from bnkernels.nn.layers import SoftmaxCrossEntropy
    from bnkernels.nn.optim import SGD
    model = googlenet(batch_norm=True)
    model.train()
    opt = SGD(model, lr=0.01, momentum=0.9)
    lossm = SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    labels = rng.integers(0, 1000, batch)

    def bn_step():
        model.zero_grad()
        lossm.forward(model.forward(x), labels)
        model.backward(lossm.backward())
        opt.step()

    for t in threads:
        bnkernels.set_num_threads(t)
        out[f"googlenet-step|bnkernels|{t}"] = statistics.median(timed_calls(bn_step, steps))
        if use_torch:
            torch.set_num_threads(t)
            out[f"googlenet-step|torch|{t}"] = statistics.median(timed_calls(torch_step,
                                                                             steps))
    return out


# ---------------------------------------------------------------------------
# The driver: load, rounds, sides, report
# ---------------------------------------------------------------------------

def _run_side(args, path, cores, blas_threads=None):
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    if blas_threads:
        env["BUSY_THREADS_BLAS"] = str(blas_threads)
    cmd = [sys.executable, os.path.abspath(__file__), "_side", args.what,
           "--threads", *map(str, args.threads), "--batch", str(args.batch),
           "--steps", str(args.steps)] + (["--torch"] if args.torch else [])
    res = subprocess.run(["taskset", "-c", ",".join(map(str, cores))] + cmd, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["calls", "step", "both", "_side"])
    p.add_argument("side_what", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="steps timed per round (median)")
    p.add_argument("--torch", action="store_true", help="add torchvision's GoogLeNet step")
    p.add_argument("--compare", metavar="DIR",
                   help="directory holding another build's bnkernels package (the 'before')")
    p.add_argument("--blas-threads", type=int, metavar="N",
                   help="add a side: this build with NumPy's BLAS limited to N threads "
                        "(threadpoolctl)")
    p.add_argument("--loads", nargs="+", default=["free", "loaded"],
                   choices=["free", "loaded"])
    p.add_argument("--json", metavar="FILE", help="write every round's times here")
    args = p.parse_args(argv)

    if args.what == "_side":
        what = args.side_what
        if os.environ.get("BUSY_THREADS_BLAS"):
            from threadpoolctl import threadpool_limits
            threadpool_limits(int(os.environ["BUSY_THREADS_BLAS"]), user_api="blas")
        out = {}
        if what in ("calls", "both"):
            out.update(side_calls(args.threads))
        if what in ("step", "both"):
            out.update(side_step(args.threads, args.batch, args.steps, args.torch))
        print(json.dumps(out))
        return

    cores = sorted(os.sched_getaffinity(0))
    sides = [("after", None, None)]
    if args.blas_threads:
        sides.append((f"after, BLAS {args.blas_threads}", None, args.blas_threads))
    if args.compare:
        sides.append(("before", args.compare, None))
    rounds = {}   # (load, side) -> list of dicts
    for r in range(args.rounds):
        for load in args.loads:
            with busy_loops(cores[1:] if load == "loaded" else []):
                order = sides if r % 2 == 0 else sides[::-1]
                for name, path, blas in order:
                    rounds.setdefault((load, name), []).append(
                        _run_side(args, path, cores, blas))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"machine: {cpu_model()}, {len(cores)} cores usable; "
          f"python {platform.python_version()}")
    print(f"rounds: {args.rounds}; median over rounds [min-max], milliseconds")
    keys = list(next(iter(rounds.values()))[0])
    names = [n for n, _, _ in sides]
    header = "| case | load | " + " | ".join(names) + " |"
    print(header)
    print("|" + "---|" * (2 + len(names)))
    for key in keys:
        for load in args.loads:
            cells = [span([d[key] * 1e3 for d in rounds[(load, name)]]) for name in names]
            print(f"| {key.replace('|', ' ')} | {load} | " + " | ".join(cells) + " |")
    if args.json:
        write_json(args.json, {f"{load}|{name}": runs for (load, name), runs in rounds.items()})


if __name__ == "__main__":
    main()
