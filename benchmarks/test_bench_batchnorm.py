"""pytest-benchmark suite: ``pytest benchmarks/ --benchmark-only``.

Not part of the test run (testpaths = tests); nothing here asserts a speed.
Each benchmark times one call with fresh outputs, one thread.
"""
import numpy as np
import pytest

import bnkernels
from bnkernels import reference

SHAPES = [(32, 64, 56, 56), (8, 32, 14, 14), (128, 1024, 7, 7)]
MODULES = {"bnkernels": bnkernels, "numpy": reference}


def inputs(shape, dtype=np.float32):
    rng = np.random.default_rng(0)
    c = shape[1]
    return (rng.standard_normal(shape).astype(dtype), np.ones(c, dtype), np.zeros(c, dtype),
            np.zeros(c, dtype), np.ones(c, dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("numerics", ["standard", "darknet"])
@pytest.mark.parametrize("impl", MODULES)
def test_forward_backward(benchmark, impl, numerics, shape):
    module = MODULES[impl]
    x, w, b, rm, rv = inputs(shape)
    dy = np.ones_like(x)
    benchmark.group = f"forward+backward {shape}"

    def step():
        _, saved = module.batch_norm_forward(x, w, b, rm, rv, numerics=numerics)
        return module.batch_norm_backward(dy, saved)

    benchmark(step)
