"""Run by tests/test_distributed.py: the check of sync_step.py, on
torch.distributed (gloo, CPU) instead of MPI, with 2 processes spawned here.

    python tests/mpi/torch_step.py DTYPE N0,N1
"""
import json
import os
import socket
import sys

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp


def step(rank, sizes, dtype, port, results):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=len(sizes))
    import bnkernels
    from bnkernels.distributed import SyncBatchNorm2d, TorchDistributedCommunicator
    c = 4
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((sum(sizes), c, 5, 3)) * 2 + 50).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    begin = sum(sizes[:rank])
    shard = slice(begin, begin + sizes[rank])
    sync = SyncBatchNorm2d(c, comm=TorchDistributedCommunicator(), dtype=dtype)
    y = sync(np.ascontiguousarray(x[shard]))
    dx = sync.backward(np.ascontiguousarray(dy[shard]))
    whole = bnkernels.BatchNorm2d(c, dtype=dtype)
    y_all, dx_all = whole(x), whole.backward(dy)
    scale = lambda a: max(float(np.abs(a).max(initial=0.0)), 1.0)
    results[rank] = {
        "y": float(np.abs(y - y_all[shard]).max(initial=0.0)) / scale(y_all),
        "dx": float(np.abs(dx - dx_all[shard]).max(initial=0.0)) / scale(dx_all),
        "running_var": float(np.abs(sync.running_var - whole.running_var).max()),
        "grad_weight": float(np.abs(sync.grad_weight - whole.grad_weight).max())
        / scale(whole.grad_weight),
    }
    dist.destroy_process_group()


def main():
    dtype, sizes = np.dtype(sys.argv[1]), [int(v) for v in sys.argv[2].split(",")]
    with socket.socket() as s:  # a free port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(step, args=(sizes, dtype, port, results), nprocs=len(sizes), join=True)
        print(json.dumps({str(rank): dict(value) for rank, value in results.items()}))


if __name__ == "__main__":
    main()
