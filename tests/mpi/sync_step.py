"""Run under mpiexec by tests/test_distributed.py: one SyncBatchNorm2d
training step (two, to check the running statistics) on this rank's shard of
a batch that every rank builds from the same seed, gathered on rank 0 and
compared there with single-process BatchNorm2d on the whole batch.

    mpiexec -n K python tests/mpi/sync_step.py DTYPE RELU N0,N1,...,N(K-1)

Prints one JSON line on rank 0: the largest relative error of each output.
"""
import json
import sys

import numpy as np
from mpi4py import MPI

import bnkernels
from bnkernels.distributed import SyncBatchNorm2d


def main():
    dtype, relu, sizes = np.dtype(sys.argv[1]), sys.argv[2] == "relu", \
        [int(v) for v in sys.argv[3].split(",")]
    comm = MPI.COMM_WORLD
    assert len(sizes) == comm.size, "one shard size per rank"
    c, h, w = 5, 6, 7
    rng = np.random.default_rng(2024)
    steps = []
    for _ in range(2):
        x = (rng.standard_normal((sum(sizes), c, h, w)) * 3 + 1e3).astype(dtype)
        steps.append((x, rng.standard_normal(x.shape).astype(dtype)))
    weight = rng.uniform(0.5, 2, c).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    begin = sum(sizes[:comm.rank])
    shard = slice(begin, begin + sizes[comm.rank])
    activation = "relu" if relu else None

    sync = SyncBatchNorm2d(c, comm=comm, dtype=dtype, activation=activation)
    whole = bnkernels.BatchNorm2d(c, dtype=dtype, activation=activation)
    for layer in (sync, whole):
        layer.weight[:], layer.bias[:] = weight, bias
    errors = {}

    def record(name, mine, oracle):
        scale = max(float(np.abs(oracle).max(initial=0.0)), 1.0)
        error = float(np.abs(mine.astype(np.float64) - oracle).max(initial=0.0)) / scale
        errors[name] = max(errors.get(name, 0.0), error)

    for x, dy in steps:
        y = sync(np.ascontiguousarray(x[shard]))
        dx = sync.backward(np.ascontiguousarray(dy[shard]))
        ys, dxs = comm.gather(y, root=0), comm.gather(dx, root=0)
        if comm.rank == 0:
            record("y", np.concatenate(ys), whole(x))
            record("dx", np.concatenate(dxs), whole.backward(dy))
    if comm.rank == 0:
        for name in ("running_mean", "running_var", "grad_weight", "grad_bias"):
            record(name, getattr(sync, name), getattr(whole, name))
        errors["num_batches_tracked"] = sync.num_batches_tracked - whole.num_batches_tracked
    # every rank must hold the same running statistics and gradients
    for name in ("running_mean", "running_var", "grad_weight", "grad_bias"):
        values = comm.gather(getattr(sync, name).tobytes(), root=0)
        if comm.rank == 0:
            errors[f"{name} equal on all ranks"] = int(len(set(values)) == 1)
    if comm.rank == 0:
        print(json.dumps(errors))


if __name__ == "__main__":
    main()
