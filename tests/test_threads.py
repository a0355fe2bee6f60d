"""Kernels release the GIL; calls from many Python threads at once must give
the same bytes as the same calls made one after another (oracle: the serial
run; tolerance: none)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import bnkernels


def one_step(seed, numerics, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 16, 12, 12)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    weight, bias = rng.uniform(0.5, 2, 16).astype(dtype), rng.standard_normal(16).astype(dtype)
    running_mean, running_var = np.zeros(16, dtype), np.ones(16, dtype)
    y, saved = bnkernels.batch_norm_forward(x, weight, bias, running_mean, running_var,
                                            numerics=numerics)
    dx, dweight, dbias = bnkernels.batch_norm_backward(dy, saved)
    return [a.tobytes() for a in (y, running_mean, running_var, dx, dweight, dbias)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("numerics", bnkernels.NUMERICS)
def test_eight_threads_give_the_bytes_of_serial_calls(numerics, dtype):
    seeds = list(range(32))
    serial = [one_step(seed, numerics, dtype) for seed in seeds]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda seed: one_step(seed, numerics, dtype), seeds))
    assert threaded == serial
