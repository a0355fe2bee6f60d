"""Synchronized batch norm: statistics over the whole batch when each process
holds a shard of it (data-parallel training), on MPI or torch.distributed.

Each rank computes its shard's per-channel moments (count, mean, M2) with
the C kernels, one collective gathers every rank's moments (3C + 1 float64
numbers per rank), and every rank merges them in rank order with Chan et
al.'s parallel formula (bn_merge_moments), so all ranks hold the same
statistics, accurate even when a channel's mean is 1e4 standard deviations.
The backward all-reduces the per-channel sums (sum dy, sum dy * xhat): 2C
float64 numbers. Nothing tensor-sized crosses the network.

    from mpi4py import MPI
    bn = SyncBatchNorm2d(64, comm=MPI.COMM_WORLD)
    y = bn(x_shard); dx_shard = bn.backward(dy_shard)

Run under ``mpiexec -n K python train.py`` (see the README). ``comm`` may be
an mpi4py communicator, a ``TorchDistributedCommunicator`` (gloo, CPU), any
object with ``allgather`` and ``allreduce_sum`` as below, or None (one
process).
"""
from typing import Any

import numpy as np
import numpy.typing as npt

import bnkernels._kernels as _kernels
from bnkernels._typing import FloatArray, Tensor
from bnkernels._deprecation import renamed_keyword
from bnkernels.batchnorm import (BatchNorm, BatchNorm2d, BatchNormSaved, check_activation,
                                 check_layout)

__all__ = ["shard_moments", "merge_moments", "shard_gradient_sums",
           "as_communicator", "SingleProcessCommunicator", "MPICommunicator",
           "TorchDistributedCommunicator", "SyncBatchNorm", "SyncBatchNorm2d"]


# ---------------------------------------------------------------------------
# the kernels of synchronized BN, for any communicator
# ---------------------------------------------------------------------------

def _channels(x, nhwc):
    """C of an (N, C, *spatial) or, with nhwc, (N, *spatial, C) tensor."""
    return x.shape[-1] if nhwc else x.shape[1]


def _values_per_channel(x, nhwc):
    """N times the spatial size: the values each channel's statistics span."""
    spatial = x.shape[1:-1] if nhwc else x.shape[2:]
    return x.shape[0] * int(np.prod(spatial, dtype=np.int64))


def shard_moments(x: Tensor, *, layout: str = "NCHW") -> tuple[int, FloatArray, FloatArray]:
    """(count, mean, M2) of a shard: values per channel (int) and float64
    (C,) per-channel mean and sum of squared deviations. An empty shard
    gives count 0 and zeros. x: (N, C, *spatial), or with layout="NHWC"
    (channels last) (N, *spatial, C)."""
    nhwc = check_layout(layout)
    x = _kernels.check_tensor(x, "x", nhwc)
    c = _channels(x, nhwc)
    count = _values_per_channel(x, nhwc)
    if count == 0:
        return 0, np.zeros(c), np.zeros(c)
    mean, var = _kernels.stats(x, nhwc)
    return count, mean, var * count


def merge_moments(counts: npt.ArrayLike, means: npt.ArrayLike, m2s: npt.ArrayLike
                  ) -> tuple[int, FloatArray, FloatArray]:
    """Merge shards' moments, in the order given, into the whole batch's.

    counts: (P,), means and m2s: (P, C). Returns (count, mean, M2); the
    biased variance is M2 / count. Shards with count 0 are skipped."""
    counts = np.ascontiguousarray(counts, np.float64)
    mean, m2 = _kernels.merge_moments(counts, np.ascontiguousarray(means, np.float64),
                                      np.ascontiguousarray(m2s, np.float64))
    return int(round(counts.sum())), mean, m2


def shard_gradient_sums(dy: Tensor, x: Tensor, mean: FloatArray, invstd: FloatArray,
                        weight: FloatArray | None = None, bias: FloatArray | None = None, *,
                        activation: str | None = None, layout: str = "NCHW",
                        relu: bool | None = None) -> tuple[FloatArray, FloatArray]:
    """(sum dy, sum dy * xhat) per channel over a shard, float64, with the
    whole batch's mean and invstd: all-reduce them (sum) across ranks.
    activation: None or "relu" (the forward's fused ReLU; relu=True is the
    deprecated spelling)."""
    activation = renamed_keyword("relu", relu, "activation", activation, None,
                                 lambda relu: "relu" if relu else None)
    return _kernels.backward_reduce(dy, x, mean, invstd, weight, bias,
                                    check_activation(activation), check_layout(layout))


# ---------------------------------------------------------------------------
# communicators: allgather (stack every rank's array, in rank order) and
# allreduce_sum, on float64 NumPy vectors
# ---------------------------------------------------------------------------

class SingleProcessCommunicator:
    """One process: the collectives are the identity."""
    rank, size = 0, 1

    def allgather(self, array: npt.ArrayLike) -> FloatArray:
        return np.asarray(array)[None]

    def allreduce_sum(self, array: npt.ArrayLike) -> FloatArray:
        return np.array(array, copy=True)


class MPICommunicator:
    """An mpi4py communicator (e.g. MPI.COMM_WORLD) as a bnkernels one."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allgather(self, array: npt.ArrayLike) -> FloatArray:
        array = np.ascontiguousarray(array, np.float64)
        gathered = np.empty((self.size,) + array.shape, np.float64)
        self.comm.Allgather(array, gathered)
        return gathered

    def allreduce_sum(self, array: npt.ArrayLike) -> FloatArray:
        from mpi4py import MPI
        array = np.ascontiguousarray(array, np.float64)
        total = np.empty_like(array)
        self.comm.Allreduce(array, total, op=MPI.SUM)
        return total


class TorchDistributedCommunicator:
    """torch.distributed's default group (or `group`), e.g. the gloo backend
    on CPU, as a bnkernels communicator. Call torch.distributed.init_process_group
    first."""

    def __init__(self, group: Any = None) -> None:
        import torch.distributed as dist
        self.dist, self.group = dist, group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)

    def allgather(self, array: npt.ArrayLike) -> FloatArray:
        import torch
        tensor = torch.from_numpy(np.ascontiguousarray(array, np.float64))
        gathered = [torch.empty_like(tensor) for _ in range(self.size)]
        self.dist.all_gather(gathered, tensor, group=self.group)
        return torch.stack(gathered).numpy()

    def allreduce_sum(self, array: npt.ArrayLike) -> FloatArray:
        import torch
        tensor = torch.from_numpy(np.array(array, np.float64, copy=True))
        self.dist.all_reduce(tensor, group=self.group)
        return tensor.numpy()


def as_communicator(comm: Any) -> Any:
    """None, an mpi4py communicator, or an object with allgather and
    allreduce_sum, as a bnkernels communicator."""
    if comm is None:
        return SingleProcessCommunicator()
    if hasattr(comm, "allgather") and hasattr(comm, "allreduce_sum"):
        return comm
    if hasattr(comm, "Allgather") and hasattr(comm, "Allreduce"):
        return MPICommunicator(comm)
    raise TypeError(f"comm must be None, an mpi4py communicator or an object with "
                    f"allgather and allreduce_sum, got {type(comm).__name__}")


# ---------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------

class _SyncSaved(BatchNormSaved):
    """BatchNormSaved plus the whole batch's count."""
    __slots__ = ("count",)
    count: int


class SyncBatchNorm(BatchNorm):
    """BatchNorm (any rank >= 2) whose training statistics span every rank's
    shard, as torch.nn.SyncBatchNorm.

    Parameters are those of BatchNorm (standard numerics only), plus
    ``comm`` (see the module docstring). Every rank must call forward and
    backward together (they are collectives), with shards of the same C, H,
    W and dtype; shards may have different N, including 0.

    In training, y and dx on each rank equal single-process BN over the
    concatenated batch, restricted to the rank's shard; the running
    statistics (the same on every rank) are updated with the whole batch's;
    grad_weight and grad_bias are the gradients of the sum of every rank's
    loss, the same on every rank (do not all-reduce them again). Eval mode
    uses the running statistics and communicates nothing.
    """

    def __init__(self, num_features: int, comm: Any = None, **kwargs: Any) -> None:
        numerics = kwargs.pop("numerics", "standard")
        if numerics != "standard":
            raise ValueError(f"{type(self).__name__} supports numerics='standard' only, got "
                             f"{numerics!r}")
        super().__init__(num_features, **kwargs)
        self.comm = as_communicator(comm)

    # BatchNorm.forward passes every keyword, so this needs none of the defaults
    # that the base's batch_norm_forward has for its public callers
    def _forward(self, x, weight, bias, running_mean, running_var, *,  # type: ignore[override]
                 training, momentum, eps, numerics, activation=None, out=None, workspace=None,
                 layout="NCHW", running_var_ddof=1):
        relu = check_activation(activation)
        if not training:
            return super()._forward(x, weight, bias, running_mean, running_var,
                                    training=False, momentum=momentum, eps=eps,
                                    numerics=numerics, activation=activation, out=out,
                                    layout=layout, running_var_ddof=running_var_ddof)
        nhwc = check_layout(layout)
        momentum, eps = _kernels.check_momentum(momentum), _kernels.check_eps(eps)
        _kernels.check_batch_eps(eps, True)
        ddof = _kernels.check_ddof(running_var_ddof)
        x, weight, bias, running_mean, running_var, out = _kernels.check_forward(
            x, weight, bias, running_mean, running_var, True, out, nhwc)
        c = _channels(x, nhwc)
        local_count, local_mean, local_m2 = shard_moments(x, layout=layout)
        parts = self.comm.allgather(
            np.concatenate([[float(local_count)], local_mean, local_m2]))
        count, mean, m2 = merge_moments(parts[:, 0], parts[:, 1:c + 1], parts[:, c + 1:])
        if count == 1:
            raise ValueError("Expected more than 1 value per channel when training, "
                             "got 1 over all ranks")
        if count == 0:  # every shard is empty: nothing to normalize or update
            mean, var = np.zeros(c), np.ones(c)
        else:
            var = m2 / count
        invstd = _kernels.invstd(var, eps)
        y = _kernels.normalize_affine(x, mean, invstd, weight, bias, out, relu=relu,
                                      nhwc=nhwc)
        if running_mean is not None and count > 1:
            _kernels.rolling_update(momentum, count, mean, var, running_mean, running_var,
                                    ddof)
        saved = _SyncSaved("standard", True, x, weight, bias, mean, invstd,
                           x_overwritten=out is not None and _kernels.same_memory(out, x),
                           relu=relu, nhwc=nhwc)
        saved.count = count
        return y, saved

    def _backward(self, dy, saved, out=None):
        if not isinstance(saved, _SyncSaved):  # eval mode: a local backward
            return super()._backward(dy, saved, out=out)
        x = saved.x
        dy = _kernels.check_tensor_like(dy, "dy", x, "x")
        if saved.x_overwritten:
            raise ValueError("the forward wrote y over x (out=x), so x is gone")
        c = saved.mean.shape[0]
        assert saved.invstd is not None  # a training forward keeps invstd
        local = np.concatenate(shard_gradient_sums(
            dy, x, saved.mean, saved.invstd, saved.weight, saved.bias,
            activation="relu" if saved.relu else None,
            layout="NHWC" if saved.nhwc else "NCHW"))
        total = self.comm.allreduce_sum(local)
        sum_dy, sum_dy_xhat = total[:c], total[c:]
        local_count = _values_per_channel(x, saved.nhwc)
        # backward_dx divides the sums by the shard's count; the batch's is wanted
        scale = local_count / saved.count if saved.count else 0.0
        dx = _kernels.backward_dx(dy, x, saved.mean, saved.invstd, saved.weight,
                                  sum_dy * scale, sum_dy_xhat * scale, out,
                                  bias=saved.bias, relu=saved.relu, nhwc=saved.nhwc)
        dweight = sum_dy_xhat.astype(x.dtype) if saved.weight is not None else None
        dbias = sum_dy.astype(x.dtype) if saved.bias is not None else None
        return dx, dweight, dbias

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", ranks={getattr(self.comm, 'size', '?')})"


class SyncBatchNorm2d(SyncBatchNorm, BatchNorm2d):
    """SyncBatchNorm over (N, C, H, W) inputs (or (N, H, W, C) with
    layout="NHWC"), with BatchNorm2d's input-rank check."""
