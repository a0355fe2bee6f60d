"""Benchmark: ``python -m bnkernels bench`` -- bnkernels vs NumPy, PyTorch, onnxruntime.

What is measured
----------------
For every shape (N, C, H, W), dtype and thread count, four operations:

``training forward``  batch statistics, y, running statistics updated in place
``inference``         normalize with the running statistics (training=False)
``backward``          dx, dweight, dbias after a training forward
``forward+backward``  a training forward, then the backward of it

on four sides: bnkernels (one row group per ``--numerics``; standard numerics
are the headline), the pure-NumPy ``bnkernels.reference`` (standard numerics),
PyTorch's ``native_batch_norm`` / ``native_batch_norm_backward`` (standard
numerics; skipped when ``import torch`` fails) and onnxruntime's
BatchNormalization (one ONNX node on the CPU, inference and training forward
only; skipped when onnxruntime or onnx is not installed, and for NHWC). The
baselines are the same in every row group. ``--small`` swaps the default
shapes for batch-1 and small-model ones (SMALL_SHAPES).

How
---
* Time: ``time.perf_counter`` around one call; ``--repeat`` calls
  (``--reference-repeat`` for the slow NumPy reference, after one warm-up
  call), garbage collector off. bnkernels (each numerics) and PyTorch take
  short turns, so a burst of background load on a shared machine lands on
  both sides: one untimed call, then three timed calls, then the other
  side. The untimed call makes each side start from the cache state of its
  own calls: with turns of one call, bnkernels' streamed y left x in the L3
  cache for PyTorch's next call, while PyTorch's y pushed x out before
  bnkernels' (time_calls_interleaved). The table shows the median; --json
  keeps min too.
* Allocation policy, both reported, the same on every side:
  ``reused`` (the headline): preallocated outputs passed with ``out=``
  (bnkernels and the reference: ``out=``; PyTorch: ``native_batch_norm.out``
  and ``native_batch_norm_backward.out``; onnxruntime: io-binding, a call is
  ``run_with_iobinding`` alone); ``fresh``: every call allocates its outputs
  (PyTorch: ``torch.native_batch_norm`` and
  ``torch.ops.aten.native_batch_norm_backward``; onnxruntime: ``session.run``).
* Threads: ``bnkernels.set_num_threads(n)``, ``torch.set_num_threads(n)`` and
  the onnxruntime session's ``intra_op_num_threads = n``: like for like. The
  NumPy reference is single-threaded whatever n is ("NumPy 1t"); it is timed
  once per shape and dtype and its numbers are reused for every n, so in rows
  of n > 1 "vs NumPy 1t" sets n threads against one.
* Speed-up: baseline median / bnkernels median (above 1: bnkernels is faster).
* GB/s: the minimal traffic of the op / the bnkernels median. Minimal traffic,
  in passes over the tensor: training forward 3 (read x twice, write y),
  inference 2 (read x, write y), backward 5 (read dy and x twice, write dx),
  forward+backward 8.
* Bandwidth, measured in the same run for each thread count, STREAM-copy
  style: best time of ``np.copyto(dst, src)`` over two ``--bandwidth-mb``
  buffers (default: 4 times the machine's whole L3 cache from sysfs, at least
  256 MiB, at most an eighth of the memory), split across n Python threads
  (np.copyto releases the GIL); bandwidth = 2 * bytes / time. "% bw" is GB/s
  over that bandwidth.
* Per-call overhead (unless ``--no-overhead``): every public entry point on a
  (1, 8, 4, 4) float32 tensor at one thread, best of 5 blocks of 200
  back-to-back calls, in microseconds per call; PyTorch's and onnxruntime's
  calls of the same work alongside.
* The machine: CPU model, physical and logical cores, L3 (cpu0's and the whole
  machine's), printed first and kept in ``machine``.

--json PATH writes ``{"schema", "machine", "settings", "policies", "traffic",
"torch_functions", "bandwidth", "results", "overhead", "notes", "wall_s"}``;
each entry of ``results`` is one table row: ``shape, dtype, threads,
bnkernels_threads, op, numerics, policy, traffic_bytes, bnkernels, numpy,
torch, onnxruntime`` (each side ``{"median_ms", "min_ms", "repeat"}`` or null),
``numpy_threads, torch_threads, onnxruntime_threads, speedup_vs_numpy,
speedup_vs_torch, speedup_vs_onnxruntime, gbps, bandwidth_fraction``; each
entry of ``overhead`` ``{"entry", "us_per_call", "calls", "blocks",
"statistic"}``.
"""
import argparse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from types import ModuleType
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from bnkernels.tools.cli import ProgressBar, output_path_error, positive_int

OPS = ("training forward", "inference", "backward", "forward+backward")
POLICIES = ("reused", "fresh")
DEFAULT_STREAMING_THRESHOLD = 16 << 20   # bnkernels.h: BN_STREAM_DEFAULT_MIN_BYTES
TORCH_SIDE = "PyTorch"   # its key among the interleaved sides (numerics names are lower case)
TRAFFIC_PASSES = {"training forward": 3, "inference": 2, "backward": 5,
                  "forward+backward": 8}
DEFAULT_SHAPES = ((32, 64, 56, 56), (64, 256, 28, 28), (128, 1024, 7, 7), (8, 32, 14, 14))
# batch-1 serving and small-model shapes, in L1/L2: per-call overhead decides there
SMALL_SHAPES = ((1, 64, 56, 56), (1, 256, 7, 7), (8, 32, 14, 14), (1, 32, 28, 28))
ORT_SIDE = "onnxruntime"   # its key among the interleaved sides
ORT_OPS = ("training forward", "inference")   # BatchNormalization has no backward
# the bandwidth buffers are at least this many times the L3 cache (all of it)
BANDWIDTH_L3_MULTIPLE = 4
BANDWIDTH_FALLBACK_MB = 256
OVERHEAD_SHAPE = (1, 8, 4, 4)
OVERHEAD_CALLS, OVERHEAD_BLOCKS = 200, 5
DTYPES = ("float32", "float64")
STANDARD_EPS, STANDARD_MOMENTUM = 1e-5, 0.1
BANDWIDTH_REPEAT = 10
SCHEMA = "bnkernels-bench/2"

POLICY_TEXT = {
    "reused": "outputs preallocated once and passed with out= on every side "
              "(bnkernels: out= for y and dx; NumPy reference: out=, but it allocates "
              "its temporaries anyway; PyTorch: native_batch_norm.out, "
              "native_batch_norm_backward.out)",
    "fresh": "every call allocates its outputs, on every side",
}
TORCH_FUNCTIONS = {
    "reused": {
        "training forward": "torch.ops.aten.native_batch_norm.out(x, w, b, rm, rv, True, "
                            "momentum, eps, out=y, save_mean=, save_invstd=)",
        "inference": "torch.ops.aten.native_batch_norm.out(..., False, ...)",
        "backward": "torch.ops.aten.native_batch_norm_backward.out(dy, x, w, rm, rv, "
                    "save_mean, save_invstd, True, eps, [True]*3, out0=dx, out1=, out2=)",
    },
    "fresh": {
        "training forward": "torch.native_batch_norm(x, w, b, rm, rv, True, momentum, eps)",
        "inference": "torch.native_batch_norm(x, w, b, rm, rv, False, momentum, eps)",
        "backward": "torch.ops.aten.native_batch_norm_backward(dy, x, w, rm, rv, "
                    "save_mean, save_invstd, True, eps, [True]*3)",
    },
}


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------

def _comma_list(text, option):
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}; give a comma-separated "
                                         f"list, e.g. {option}")
    return items


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    """``"32x64x56x56,8x32x14x14"`` -> ``[(32, 64, 56, 56), (8, 32, 14, 14)]``."""
    shapes = []
    for item in _comma_list(text, "32x64x56x56,8x32x14x14"):
        parts = item.lower().split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if len(shape) != 4 or min(shape) < 1:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not NxCxHxW with four positive integers, e.g. 32x64x56x56")
        if shape[0] * shape[2] * shape[3] < 2:
            raise argparse.ArgumentTypeError(
                f"{item!r} has one value per channel; training needs N*H*W >= 2")
        shapes.append(shape)
    return shapes


def _one_of(text, allowed, example):
    """A comma-separated list of names from `allowed`, duplicates dropped."""
    items = _comma_list(text, example)
    for item in items:
        if item not in allowed:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not one of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def parse_dtypes(text: str) -> list[str]:
    return _one_of(text, DTYPES, "float32,float64")


def max_threads() -> int:
    """The most threads bench runs with: 4 per logical core, at least 64."""
    return max(64, 4 * (os.cpu_count() or 1))


def parse_threads(text: str) -> list[int]:
    threads = []
    for item in _comma_list(text, "1,2"):
        number = positive_int(item)
        if number > max_threads():
            raise argparse.ArgumentTypeError(
                f"{item!r} is more threads than bench runs with: at most {max_threads()} "
                f"(4 per logical core, at least 64; this machine has {os.cpu_count()} "
                "logical cores)")
        threads.append(number)
    return list(dict.fromkeys(threads))


def parse_numerics(text: str) -> list[str]:
    from bnkernels import NUMERICS
    return _one_of(text, NUMERICS, "standard,darknet")


def parse_layout(text: str) -> str:
    name = text.strip().upper()
    if name not in ("NCHW", "NHWC"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a layout: NCHW or NHWC")
    return name


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def memory_error(args: argparse.Namespace) -> str | None:
    """Why the buffers of a bench run cannot fit in this machine's memory
    (None: they may)."""
    total = memory_bytes()
    if not total:
        return None
    have = f"more than this machine's {total / 2**30:.1f} GiB of memory"
    if args.bandwidth_mb is not None and 2 * args.bandwidth_mb * 2**20 > total:
        return (f"--bandwidth-mb {args.bandwidth_mb}: the copy needs two buffers of "
                f"{args.bandwidth_mb} MiB, {have}")
    for dtype in args.dtype:
        for shape in args.shapes:
            need = 4 * math.prod(shape) * np.dtype(dtype).itemsize
            if need > total:
                return (f"--shapes {shape_text(shape)}: x, dy, y and dx in {dtype} need "
                        f"{need / 2**30:.1f} GiB, {have}")
    return None


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``python -m bnkernels bench``."""
    shapes = parser.add_mutually_exclusive_group()
    shapes.add_argument("--shapes", type=parse_shapes,
                        default=[list(s) for s in DEFAULT_SHAPES], metavar="NxCxHxW,...",
                        help="comma-separated shapes (default: "
                             + ",".join("x".join(map(str, s)) for s in DEFAULT_SHAPES) + ")")
    shapes.add_argument("--small", dest="shapes", action="store_const",
                        const=[list(s) for s in SMALL_SHAPES],
                        help="the small and batch-1 shapes instead: "
                             + ",".join("x".join(map(str, s)) for s in SMALL_SHAPES))
    parser.add_argument("--dtype", type=parse_dtypes, default=["float32"],
                        metavar="DTYPE,...", help="float32 and/or float64 (default: float32)")
    parser.add_argument("--threads", type=parse_threads, default=[1], metavar="N,...",
                        help="thread counts for bnkernels and PyTorch (default: 1)")
    parser.add_argument("--numerics", type=parse_numerics, default=["standard", "darknet"],
                        metavar="NAME,...",
                        help="bnkernels numerics, one row group each "
                             "(default: standard,darknet)")
    parser.add_argument("--layout", type=parse_layout, default="NCHW", metavar="LAYOUT",
                        help="NCHW (default) or NHWC: channels last on every side "
                             "(PyTorch channels_last; standard numerics only)")
    parser.add_argument("--repeat", type=positive_int, default=40, metavar="N",
                        help="timed calls per measurement for bnkernels and PyTorch "
                             "(default: 40)")
    parser.add_argument("--reference-repeat", type=positive_int, default=5, metavar="N",
                        help="timed calls per measurement for the slow NumPy reference "
                             "(default: 5)")
    parser.add_argument("--bandwidth-mb", type=positive_int, default=None, metavar="MIB",
                        help="size of each of the two buffers of the bandwidth copy "
                             f"(default: {BANDWIDTH_L3_MULTIPLE} times the whole L3 cache, "
                             f"at least {BANDWIDTH_FALLBACK_MB}; {BANDWIDTH_FALLBACK_MB} "
                             "where the L3 size is unknown)")
    parser.add_argument("--json", metavar="PATH",
                        help="write every result and a description of the machine")
    parser.add_argument("--plot", metavar="PATH",
                        help="write a PNG bar chart of the speed-ups (needs matplotlib)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-numpy", action="store_true",
                        help="leave the NumPy reference out")
    parser.add_argument("--no-onnxruntime", action="store_true",
                        help="leave onnxruntime out (it is optional: skipped when "
                             "not installed)")
    parser.add_argument("--no-overhead", action="store_true",
                        help="skip the per-call overhead of the Python API")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bnkernels.tools.bench [options]``; the same as ``python -m bnkernels bench``."""
    parser = argparse.ArgumentParser(prog="python -m bnkernels bench",
                                     description=__doc__.splitlines()[0])
    return run(add_arguments(parser).parse_args(argv))


# ---------------------------------------------------------------------------
# progress (stderr): a bar redrawn in place on a terminal, plain lines otherwise
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# timing and bandwidth
# ---------------------------------------------------------------------------

@dataclass
class Timing:
    times: list   # seconds, one per timed call

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3

    @property
    def min_ms(self) -> float:
        return min(self.times) * 1e3

    def as_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "min_ms": self.min_ms,
                "repeat": len(self.times)}


def time_call(fn: Callable[[], object], repeat: int) -> Timing:
    """One warm-up call, then ``repeat`` calls each timed alone."""
    return time_calls_interleaved({"only": fn}, repeat)["only"]


# timed calls per turn of a side, after one untimed call (see time_calls_interleaved)
TURN_CALLS = 3


def time_calls_interleaved(fns: dict[str, Callable[[], object]], repeat: int,
                           turn_calls: int = TURN_CALLS) -> dict[str, Timing]:
    """{name: Timing} of ``repeat`` calls of each function, each call timed
    alone. The sides take turns: one untimed call, then ``turn_calls`` timed
    calls, then the next side. Short turns put every side under the same
    background load (on a shared machine a burst of it would otherwise land
    on whichever side ran during it); the untimed call lets each side time
    the cache state its own calls leave, not the one the other side's last
    call left (one side's output evicting the input from L3 would slow the
    other side's next call). One function: one warm-up call, then ``repeat``
    calls."""
    turn = repeat if len(fns) == 1 else turn_calls
    times: dict[str, list[float]] = {name: [] for name in fns}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while any(len(t) < repeat for t in times.values()):
            for name, fn in fns.items():
                fn()  # untimed: this side's warm-up
                for _ in range(min(turn, repeat - len(times[name]))):
                    start = time.perf_counter()
                    result = fn()
                    times[name].append(time.perf_counter() - start)
                    del result   # freed outside the timing
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(t) for name, t in times.items()}


def measure_bandwidth(megabytes: int, threads: int, repeat: int = BANDWIDTH_REPEAT) -> float:
    """STREAM-copy bandwidth in bytes/s: best time of np.copyto over two buffers
    of ``megabytes`` MiB, split across ``threads`` Python threads; 2 * bytes / time."""
    count = megabytes * 2**20 // 8
    src = np.ones(count)            # np.ones and np.zeros(...)[...] touch every page,
    dst = np.zeros(count)           # so no page fault is timed
    dst[...] = 0
    bounds = np.linspace(0, count, threads + 1).astype(int)
    pieces = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(threads) as pool:
        def copy():
            if threads == 1:
                np.copyto(dst, src)
            else:
                for future in [pool.submit(np.copyto, d, s) for d, s in pieces]:
                    future.result()
        best = min(time_call(copy, repeat).times)
    return 2 * src.nbytes / best


# ---------------------------------------------------------------------------
# what is called
# ---------------------------------------------------------------------------

@dataclass
class Tensors:
    """The inputs of one (shape, dtype), shared by every side, and the
    preallocated outputs of the bnkernels and NumPy sides."""
    x: np.ndarray
    dy: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    layout: str = "NCHW"   # "NHWC": the arrays are (N, H, W, C)

    def running_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Fresh running_mean (0) and running_var (1): every side updates its own."""
        c = self.x.shape[3 if self.layout == "NHWC" else 1]
        return np.zeros(c, self.x.dtype), np.ones(c, self.x.dtype)


def make_tensors(shape: Sequence[int], dtype: npt.DTypeLike, *,
                 rng: int | np.random.Generator | None = 0, layout: str = "NCHW") -> Tensors:
    """The tensors of an (N, C, H, W) shape, stored (N, H, W, C) for NHWC."""
    rng = np.random.default_rng(rng)
    dtype = np.dtype(dtype)
    c = shape[1]
    if layout == "NHWC":
        shape = (shape[0], shape[2], shape[3], shape[1])
    x = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    dy = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    weight = (1 + 0.1 * rng.standard_normal(c)).astype(dtype)
    bias = (0.1 * rng.standard_normal(c)).astype(dtype)
    y, dx = np.ones_like(x), np.ones_like(x)   # touched: no page fault when reused
    return Tensors(x, dy, weight, bias, y, dx, layout)


def numpy_api_calls(module: ModuleType, tensors: Tensors, numerics: str, policy: str
                    ) -> dict[str, Callable[[], object]]:
    """``{op: callable}`` for ``bnkernels`` or ``bnkernels.reference`` (same API)."""
    t = tensors
    running_mean, running_var = t.running_stats()
    y_out = t.y if policy == "reused" else None
    dx_out = t.dx if policy == "reused" else None

    def forward(training=True):
        return module.batch_norm_forward(t.x, t.weight, t.bias, running_mean, running_var,
                                         training=training, numerics=numerics, out=y_out,
                                         layout=t.layout)

    _, saved = forward()

    def backward(saved=saved):
        return module.batch_norm_backward(t.dy, saved, out=dx_out)

    def forward_backward():
        _, saved = forward()
        return backward(saved)

    return {"training forward": forward, "inference": lambda: forward(False),
            "backward": backward, "forward+backward": forward_backward}


def torch_calls(torch: ModuleType, tensors: Tensors, policy: str
                ) -> dict[str, Callable[[], object]]:
    """``{op: callable}`` for PyTorch's CPU batch norm (standard numerics).

    The x, dy, weight and bias tensors share the NumPy arrays' memory; NHWC
    arrays become channels_last (N, C, H, W) tensors, and the outputs follow.
    """
    aten = torch.ops.aten
    x, dy = torch.from_numpy(tensors.x), torch.from_numpy(tensors.dy)
    if tensors.layout == "NHWC":
        x, dy = x.permute(0, 3, 1, 2), dy.permute(0, 3, 1, 2)
    weight, bias = torch.from_numpy(tensors.weight), torch.from_numpy(tensors.bias)
    running_mean, running_var = map(torch.from_numpy, tensors.running_stats())
    eps, momentum, mask = STANDARD_EPS, STANDARD_MOMENTUM, [True, True, True]
    _, save_mean, save_invstd = torch.native_batch_norm(
        x, weight, bias, running_mean, running_var, True, momentum, eps)

    if policy == "fresh":
        def forward(training=True):
            return torch.native_batch_norm(x, weight, bias, running_mean, running_var,
                                           training, momentum, eps)

        def backward(save_mean=save_mean, save_invstd=save_invstd):
            return aten.native_batch_norm_backward(
                dy, x, weight, running_mean, running_var, save_mean, save_invstd,
                True, eps, mask)
    else:
        y = torch.empty_like(x)
        dx, dweight, dbias = torch.empty_like(x), torch.empty_like(weight), \
            torch.empty_like(bias)
        # the saved statistics are (C,) in training and empty in inference: size
        # the buffers as a fresh call does, so that .out resizes (and warns) never
        saved_out = {}
        for training in (True, False):
            _, mean, invstd = torch.native_batch_norm(
                x, weight, bias, running_mean.clone(), running_var.clone(), training,
                momentum, eps)
            saved_out[training] = (torch.empty_like(mean), torch.empty_like(invstd))

        def forward(training=True):
            mean_out, invstd_out = saved_out[training]
            return aten.native_batch_norm.out(
                x, weight, bias, running_mean, running_var, training, momentum, eps,
                out=y, save_mean=mean_out, save_invstd=invstd_out)

        def backward(save_mean=save_mean, save_invstd=save_invstd):
            return aten.native_batch_norm_backward.out(
                dy, x, weight, running_mean, running_var, save_mean, save_invstd,
                True, eps, mask, out0=dx, out1=dweight, out2=dbias)

    def forward_backward():
        _, save_mean, save_invstd = forward()
        return backward(save_mean, save_invstd)

    return {"training forward": forward, "inference": lambda: forward(False),
            "backward": backward, "forward+backward": forward_backward}


def ort_session(ort: Any, onnx: Any, shape: Sequence[int], dtype: npt.DTypeLike,
                training: bool, threads: int) -> Any:
    """An onnxruntime CPU session of one BatchNormalization node (opset 15):
    inputs x, scale, B, mean, var; outputs y, and in training mode the
    updated running_mean and running_var (ONNX momentum = 1 - PyTorch's)."""
    from onnx import TensorProto, helper
    element = TensorProto.FLOAT if np.dtype(dtype) == np.float32 else TensorProto.DOUBLE
    c = shape[1]
    inputs = [helper.make_tensor_value_info(name, element, dims) for name, dims in
              (("x", list(shape)), ("scale", [c]), ("B", [c]), ("mean", [c]), ("var", [c]))]
    outputs = ["y"] + (["running_mean", "running_var"] if training else [])
    node = helper.make_node("BatchNormalization", ["x", "scale", "B", "mean", "var"],
                            outputs, epsilon=STANDARD_EPS, momentum=1 - STANDARD_MOMENTUM,
                            training_mode=int(training))
    graph = helper.make_graph(
        [node], "batch_norm", inputs,
        [helper.make_tensor_value_info(name, element, list(shape) if name == "y" else [c])
         for name in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def ort_calls(ort: Any, onnx: Any, tensors: "Tensors", policy: str,
              threads: int) -> dict[str, Callable[[], Any]]:
    """``{op: callable}`` for onnxruntime's BatchNormalization (standard
    numerics, NCHW): inference and, in training mode, the forward (y and the
    running statistics; no saved statistics, as ONNX has no backward node).

    reused: io-binding, the inputs bound to the NumPy arrays' memory and y
    (and the running statistics) to preallocated arrays, so that a call is
    ``run_with_iobinding`` alone; fresh: ``session.run`` with a feed dict,
    which allocates the outputs."""
    t = tensors
    running_mean, running_var = t.running_stats()
    feeds = {"x": t.x, "scale": t.weight, "B": t.bias, "mean": running_mean,
             "var": running_var}
    calls: dict[str, Callable[[], Any]] = {}
    for op, training in (("training forward", True), ("inference", False)):
        session = ort_session(ort, onnx, t.x.shape, t.x.dtype, training, threads)
        if policy == "fresh":
            def run(session: Any = session) -> Any:
                return session.run(None, feeds)
            calls[op] = run
            continue
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        outputs = {"y": t.y}
        if training:
            outputs["running_mean"] = np.empty_like(running_mean)
            outputs["running_var"] = np.empty_like(running_var)
        for name, array in outputs.items():
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))

        def call(session=session, binding=binding, y=t.y):
            session.run_with_iobinding(binding)
            return y
        calls[op] = call
    return calls


def import_onnxruntime(args: argparse.Namespace, notes: list[str]) -> tuple[Any, Any] | None:
    """(onnxruntime, onnx), or None where left out, not installed or not
    usable for this run (NHWC: its BatchNormalization is NCHW only)."""
    if args.no_onnxruntime:
        notes.append("onnxruntime left out (--no-onnxruntime)")
        return None
    if args.layout == "NHWC":
        notes.append("onnxruntime columns skipped: its BatchNormalization is NCHW only")
        return None
    try:
        import onnx
        import onnxruntime
    except Exception as error:   # ImportError, or a broken install's OSError
        notes.append(f"onnxruntime columns skipped: import failed ({error}); "
                     "pip install onnxruntime onnx")
        return None
    return onnxruntime, onnx


# ---------------------------------------------------------------------------
# per-call overhead of the Python API
# ---------------------------------------------------------------------------

def overhead_calls(torch: ModuleType | None = None, ort_modules: "tuple[Any, Any] | None" = None,
                   dtype: str = "float32") -> dict[str, Callable[[], Any]]:
    """``{entry point: callable}`` on an OVERHEAD_SHAPE tensor: every public
    entry point a training or inference step goes through, with outputs
    reused (out=, reuse_buffers) and fresh; PyTorch's and onnxruntime's calls
    of the same work alongside, where installed."""
    import bnkernels
    t = make_tensors(OVERHEAD_SHAPE, dtype)
    rm, rv = t.running_stats()
    fwd = bnkernels.batch_norm_forward
    _, saved = fwd(t.x, t.weight, t.bias, rm, rv)
    _, saved_dk = fwd(t.x, t.weight, t.bias, rm, rv, numerics="darknet")
    nhwc = np.ascontiguousarray(t.x.transpose(0, 2, 3, 1))
    _, saved_nhwc = fwd(nhwc, t.weight, t.bias, rm, rv, layout="NHWC")
    c = OVERHEAD_SHAPE[1]
    layer = bnkernels.BatchNorm2d(c, dtype=dtype)
    layer_reused = bnkernels.BatchNorm2d(c, dtype=dtype, reuse_buffers=True)
    layer_eval = bnkernels.BatchNorm2d(c, dtype=dtype).eval()

    def layer_step(layer=layer):
        layer(t.x)
        return layer.backward(t.dy)

    calls = {
        "batch_norm_forward training": lambda: fwd(t.x, t.weight, t.bias, rm, rv),
        "batch_norm_forward training, out=": lambda: fwd(t.x, t.weight, t.bias, rm, rv,
                                                         out=t.y),
        "batch_norm_forward inference": lambda: fwd(t.x, t.weight, t.bias, rm, rv,
                                                    training=False),
        "batch_norm_forward inference, out=": lambda: fwd(t.x, t.weight, t.bias, rm, rv,
                                                          training=False, out=t.y),
        "batch_norm_backward": lambda: bnkernels.batch_norm_backward(t.dy, saved),
        "batch_norm_backward, out=": lambda: bnkernels.batch_norm_backward(t.dy, saved,
                                                                           out=t.dx),
        "batch_norm_forward NHWC training": lambda: fwd(nhwc, t.weight, t.bias, rm, rv,
                                                        layout="NHWC"),
        "batch_norm_backward NHWC": lambda: bnkernels.batch_norm_backward(nhwc, saved_nhwc),
        "batch_norm_forward darknet training": lambda: fwd(t.x, t.weight, t.bias, rm, rv,
                                                           numerics="darknet"),
        "batch_norm_forward darknet inference": lambda: fwd(
            t.x, t.weight, t.bias, rm, rv, numerics="darknet", training=False),
        "batch_norm_backward darknet": lambda: bnkernels.batch_norm_backward(t.dy, saved_dk),
        "BatchNorm2d training forward": lambda: layer(t.x),
        "BatchNorm2d eval forward": lambda: layer_eval(t.x),
        "BatchNorm2d forward+backward": layer_step,
        "BatchNorm2d forward+backward, reuse_buffers": lambda: layer_step(layer_reused),
    }
    if torch is not None:
        torch_ops = torch_calls(torch, t, "reused")
        calls["PyTorch native_batch_norm.out training"] = torch_ops["training forward"]
        calls["PyTorch native_batch_norm.out inference"] = torch_ops["inference"]
        calls["PyTorch native_batch_norm_backward.out"] = torch_ops["backward"]
    if ort_modules is not None:
        ort_ops = ort_calls(*ort_modules, t, "reused", 1)
        calls["onnxruntime io-binding training"] = ort_ops["training forward"]
        calls["onnxruntime io-binding inference"] = ort_ops["inference"]
        ort_fresh = ort_calls(*ort_modules, t, "fresh", 1)
        calls["onnxruntime run() inference"] = ort_fresh["inference"]
    return calls


def measure_overhead(torch: ModuleType | None = None, ort_modules: "tuple[Any, Any] | None" = None,
                     calls: int = OVERHEAD_CALLS,
                     blocks: int = OVERHEAD_BLOCKS) -> list[dict[str, Any]]:
    """[{"entry", "us_per_call", ...}]: the best of ``blocks`` blocks of
    ``calls`` back-to-back calls, per call, at 1 thread, on OVERHEAD_SHAPE."""
    entries = []
    for name, fn in overhead_calls(torch, ort_modules).items():
        fn()
        best = math.inf
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(blocks):
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                best = min(best, (time.perf_counter() - start) / calls)
        finally:
            if gc_was_enabled:
                gc.enable()
        entries.append({"entry": name, "us_per_call": best * 1e6, "calls": calls,
                        "blocks": blocks, "statistic": "best block"})
    return entries


# ---------------------------------------------------------------------------
# threads and the machine
# ---------------------------------------------------------------------------

def bnkernels_threads() -> int | None:
    """bnkernels' thread count, or None where this build has no thread control."""
    import bnkernels
    get = getattr(bnkernels, "get_num_threads", None)
    return get() if get is not None else None


def set_threads(n: int | None, torch: ModuleType | None) -> int | None:
    """Set bnkernels' and PyTorch's thread counts; return bnkernels' own."""
    import bnkernels
    setter = getattr(bnkernels, "set_num_threads", None)
    if setter is not None:
        setter(n)
    if torch is not None:
        torch.set_num_threads(n)
    return bnkernels_threads()


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def cpu_family_and_model() -> tuple[int | None, int | None]:
    """(cpu family, model) numbers of the first CPU from /proc/cpuinfo, or
    (None, None): on AMD, family 25 is Zen 3 and Zen 4, 26 is Zen 5."""
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("cpu family", "model") and key not in found:
                    found[key] = int(value.strip())
                if not line.strip() and found:
                    break
    except (OSError, ValueError):
        pass
    return found.get("cpu family"), found.get("model")


def cache_bytes(level: int, kind: str = "Unified") -> int | None:
    """Size of cpu0's cache of that level and kind (Data, Instruction,
    Unified) from sysfs, or None."""
    folder = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(folder)):
            if not index.startswith("index"):
                continue
            with open(os.path.join(folder, index, "level"), encoding="ascii") as f:
                if f.read().strip() != str(level):
                    continue
            with open(os.path.join(folder, index, "type"), encoding="ascii") as f:
                if f.read().strip() != kind:
                    continue
            with open(os.path.join(folder, index, "size"), encoding="ascii") as f:
                size = f.read().strip().upper()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
            return int(size.rstrip("KMG")) * scale
    except (OSError, ValueError):
        pass
    return None


def l3_cache_bytes() -> int | None:
    """Size of the CPU's L3 cache (of cpu0) from sysfs, or None."""
    return cache_bytes(3)


def _size_bytes(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def l3_total_bytes() -> int | None:
    """All the L3 cache of the machine from sysfs: each distinct L3 (by the
    CPUs sharing it) counted once; None where sysfs does not say."""
    root = "/sys/devices/system/cpu"
    seen = {}
    try:
        cpus = [d for d in os.listdir(root) if d.startswith("cpu") and d[3:].isdigit()]
        for cpu in cpus:
            folder = os.path.join(root, cpu, "cache")
            if not os.path.isdir(folder):
                continue
            for index in os.listdir(folder):
                if not index.startswith("index"):
                    continue

                def read(name):
                    with open(os.path.join(folder, index, name), encoding="ascii") as f:
                        return f.read().strip()
                if read("level") != "3":
                    continue
                seen[read("shared_cpu_list")] = _size_bytes(read("size"))
    except (OSError, ValueError):
        return None
    return sum(seen.values()) or None


def bandwidth_buffer_mb(asked: int | None) -> tuple[int, str]:
    """(MiB per buffer, how it was chosen) for the bandwidth copy: `asked`, or
    BANDWIDTH_L3_MULTIPLE times the whole L3 cache (at least
    BANDWIDTH_FALLBACK_MB), capped at an eighth of the memory."""
    if asked is not None:
        return asked, f"{asked} MiB per buffer (--bandwidth-mb)"
    l3 = l3_total_bytes()
    if l3 is None:
        return BANDWIDTH_FALLBACK_MB, (f"{BANDWIDTH_FALLBACK_MB} MiB per buffer (the L3 "
                                       "size is unknown here)")
    size = max(BANDWIDTH_FALLBACK_MB, -(-BANDWIDTH_L3_MULTIPLE * l3 // 2**20))
    basis = (f"{size} MiB per buffer, at least {BANDWIDTH_L3_MULTIPLE} x the "
             f"{l3 / 2**20:g} MiB of L3 cache")
    total = memory_bytes()
    if total and 8 * size * 2**20 > total:
        size = max(1, total // 8 // 2**20)
        basis = (f"{size} MiB per buffer: an eighth of the memory, under "
                 f"{BANDWIDTH_L3_MULTIPLE} x the {l3 / 2**20:g} MiB of L3 cache")
    return size, basis


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo, or None."""
    cores, package = set(), None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "physical id":
                    package = value.strip()
                elif key == "core id":
                    cores.add((package, value.strip()))
    except OSError:
        return None
    return len(cores) or None


def describe_machine(torch: ModuleType | None) -> dict[str, Any]:
    import bnkernels
    openmp = getattr(bnkernels, "openmp_enabled", None)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    family, model = cpu_family_and_model()
    return {
        "cpu_model": cpu_model(),
        "cpu_family": family,
        "cpu_model_number": model,
        "logical_cores": os.cpu_count(),
        "l1d_cache_bytes": cache_bytes(1, "Data"),
        "l3_cache_bytes": l3_cache_bytes(),
        "l3_total_bytes": l3_total_bytes(),
        "physical_cores": physical_cores(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "bnkernels": bnkernels.__version__,
        "bnkernels_openmp": None if openmp is None else bool(openmp()),
        "bnkernels_default_threads": bnkernels_threads(),
    }


def import_torch(notes: list[str]) -> ModuleType | None:
    try:
        import torch
    except Exception as error:   # ImportError, or a broken install's OSError
        notes.append(f"PyTorch columns skipped: import torch failed ({error})")
        return None
    return torch


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------

def shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def run_suite(args: argparse.Namespace, torch: ModuleType | None, progress: ProgressBar,
              ort_modules: "tuple[Any, Any] | None" = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure everything; return (bandwidth entries, result rows)."""
    import bnkernels
    from bnkernels import reference

    cases = [(dtype, tuple(shape)) for dtype in args.dtype for shape in args.shapes]
    sides_per_policy = len(args.numerics) + (torch is not None)
    progress.total = max(1, len(args.threads) * (1 + len(cases) * len(POLICIES) * len(OPS)
                                                 * sides_per_policy
                                                 + (ort_modules is not None) * len(cases)
                                                 * len(POLICIES) * len(ORT_OPS))
                         + (not args.no_numpy) * len(cases) * len(POLICIES) * len(OPS))
    numpy_timings = {}   # (dtype, shape, policy, op) -> Timing, the same for every n
    bandwidth, rows = [], []
    for n in args.threads:
        progress.show(f"bandwidth, {n} thread{'s' * (n > 1)}")
        effective = set_threads(n, torch)
        gbps = measure_bandwidth(args.bandwidth_mb, n) / 1e9
        progress.advance()
        bandwidth.append({"threads": n, "gbps": gbps, "buffer_mib": args.bandwidth_mb,
                          "repeat": BANDWIDTH_REPEAT, "statistic": "best",
                          "method": f"np.copyto of {args.bandwidth_mb} MiB split across "
                                    f"{n} Python thread(s); 2 * bytes / best time"})
        for dtype, shape in cases:
            tensors = make_tensors(shape, dtype, layout=args.layout)
            label = f"{shape_text(shape)} {dtype} t{n}"
            for policy in POLICIES:
                sides = {numerics: numpy_api_calls(bnkernels, tensors, numerics, policy)
                         for numerics in args.numerics}
                torch_ops = None if torch is None else torch_calls(torch, tensors, policy)
                ort_ops = None if ort_modules is None else ort_calls(*ort_modules, tensors,
                                                                     policy, n)
                numpy_ops = None
                if not args.no_numpy and (dtype, shape, policy, OPS[0]) not in numpy_timings:
                    numpy_ops = numpy_api_calls(reference, tensors, "standard", policy)
                for op in OPS:
                    if numpy_ops is not None:
                        progress.show(f"{label} NumPy reference {op} {policy}")
                        numpy_timings[dtype, shape, policy, op] = time_call(
                            numpy_ops[op], args.reference_repeat)
                        progress.advance()
                    # bnkernels (each numerics) and PyTorch take short turns
                    fns = {numerics: calls[op] for numerics, calls in sides.items()}
                    if torch_ops is not None:
                        fns[TORCH_SIDE] = torch_ops[op]
                    if ort_ops is not None and op in ort_ops:
                        fns[ORT_SIDE] = ort_ops[op]
                    progress.show(f"{label} {' / '.join(fns)} {op} {policy}")
                    timings = time_calls_interleaved(fns, args.repeat)
                    progress.advance(len(fns))
                    for numerics in sides:
                        rows.append(make_row(shape, dtype, n, effective, op, numerics,
                                             policy, timings[numerics],
                                             numpy_timings.get((dtype, shape, policy, op)),
                                             timings.get(TORCH_SIDE), gbps, args.layout,
                                             timings.get(ORT_SIDE),
                                             None if ort_ops is None else n))
                del sides, torch_ops, numpy_ops, ort_ops
    return bandwidth, rows


def make_row(shape: Sequence[int], dtype: npt.DTypeLike, threads: int,
             effective_threads: int | None, op: str, numerics: str, policy: str, timing: Timing,
             numpy_timing: Timing | None, torch_timing: Timing | None, bandwidth_gbps: float,
             layout: str = "NCHW", ort_timing: Timing | None = None,
             ort_threads: int | None = None) -> dict[str, Any]:
    traffic = TRAFFIC_PASSES[op] * math.prod(shape) * np.dtype(dtype).itemsize
    gbps = traffic / (timing.median_ms * 1e-3) / 1e9

    def speedup(baseline):
        return None if baseline is None else baseline.median_ms / timing.median_ms

    return {"shape": list(shape), "dtype": dtype, "threads": threads,
            "bnkernels_threads": effective_threads, "op": op, "numerics": numerics,
            "policy": policy, "layout": layout, "traffic_bytes": traffic,
            "bnkernels": timing.as_dict(),
            "numpy": None if numpy_timing is None else numpy_timing.as_dict(),
            "torch": None if torch_timing is None else torch_timing.as_dict(),
            "onnxruntime": None if ort_timing is None else ort_timing.as_dict(),
            "numpy_threads": None if numpy_timing is None else 1,
            "torch_threads": None if torch_timing is None else threads,
            "onnxruntime_threads": None if ort_timing is None else ort_threads,
            "speedup_vs_numpy": speedup(numpy_timing),
            "speedup_vs_torch": speedup(torch_timing),
            "speedup_vs_onnxruntime": speedup(ort_timing),
            "gbps": gbps, "bandwidth_fraction": gbps / bandwidth_gbps}


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

COLUMNS = ("shape", "dtype", "threads", "op", "policy", "bnkernels ms", "NumPy 1t ms",
           "PyTorch ms", "vs NumPy 1t", "vs PyTorch", "GB/s", "% bw", "ORT ms", "vs ORT")


def _ms(value):
    if value is None:
        return "-"
    for limit, digits in ((100, 0), (10, 1), (1, 2), (0.1, 3)):
        if value >= limit:
            return f"{value:.{digits}f}"
    return f"{value:.4f}"


def table_cells(row: dict[str, Any]) -> list[str]:
    def side(name):
        return None if row[name] is None else row[name]["median_ms"]

    def times(speedup):
        return "-" if speedup is None else f"{speedup:.2f}x"

    return [shape_text(row["shape"]), row["dtype"], str(row["threads"]), row["op"],
            row["policy"], _ms(side("bnkernels")), _ms(side("numpy")), _ms(side("torch")),
            times(row["speedup_vs_numpy"]), times(row["speedup_vs_torch"]),
            f"{row['gbps']:.1f}", f"{100 * row['bandwidth_fraction']:.0f}%",
            _ms(side("onnxruntime")), times(row["speedup_vs_onnxruntime"])]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, padded so that it also reads as plain text."""
    cells = [list(COLUMNS)] + [table_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    left = {0, 1, 3, 4}

    def line(values):
        return "| " + " | ".join(v.ljust(w) if i in left else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(values, widths))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i not in left else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(values) for values in cells[1:]])


def report_notes(args: argparse.Namespace, torch: ModuleType | None,
                 bandwidth: list[dict[str, Any]], rows: list[dict[str, Any]],
                 extra_notes: list[str], ort_modules: "tuple[Any, Any] | None" = None) -> list[str]:
    numpy_policy = "" if args.no_numpy else (
        f"; NumPy reference: median of {args.reference_repeat} calls (it is slow)")
    notes = [
        f"layout: {args.layout}" + (" (bnkernels and the NumPy reference on (N, H, W, C) "
                                    "arrays; PyTorch on channels_last tensors)"
                                    if args.layout == "NHWC" else ""),
        f"times: median of {args.repeat} calls, each timed alone with time.perf_counter"
        f"{numpy_policy}; min in --json; bnkernels and PyTorch take turns of one untimed "
        f"and {TURN_CALLS} timed calls, so both run under the same background load and "
        "each from the cache state its own calls leave",
        f"policy reused: {POLICY_TEXT['reused']}",
        f"policy fresh: {POLICY_TEXT['fresh']}",
        "vs NumPy 1t / vs PyTorch / vs ORT: how many times faster bnkernels is (their ms "
        "/ bnkernels ms); every baseline uses standard numerics, in every row group",
        "threads: in a row of n threads, bnkernels, PyTorch and onnxruntime all run n "
        "(bnkernels.set_num_threads, torch.set_num_threads, the session's "
        "intra_op_num_threads): like for like; the NumPy reference runs 1 thread in every "
        "row (hence \"NumPy 1t\"), so in rows of n > 1 \"vs NumPy 1t\" sets n threads "
        "against 1",
        "GB/s: minimal traffic / bnkernels ms; passes over the tensor: training "
        "forward 3 (2 reads + 1 write), inference 2, backward 5 (dy and x read twice, "
        "dx written), forward+backward 8; the same minimum for Darknet numerics, "
        "which move more (Darknet keeps x_norm and scales a copy of dy)",
        "% bw: of the bandwidth measured in this run, STREAM-copy style (np.copyto, "
        f"best of {BANDWIDTH_REPEAT}, 2 * bytes / time, {args.bandwidth_basis}, "
        "split across as many Python threads as the row's threads): "
        + ", ".join(f"{b['threads']} thread{'s' * (b['threads'] > 1)} {b['gbps']:.1f} GB/s"
                    for b in bandwidth),
        "% bw above 100: bnkernels beat np.copyto's pace; one core's copy is bounded "
        "by how many cache misses the core keeps in flight, not by DRAM alone, and "
        "tensors of up to a few L3 sizes partly stay in the L3 between calls",
        "the NumPy reference is single-threaded: timed once per shape, dtype and policy, "
        "and reused for every thread count",
    ]
    notes.append(streaming_note())
    l3 = l3_total_bytes()
    if l3 is not None and args.bandwidth_mb * 2**20 < BANDWIDTH_L3_MULTIPLE * l3:
        notes.append(f"the bandwidth buffers ({args.bandwidth_mb} MiB each) are under "
                     f"{BANDWIDTH_L3_MULTIPLE} x the L3 cache ({l3 / 2**20:g} MiB): the copy "
                     "may partly run from cache, and % bw be understated")
    if any(row["bnkernels_threads"] is None for row in rows):
        notes.append("bnkernels has no set_num_threads in this build: it ran with its "
                     "default threads whatever the threads column says")
    elif any(row["bnkernels_threads"] != row["threads"] for row in rows):
        notes.append("bnkernels ran with fewer threads than asked in some rows "
                     "(bnkernels_threads in --json)")
    if torch is not None:
        notes.append("PyTorch " + torch.__version__ + ": native_batch_norm(.out), "
                     "native_batch_norm_backward(.out); its backward .out computes into "
                     "fresh tensors and copies them into out (no true out= backward)")
    if ort_modules is not None:
        notes.append(
            f"onnxruntime {ort_modules[0].__version__}: one BatchNormalization node "
            "(opset 15, CPUExecutionProvider, intra_op_num_threads = the row's threads, its "
            "default spinning); inference (training_mode=0) and training forward "
            "(training_mode=1: y and the running statistics, no saved statistics; its running "
            "variance takes the biased batch variance, PyTorch's the unbiased); no "
            "backward (ONNX has none). reused: io-binding to preallocated outputs, a call "
            "is run_with_iobinding alone; fresh: session.run with a feed dict")
    if args.no_torch:
        notes.append("PyTorch left out (--no-torch)")
    if args.no_numpy:
        notes.append("NumPy reference left out (--no-numpy)")
    return notes + extra_notes


def streaming_note() -> str:
    """What this run's bnkernels did with streaming stores (see
    bnkernels.set_streaming_threshold)."""
    import bnkernels
    threshold = bnkernels.get_streaming_threshold()
    if not bnkernels.streaming_available():
        return "streaming stores: none (this CPU has no AVX-512F)"
    if threshold is None:
        return "streaming stores: off (set_streaming_threshold(None))"
    default = " (the default)" if threshold == DEFAULT_STREAMING_THRESHOLD else ""
    return (f"streaming stores: bnkernels writes y and dx of {threshold / 2**20:g} MiB "
            f"and more{default} with non-temporal stores (NCHW and NHWC), bypassing "
            "the cache; "
            "PyTorch and the NumPy reference write through the cache")


def print_report(rows: list[dict[str, Any]], numerics_list: Sequence[str], notes: list[str],
                 out: TextIO) -> None:
    for numerics in numerics_list:
        group = [row for row in rows if row["numerics"] == numerics]
        headline = " (headline)" if numerics == "standard" else ""
        print(f"\nbnkernels numerics={numerics}{headline}\n", file=out)
        print(format_table(group), file=out)
    print("\nNotes:", file=out)
    for note in notes:
        print(f"- {note}", file=out)


def machine_line(machine: dict[str, Any], threads: Sequence[int]) -> str:
    """The machine kind and the thread counts, in one line."""
    def mib(value):
        return "unknown" if value is None else f"{value / 2**20:g} MiB"
    versions = ", ".join(f"{name} {machine[name]}" for name in ("numpy", "torch", "onnxruntime")
                         if machine.get(name))
    return (f"bnkernels {machine['bnkernels']} bench on {machine['cpu_model']}: "
            f"{machine['physical_cores'] or '?'} cores, {machine['logical_cores']} logical "
            f"({machine['usable_cores']} usable), L3 {mib(machine['l3_total_bytes'])}; "
            f"threads {','.join(map(str, threads))}; {versions}")


def print_overhead(entries: list[dict[str, Any]], out: TextIO) -> None:
    shape = "x".join(map(str, OVERHEAD_SHAPE))
    print(f"\nPer-call overhead: {shape} float32, 1 thread, best of {OVERHEAD_BLOCKS} "
          f"blocks of {OVERHEAD_CALLS} back-to-back calls\n", file=out)
    width = max(len(e["entry"]) for e in entries)
    print(f"| {'entry point'.ljust(width)} | us/call |", file=out)
    print(f"|{'-' * (width + 2)}|--------:|", file=out)
    for e in entries:
        print(f"| {e['entry'].ljust(width)} | {e['us_per_call']:7.2f} |", file=out)


def write_json(path: str | os.PathLike[str], document: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
        f.write("\n")


def write_plot(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Horizontal bars of the speed-ups, one panel per baseline (needs matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    baselines = [(key, title) for key, title in (("speedup_vs_numpy", "vs NumPy reference"),
                                                 ("speedup_vs_torch", "vs PyTorch"))
                 if any(row[key] is not None for row in rows)]
    groups = list(dict.fromkeys((tuple(r["shape"]), r["dtype"], r["threads"], r["op"])
                                for r in rows))
    series = list(dict.fromkeys((r["numerics"], r["policy"]) for r in rows))
    height = 0.8 / max(len(series), 1)
    figure = Figure(figsize=(6 * max(len(baselines), 1), 1.5 + 0.32 * len(groups) * len(series)
                             / 2 + 0.2 * len(groups)))
    FigureCanvasAgg(figure)
    if not baselines:
        figure.text(0.5, 0.5, "no baseline measured (--no-numpy and no PyTorch)",
                    ha="center")
    for panel, (key, title) in enumerate(baselines):
        axes = figure.add_subplot(1, len(baselines), panel + 1)
        for s, (numerics, policy) in enumerate(series):
            values = {(tuple(r["shape"]), r["dtype"], r["threads"], r["op"]): r[key]
                      for r in rows if (r["numerics"], r["policy"]) == (numerics, policy)}
            positions = [g + (s - (len(series) - 1) / 2) * height for g in range(len(groups))]
            axes.barh(positions, [values.get(group) or 0 for group in groups], height,
                      label=f"{numerics}, {policy}", hatch="//" if policy == "fresh" else None)
        axes.axvline(1, color="black", linewidth=0.8)
        axes.set_yticks(range(len(groups)))
        axes.set_yticklabels([f"{shape_text(shape)} {dtype} t{threads} {op}"
                              for shape, dtype, threads, op in groups], fontsize=7)
        axes.invert_yaxis()
        axes.set_xlabel("times faster (bnkernels)")
        axes.set_title(f"bnkernels {title}")
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the benchmark for parsed ``args``; print the report; return an exit code."""
    out = sys.stdout if out is None else out
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print("python -m bnkernels bench: error: --plot needs matplotlib, which is not "
              "installed: pip install matplotlib", file=sys.stderr)
        return 2
    args.bandwidth_mb, args.bandwidth_basis = bandwidth_buffer_mb(args.bandwidth_mb)
    problems = [output_path_error("--json", args.json),
                output_path_error("--plot", args.plot), memory_error(args)]
    for problem in problems:
        if problem:
            print(f"python -m bnkernels bench: error: {problem}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    extra_notes = []
    if args.layout == "NHWC" and args.numerics != ["standard"]:
        args.numerics = ["standard"]
        extra_notes.append("NHWC: standard numerics only (Darknet's layers are NCHW)")
    torch = None if args.no_torch else import_torch(extra_notes)
    ort_modules = import_onnxruntime(args, extra_notes)
    machine = describe_machine(torch)
    machine["onnxruntime"] = None if ort_modules is None else ort_modules[0].__version__
    torch_threads = None if torch is None else torch.get_num_threads()
    bnkernels_threads_before = bnkernels_threads()
    progress = ProgressBar(0)
    try:
        bandwidth, rows = run_suite(args, torch, progress, ort_modules)
        overhead = []
        if not args.no_overhead:
            progress.show("per-call overhead")
            set_threads(1, torch)
            overhead = measure_overhead(torch, ort_modules)
    finally:
        progress.close()
        if bnkernels_threads_before is not None:
            set_threads(bnkernels_threads_before, None)
        if torch is not None:
            torch.set_num_threads(torch_threads)
    notes = report_notes(args, torch, bandwidth, rows, extra_notes, ort_modules)
    print(machine_line(machine, args.threads), file=out)
    print_report(rows, args.numerics, notes, out)
    if overhead:
        print_overhead(overhead, out)
    wall = time.perf_counter() - started
    if args.json:
        write_json(args.json, {
            "schema": SCHEMA, "machine": machine,
            "settings": {"shapes": [list(s) for s in args.shapes], "dtypes": args.dtype,
                         "layout": args.layout,
                         "threads": args.threads, "numerics": args.numerics,
                         "repeat": args.repeat, "reference_repeat": args.reference_repeat,
                         "statistic": "median", "bandwidth_mb": args.bandwidth_mb,
                         "bandwidth_basis": args.bandwidth_basis,
                         "torch": torch is not None, "numpy": not args.no_numpy,
                         "onnxruntime": ort_modules is not None},
            "policies": POLICY_TEXT, "traffic": TRAFFIC_PASSES,
            "torch_functions": TORCH_FUNCTIONS if torch is not None else None,
            "bandwidth": bandwidth, "results": rows, "overhead": overhead,
            "notes": notes, "wall_s": wall})
        print(f"\nwrote {args.json}", file=out)
    if args.plot:
        write_plot(args.plot, rows)
        print(f"wrote {args.plot}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
