"""Optimizers over (value, grad) pairs, such as ``Module.parameters()``."""
import math
import numbers
from typing import Any

import numpy as np

from bnkernels._typing import FloatArray

__all__ = ["SGD"]


class SGD:
    """Stochastic gradient descent with momentum, weight decay and Nesterov
    momentum, by PyTorch's rule (torch.optim.SGD without dampening), applied
    in place to each parameter p with gradient g::

        d = g + weight_decay * p
        buf = d on the first step, else momentum * buf + d    (momentum != 0)
        d = d + momentum * buf if nesterov else buf           (momentum != 0)
        p -= lr * d

    Computed in each parameter's dtype; the momentum buffers have it too.

    Parameters
    ----------
    parameters : iterable of (value, grad), or a Module
        The arrays to update in place and their gradients (same shape and
        dtype), e.g. ``module.parameters()``. Values are writeable, and no
        two of all these arrays share memory.
    lr : float
    momentum, weight_decay : float, finite and >= 0
    nesterov : bool
        Needs momentum > 0.

    ``step`` checks that every value is still writeable before it updates
    any, so a step that raises changes nothing.
    """

    def __init__(self, parameters: Any, lr: float,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        if callable(getattr(parameters, "parameters", None)):
            parameters = parameters.parameters()
        self.params = []
        for i, pair in enumerate(parameters):
            try:
                value, grad = pair
            except (TypeError, ValueError):
                raise TypeError(f"parameters must be (value, grad) pairs; item {i} is "
                                f"{type(pair).__name__}") from None
            if not isinstance(value, np.ndarray) or not isinstance(grad, np.ndarray):
                raise TypeError(f"parameter {i}: value and grad must be NumPy arrays")
            if value.shape != grad.shape or value.dtype != grad.dtype:
                raise ValueError(f"parameter {i}: grad is {grad.dtype} {grad.shape}, expected "
                                 f"{value.dtype} {value.shape} like its value")
            if value.dtype.kind != "f":
                raise TypeError(f"parameter {i} has dtype {value.dtype}, expected a float dtype")
            if not value.flags.writeable:
                raise ValueError(f"parameter {i} is read-only; SGD updates values in place")
            self.params.append((value, grad))
        _reject_shared_memory(self.params)
        for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) \
                    or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and momentum <= 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        self.momentum_buffers: list[FloatArray | None] = [None] * len(self.params)

    def step(self) -> None:
        """Update every parameter in place from its current gradient."""
        for i, (value, _) in enumerate(self.params):
            if not value.flags.writeable:
                raise ValueError(f"parameter {i} is read-only; SGD updates values in place")
        for i, (value, grad) in enumerate(self.params):
            d = grad + self.weight_decay * value if self.weight_decay else grad
            if self.momentum:
                buf = self.momentum_buffers[i]
                if buf is None:
                    buf = self.momentum_buffers[i] = np.array(d, copy=True)
                else:
                    buf *= self.momentum
                    buf += d
                d = d + self.momentum * buf if self.nesterov else buf
            value -= self.lr * d

    def zero_grad(self) -> None:
        """Set every gradient to 0 (they accumulate across backward calls)."""
        for _, grad in self.params:
            grad.fill(0)

    def __repr__(self) -> str:
        return (f"SGD({len(self.params)} parameters, lr={self.lr:g}, momentum={self.momentum:g}, "
                f"weight_decay={self.weight_decay:g}, nesterov={self.nesterov})")


def _reject_shared_memory(params):
    """ValueError if any two of the values and grads overlap in memory (a
    value updated in place would change another, or its own gradient)."""
    spans = []
    for i, (value, grad) in enumerate(params):
        for what, array in (("value", value), ("grad", grad)):
            if array.size:
                low, high = np.lib.array_utils.byte_bounds(array)
                spans.append((low, high, f"parameter {i}'s {what}"))
    spans.sort()
    for (_, high, first), (low, _, second) in zip(spans, spans[1:]):
        if low < high:
            raise ValueError(f"{first} and {second} share memory; each value and gradient "
                             f"must be an array of its own")
