"""pytest-benchmark suite: ``pytest benchmarks/ --benchmark-only``.

Not part of the test run (testpaths = tests); nothing here asserts a speed.
``pytest benchmarks/ --benchmark-disable`` runs every case once, as a smoke test.

Every op of ``python -m bnkernels bench`` (training forward, inference,
backward, forward+backward), for bnkernels with standard and Darknet numerics,
its NumPy reference with the same numerics, and PyTorch (standard numerics;
skipped when it is not installed), in float32 and float64. The callables are
the CLI's own (bnkernels.tools.bench), with the "reused" allocation policy: outputs
preallocated and passed with out= on every side. One benchmark group per
(op, shape, dtype) puts the implementations side by side.
"""
import functools
import sys

import pytest

import bnkernels
from bnkernels import reference
from bnkernels.tools import bench

SHAPES = [(32, 64, 56, 56), (8, 32, 14, 14)]   # DRAM-bound, and cache-resident
DTYPES = ["float32", "float64"]
POLICY = "reused"
IMPLEMENTATIONS = ["bnkernels-standard", "bnkernels-darknet", "numpy-standard",
                   "numpy-darknet", "torch"]


@functools.lru_cache(maxsize=2)
def tensors_for(shape, dtype):
    return bench.make_tensors(shape, dtype)


def calls_for(implementation, tensors):
    if implementation == "torch":
        torch = pytest.importorskip("torch", reason="PyTorch is not installed "
                                                    "(pip install torch to compare)")
        torch.set_num_threads(1)   # the fixture restores it
        return bench.torch_calls(torch, tensors, POLICY)
    library, numerics = implementation.split("-")
    module = bnkernels if library == "bnkernels" else reference
    return bench.numpy_api_calls(module, tensors, numerics, POLICY)


@pytest.fixture(autouse=True)
def one_thread():
    """bnkernels and PyTorch on one thread each, as the NumPy reference; restored."""
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    set_threads = getattr(bnkernels, "set_num_threads", None)
    before = bnkernels.get_num_threads() if set_threads is not None else None
    if set_threads is not None:
        set_threads(1)
    yield
    if set_threads is not None:
        set_threads(before)
    if torch_before is not None:
        torch.set_num_threads(torch_before)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("op", bench.OPS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=bench.shape_text)
def test_batch_norm(benchmark, shape, dtype, op, implementation):
    calls = calls_for(implementation, tensors_for(shape, dtype))
    benchmark.group = f"{op} {bench.shape_text(shape)} {dtype}"
    benchmark.extra_info.update(policy=POLICY, op=op, dtype=dtype,
                                traffic_bytes=bench.TRAFFIC_PASSES[op]
                                * tensors_for(shape, dtype).x.nbytes)
    benchmark(calls[op])
