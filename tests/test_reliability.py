"""Reliability: degenerate sizes, the C fuzz harness, and leaks.

Oracles: shapes and emptiness of results for zero-size tensors (nothing to
compute, nothing to crash on); AddressSanitizer and UBSan for the C harness;
the process's resident memory for leaks.
"""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels, darknet
from bnkernels.distributed import merge_moments, shard_moments

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4), (2, 0, 0, 0)])
def test_every_kernel_takes_zero_size_tensors(shape, dtype):
    """A zero channel count once reached a division by zero in C (SIGFPE)."""
    x = np.ones(shape, dtype)
    c = shape[1]
    v = np.ones(c, dtype)
    mean = darknet.mean_cpu(x)
    variance = darknet.variance_cpu(x, mean)
    for flavor in darknet.FLAVORS:
        x_norm = darknet.normalize_cpu(x, mean, variance, flavor=flavor)
        assert x_norm.shape == shape
        assert darknet.scale_add_bias(x_norm, v, v).shape == shape
        assert darknet.add_bias(x_norm, v).shape == shape
        md = darknet.mean_delta_cpu(x, variance)
        vd = darknet.variance_delta_cpu(x, x, mean, variance)
        assert darknet.normalize_delta_cpu(x, mean, variance, md, vd, x,
                                           flavor=flavor).shape == shape
        assert darknet.backward_batchnorm_layer(x, x_norm, x, mean, variance, v,
                                                flavor=flavor)[0].shape == shape
    assert darknet.backward_bias(x).shape == (c,)
    assert darknet.backward_scale_cpu(x, x).shape == (c,)
    m, var = _kernels.stats(x)
    k = _kernels.invstd(np.ones(c), 1e-5)
    assert _kernels.normalize_affine(x, np.zeros(c), k, v, v, relu=True).shape == shape
    sums = _kernels.backward_reduce(x, x, np.zeros(c), k)
    assert _kernels.backward_dx(x, x, np.zeros(c), k, v, *sums).shape == shape
    for numerics in bnkernels.NUMERICS:
        with np.errstate(all="ignore"):
            y, saved = bnkernels.batch_norm_forward(x, v, v, None, None, numerics=numerics)
        if shape[0] * shape[2] * shape[3] == 0:
            assert y.shape == shape
            assert bnkernels.batch_norm_backward(x, saved)[0].shape == shape
    count, _, _ = merge_moments(*[np.array(a)[None] for a in shard_moments(x)])
    assert count == shape[0] * shape[2] * shape[3]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_fuzz_harness_runs_clean_under_asan_and_ubsan(tmp_path):
    """tests/fuzz/fuzz_kernels.c, built with the sanitizers: the regression
    inputs, then a few seconds of random ones (CI runs it longer)."""
    binary = tmp_path / "fuzz_kernels"
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    env["ASAN_OPTIONS"] = "detect_leaks=1"
    sources = sorted(str(p) for p in (ROOT / "csrc").glob("*.c"))
    build = subprocess.run(
        ["gcc", "-std=c11", "-g", "-O1", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-fopenmp", f"-I{ROOT / 'csrc'}", *sources,
         str(ROOT / "tests" / "fuzz" / "fuzz_kernels.c"), "-lm", "-o", str(binary)],
        capture_output=True, text=True, env=env)
    if build.returncode != 0 and "sanitize" in build.stderr:
        pytest.skip(f"this gcc cannot build with sanitizers: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-2000:]
    corpus = sorted(str(p) for p in (ROOT / "tests" / "fuzz" / "corpus").iterdir())
    run = subprocess.run([str(binary), os.environ.get("BNKERNELS_FUZZ_SECONDS", "3"),
                          *corpus], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "no report" in run.stdout
