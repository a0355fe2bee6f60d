"""Synchronized batch norm on MPI: time per training step and bytes
communicated per step, for 1, 2 and 4 ranks on this machine.

    python benchmarks/sync_bn.py [--ranks 1,2,4] [--repeat 20]

runs ``mpiexec -n K`` for each K (ranks on loopback) and prints a Markdown
table. Each rank holds a shard of 8 samples (weak scaling: the batch grows
with the ranks); a step is SyncBatchNorm2d forward + backward (standard
numerics, float32, one bnkernels thread per rank), timed on every rank
after a barrier, median over the steps of the slowest rank. The local column
is BatchNorm2d on the same shard without synchronization; the bytes are what
each rank sends: its shard's moments (count, mean and M2: 2C + 1 float64) in
the forward's allgather and the 2C sums of the backward's allreduce.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

SHAPES = [(8, 64, 56, 56), (8, 256, 28, 28), (8, 1024, 7, 7)]


def rank_main(repeat):
    from mpi4py import MPI

    import bnkernels
    from bnkernels.distributed import SyncBatchNorm2d
    comm = MPI.COMM_WORLD
    bnkernels.set_num_threads(1)
    rows = []
    for shape in SHAPES:
        rng = np.random.default_rng(comm.rank)
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        timings = {}
        for name, layer in (("sync", SyncBatchNorm2d(shape[1], comm=comm, reuse_buffers=True)),
                            ("local", bnkernels.BatchNorm2d(shape[1], reuse_buffers=True))):
            layer(x), layer.backward(dy)
            times = []
            for _ in range(repeat):
                comm.Barrier()
                start = time.perf_counter()
                layer(x)
                layer.backward(dy)
                elapsed = time.perf_counter() - start
                times.append(comm.allreduce(elapsed, op=MPI.MAX))
            timings[name] = statistics.median(times) * 1e3
        c = shape[1]
        rows.append({"shape": list(shape), "ranks": comm.size, "sync_ms": timings["sync"],
                     "local_ms": timings["local"], "shard_bytes": x.nbytes,
                     "sent_bytes": ((2 * c + 1) + 2 * c) * 8})
    if comm.rank == 0:
        print(json.dumps(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_main:
        return rank_main(args.repeat)
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("needs mpiexec: pip install mpi4py mpich")
    print("| shard (N, C, H, W) | ranks | SyncBatchNorm2d step ms | local BatchNorm2d ms "
          "| sent per rank per step | sent / shard size |")
    print("|---|--:|--:|--:|--:|--:|")
    for ranks in [int(v) for v in args.ranks.split(",")]:
        run = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, __file__,
                              "--rank-main", "--repeat", str(args.repeat)],
                             capture_output=True, text=True, check=True)
        for row in json.loads(run.stdout.strip().splitlines()[-1]):
            print(f"| {tuple(row['shape'])} | {row['ranks']} | {row['sync_ms']:.2f} "
                  f"| {row['local_ms']:.2f} | {row['sent_bytes']} B "
                  f"| {row['sent_bytes'] / row['shard_bytes']:.1e} |")


if __name__ == "__main__":
    main()
