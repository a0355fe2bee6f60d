"""Two builds of bnkernels side by side, rounds interleaved (docs/design/before-after.md):

    python benchmarks/before_after.py BEFORE_DIR AFTER_DIR [--rounds 7] [--null]
        [--shapes 1x8x4x4,8x32x14x14,32x64x56x56] [--threads 1,2]
        [--dtypes float32,float64] [--budget-ms 15] [--out-offset BYTES]
        [--activation relu] [--json PATH]

BEFORE_DIR and AFTER_DIR are source trees each built in place (``python setup.py
build_ext --inplace``): each is imported in its own worker process (its folder
first on sys.path), and the worker's ``bnkernels.__file__`` is checked to lie in
it. Every path is called through the public API as users call it: the layer
``BatchNorm2d`` (training forward, training forward+backward, eval forward, in
standard and Darknet numerics), ``batch_norm_forward`` / ``batch_norm_backward``
(NCHW and NHWC standard, NCHW Darknet), each timed as a block of calls;
with --activation relu, every path with its fused ReLU.

One round measures every case once on every side, the order of the sides
alternating from case to case and round to round, so that background load on
a shared machine lands on both builds. A measurement is the median of one
block of calls (as many as fit in --budget-ms, at least 3, after one untimed
call). The ratio of a case is after / before per round (below 1: after is
faster); the report gives its median over the rounds and its range, and
where each build's output landed modulo 64 bytes (NumPy aligns to 16; some
kernels run slower on outputs off a 64-byte boundary, see issue 24).

--null adds a third worker running BEFORE_DIR again: before' / before is what
two identical builds differ by in this run, the noise floor to read the ratios
against.
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
from _common import cpu_model, write_json  # noqa: E402

PATHS = (
    "BatchNorm2d train forward", "BatchNorm2d train forward+backward",
    "BatchNorm2d eval forward",
    "batch_norm_forward train", "batch_norm_forward eval", "batch_norm_backward",
    "NHWC batch_norm_forward train", "NHWC batch_norm_forward eval", "NHWC batch_norm_backward",
    "darknet batch_norm_forward train", "darknet batch_norm_forward eval",
    "darknet batch_norm_backward",
    "darknet BatchNorm2d train forward+backward",
)

# ---------------------------------------------------------------------------
# the worker: one per build, reading one case per line on stdin
# ---------------------------------------------------------------------------


def placed(np, like, offset):
    """An array like `like` starting `offset` bytes past a 64-byte boundary."""
    raw = np.empty(like.nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    return raw[start:start + like.nbytes].view(like.dtype).reshape(like.shape)


def make_call(bnkernels, np, path, shape, dtype, out_offset=None, activation=None):
    """A no-argument callable doing `path` once on fresh-from-seed tensors;
    with `out_offset` (bytes), the functions' outputs are out= arrays placed
    that far past a 64-byte boundary (the layers always allocate theirs);
    `activation` is passed to the layer or the forward."""
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    nhwc = path.startswith("NHWC")
    numerics = "darknet" if path.startswith("darknet") else "standard"
    layout = "NHWC" if nhwc else "NCHW"
    x = rng.standard_normal((n, h, w, c) if nhwc else shape).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    weight = (1 + 0.1 * rng.standard_normal(c)).astype(dtype)
    bias = (0.1 * rng.standard_normal(c)).astype(dtype)
    running_mean, running_var = np.zeros(c, dtype), np.ones(c, dtype)
    if "BatchNorm2d" in path:
        layer = bnkernels.BatchNorm2d(c, numerics=numerics, dtype=dtype,
                                      activation=activation)
        if "eval" in path:
            layer.eval()
            return lambda: layer(x)
        if path.endswith("forward+backward"):
            def forward_backward():
                layer(x)
                return layer.backward(dy)
            return forward_backward
        return lambda: layer(x)

    out = {} if out_offset is None else {"out": placed(np, x, out_offset)}

    def forward(training):
        return bnkernels.batch_norm_forward(x, weight, bias, running_mean, running_var,
                                            training=training, numerics=numerics,
                                            layout=layout, activation=activation, **out)
    if path.endswith("train"):
        return lambda: forward(True)
    if path.endswith("eval"):
        return lambda: forward(False)
    _, saved = forward(True)
    return lambda: bnkernels.batch_norm_backward(dy, saved, **out)


def worker(folder):
    sys.path.insert(0, folder)
    import gc
    import numpy as np
    import bnkernels
    here = os.path.realpath(bnkernels.__file__)
    if not here.startswith(os.path.realpath(folder) + os.sep):
        raise SystemExit(f"worker for {folder} imported {here}")
    print(json.dumps({"file": here, "version": bnkernels.__version__,
                      "openmp": bool(bnkernels.openmp_enabled())}), flush=True)
    calls = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["path"], tuple(request["shape"]), request["dtype"],
               request["out_offset"], request["activation"])
        if key not in calls:
            calls = {key: make_call(bnkernels, np, *key)}   # one case's tensors at a time
        call = calls[key]
        bnkernels.set_num_threads(request["threads"])
        budget = request["budget_ms"] * 1e-3
        gc.disable()
        start = time.perf_counter()
        result = call()   # untimed: warms the caches and the allocator
        output = result[0] if isinstance(result, tuple) else result
        # where NumPy put the output: the kernels' speed depends on its 64-byte placement
        placement = int(output.ctypes.data % 64)
        del result, output
        first = time.perf_counter() - start
        count = max(3, min(200, int(budget / max(first, 1e-7))))
        times = []
        for _ in range(count):
            start = time.perf_counter()
            result = call()
            times.append(time.perf_counter() - start)
            del result
        gc.enable()
        print(json.dumps({"median_s": statistics.median(times), "calls": count,
                          "output_mod_64": placement}), flush=True)


# ---------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------


class Side:
    def __init__(self, name, folder):
        self.name, self.folder = name, folder
        env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        env.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", folder],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=folder)
        self.info = json.loads(self.process.stdout.readline())

    def measure(self, case, budget_ms, out_offset=None, activation=None):
        path, shape, dtype, threads = case
        self.process.stdin.write(json.dumps({"path": path, "shape": shape, "dtype": dtype,
                                             "threads": threads, "out_offset": out_offset,
                                             "activation": activation,
                                             "budget_ms": budget_ms}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} worker died on {case}")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def shape_text(shape):
    return "x".join(map(str, shape))


def git_commit(folder):
    try:
        return subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def summarize(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shapes", default="1x8x4x4,8x32x14x14,32x64x56x56")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--budget-ms", type=float, default=15.0)
    parser.add_argument("--null", action="store_true",
                        help="a third worker on BEFORE again: the noise floor")
    parser.add_argument("--out-offset", type=int, metavar="BYTES",
                        help="pass the functions out= arrays this many bytes past a "
                             "64-byte boundary, the same in both builds (default: no "
                             "out=, NumPy places each output)")
    parser.add_argument("--activation", choices=["relu"],
                        help="every path with this fused activation (default: none)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    shapes = [[int(v) for v in s.split("x")] for s in args.shapes.split(",")]
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; known: {', '.join(PATHS)}")
    cases = [(path, shape, dtype, int(threads))
             for shape in shapes for dtype in args.dtypes.split(",")
             for threads in args.threads.split(",") for path in paths]
    sides = [Side("before", args.before), Side("after", args.after)]
    if args.null:
        sides.append(Side("before'", args.before))
    started = time.time()
    times = {side.name: {i: [] for i in range(len(cases))} for side in sides}
    placements = {side.name: {i: set() for i in range(len(cases))} for side in sides}
    try:
        for r in range(args.rounds):
            for i, case in enumerate(cases):
                shift = (r + i) % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    answer = side.measure(case, args.budget_ms, args.out_offset,
                                          args.activation)
                    times[side.name][i].append(answer["median_s"])
                    placements[side.name][i].add(answer["output_mod_64"])
            print(f"round {r + 1}/{args.rounds} done, {time.time() - started:.0f} s",
                  file=sys.stderr, flush=True)
    finally:
        for side in sides:
            side.close()

    rows = []
    for i, (path, shape, dtype, threads) in enumerate(cases):
        before, after = times["before"][i], times["after"][i]
        row = {"path": path, "shape": shape, "dtype": dtype, "threads": threads,
               "before_ms": 1e3 * statistics.median(before),
               "after_ms": 1e3 * statistics.median(after),
               "ratio": summarize([a / b for a, b in zip(after, before)]),
               "output_mod_64": {side.name: sorted(placements[side.name][i])
                                 for side in sides}}
        if args.null:
            row["null_ratio"] = summarize([a / b for a, b in zip(times["before'"][i],
                                                                  before)])
        rows.append(row)
    machine = {"cpu_model": cpu_model(), "logical_cores": os.cpu_count(),
               "load_average_at_end": os.getloadavg(), "platform": platform.platform(),
               "python": platform.python_version()}
    document = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]),
                "machine": machine,
                "builds": {side.name: dict(side.info, commit=git_commit(side.folder))
                           for side in sides},
                "rounds": args.rounds, "budget_ms": args.budget_ms,
                "out_offset": args.out_offset, "activation": args.activation,
                "statistic": "per round: median of one block of calls; ratio after/before "
                             "per round, then median and range over rounds",
                "results": rows, "wall_s": time.time() - started}
    print(format_report(document))
    if args.json:
        write_json(args.json, document)
    return 0


def format_report(document):
    rows = document["results"]
    null = "null_ratio" in rows[0]
    header = ["path", "shape", "dtype", "threads", "before ms", "after ms",
              "after/before (min-max)"] + (["before'/before (min-max)"] if null else []) \
        + ["y mod 64 before/after"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]

    def ratio(r):
        return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"

    for row in rows:
        cells = [row["path"], shape_text(row["shape"]), row["dtype"], str(row["threads"]),
                 f"{row['before_ms']:.4g}", f"{row['after_ms']:.4g}", ratio(row["ratio"])]
        if null:
            cells.append(ratio(row["null_ratio"]))
        places = row["output_mod_64"]
        cells.append(f"{','.join(map(str, places['before']))}/"
                     f"{','.join(map(str, places['after']))}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        sys.exit(main())
