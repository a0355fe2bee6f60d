"""pytest-benchmark suite for Inception blocks: ``pytest benchmarks/test_bench_inception.py
--benchmark-only``. Nothing here asserts a speed.

One forward + backward step of each block of ``inception_blocks.BLOCKS``
(batch 4, float32, training mode with BN), three ways on the same input and
parameters: bnkernels, its NumPy twin (``reference.numpy_twin``: the reference
im2col, pools and batch norm) and PyTorch (``bnkernels.torch.to_torch``;
skipped when PyTorch is not installed). One thread on every side, BLAS
included. ``python benchmarks/inception_blocks.py`` prints the same
comparison as a table, with where bnkernels' time goes.
"""
import sys

import numpy as np
import pytest

import bnkernels
import inception_blocks
from bnkernels import reference

BATCH = 4


@pytest.fixture(autouse=True)
def one_thread():
    """bnkernels, NumPy's BLAS and PyTorch on one thread each; restored."""
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="pins the BLAS threads")
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    before = bnkernels.get_num_threads()
    bnkernels.set_num_threads(1)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield
    bnkernels.set_num_threads(before)
    if torch_before is not None:
        torch.set_num_threads(torch_before)


@pytest.mark.parametrize("implementation", ["bnkernels", "numpy", "torch"])
@pytest.mark.parametrize("name", list(inception_blocks.BLOCKS))
def test_block_forward_backward(benchmark, name, implementation):
    build, shape = inception_blocks.BLOCKS[name]
    block = build(batch_norm=True, dtype=np.float32, rng=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, *shape)).astype(np.float32)
    dy = rng.standard_normal(block.output_shape(x.shape)).astype(np.float32)
    if implementation == "torch":
        torch = pytest.importorskip("torch", reason="PyTorch is not installed "
                                                    "(pip install torch to compare)")
        torch.set_num_threads(1)
        from bnkernels.torch import to_torch
        step = inception_blocks.step_torch(torch, to_torch(block), x, dy)
    else:
        if implementation == "numpy":
            block = reference.numpy_twin(block)
        step = inception_blocks.step_numpy(block, x, dy)
    benchmark.group = f"{name} {'x'.join(map(str, x.shape))}"
    benchmark.extra_info.update(macs_forward=block.macs(x.shape))
    benchmark(step)
