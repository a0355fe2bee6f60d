"""Synchronized batch norm (bnkernels.distributed).

Oracles: bn_stats of the whole batch for merged shard moments (float64,
1e-12 relative: two summation orders), and single-process BatchNorm2d on the
concatenated batch for SyncBatchNorm2d run under mpiexec with 1, 2 and 4
ranks and under torch.distributed (gloo) with 2 (float64: 1e-12 relative,
summation order only; float32: 1e-5, float32 rounding of the outputs).
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bnkernels
from bnkernels import _kernels
from bnkernels.distributed import (SyncBatchNorm2d, as_communicator, merge_moments,
                                   shard_moments)

HERE = Path(__file__).parent
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def shards_of(x, sizes):
    bounds = np.cumsum([0] + list(sizes))
    return [np.ascontiguousarray(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("sizes", [[6], [1, 5], [3, 0, 2, 1], [0, 0, 6]])
def test_merged_shard_moments_are_the_whole_batchs(sizes):
    x = np.random.default_rng(1).standard_normal((6, 3, 4, 5)) * 2 + 0.5
    parts = [shard_moments(s) for s in shards_of(x, sizes)]
    count, mean, m2 = merge_moments([p[0] for p in parts], [p[1] for p in parts],
                                    [p[2] for p in parts])
    whole_mean, whole_var = _kernels.stats(x)
    assert count == x.size // 3
    np.testing.assert_allclose(mean, whole_mean, rtol=1e-12)
    np.testing.assert_allclose(m2 / count, whole_var, rtol=1e-12)


def test_merge_stays_accurate_at_mean_1e4_standard_deviations():
    """A sum-of-squares merge would lose the variance here; Chan's keeps it
    (oracle: NumPy's two-pass variance in float64)."""
    x = (np.random.default_rng(2).standard_normal((8, 2, 6, 6)) + 1e4).astype(np.float32)
    parts = [shard_moments(s) for s in shards_of(x, [3, 1, 4])]
    count, mean, m2 = merge_moments(*zip(*parts))
    np.testing.assert_allclose(m2 / count, x.astype(np.float64).var(axis=(0, 2, 3)),
                               rtol=1e-12)


def test_no_values_at_all_merge_to_zero():
    count, mean, m2 = merge_moments([0, 0], np.ones((2, 3)), np.ones((2, 3)))
    assert count == 0 and not mean.any() and not m2.any()


def test_merge_rejects_mismatched_shapes_by_name():
    with pytest.raises(ValueError, match="expected counts"):
        merge_moments([1, 2], np.ones((3, 4)), np.ones((3, 4)))


def test_comm_must_be_a_communicator():
    with pytest.raises(TypeError, match="comm must be None, an mpi4py communicator"):
        as_communicator(object())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_process_sync_bn_is_batchnorm2d(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 5, 5)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    sync, plain = SyncBatchNorm2d(3, dtype=dtype), bnkernels.BatchNorm2d(3, dtype=dtype)
    for training in (True, False):
        np.testing.assert_allclose(sync(x, training), plain(x, training), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(sync.backward(dy), plain.backward(dy), rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_allclose(sync.running_var, plain.running_var, rtol=1e-6)
    np.testing.assert_allclose(sync.grad_weight, plain.grad_weight, rtol=1e-5, atol=1e-6)


def test_sync_bn_takes_standard_numerics_only():
    with pytest.raises(ValueError, match="numerics='standard' only"):
        SyncBatchNorm2d(3, numerics="darknet")


MPIEXEC = shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or __import__("importlib").util.find_spec("mpi4py") is None,
    reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")


@needs_mpi
@pytest.mark.parametrize("activation", ["none", "relu"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes", ["6", "4,2", "3,0,2,5"], ids=["1 rank", "2 ranks",
                                                              "4 ranks, one empty"])
def test_mpi_ranks_match_single_process_bn_on_the_whole_batch(sizes, dtype, activation):
    ranks = len(sizes.split(","))
    run = subprocess.run(
        [MPIEXEC, "-n", str(ranks), sys.executable, str(HERE / "mpi" / "sync_step.py"),
         dtype, activation, sizes], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    errors = json.loads(run.stdout.strip().splitlines()[-1])
    for key, value in errors.items():
        if key.endswith("on all ranks"):
            assert value == 1, key
        elif key == "num_batches_tracked":
            assert value == 0
        else:
            assert value <= TOLERANCE[dtype], (key, value)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_distributed_gloo_matches_single_process_bn(dtype):
    pytest.importorskip("torch", reason="PyTorch is optional (pip install .[torch])")
    run = subprocess.run([sys.executable, str(HERE / "mpi" / "torch_step.py"), dtype, "3,5"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    for rank, errors in json.loads(run.stdout.strip().splitlines()[-1]).items():
        for key, value in errors.items():
            assert value <= TOLERANCE[dtype], (rank, key, value)
