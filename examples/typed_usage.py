"""bnkernels as a typed program uses it: CI runs mypy on this file (and on the
package), and tests/test_examples.py runs it.

Every call below has annotated arguments and results, so mypy checks the
arrays' types, the keyword-only options and the layers' methods.
"""
import numpy as np
import numpy.typing as npt

import bnkernels
from bnkernels import darknet
from bnkernels.nn import Sequential, layers

Array = npt.NDArray[np.float32]


def normalize(x: Array) -> Array:
    """Training-mode batch norm of x with PyTorch's conventions."""
    c = x.shape[1]
    weight, bias = np.ones(c, np.float32), np.zeros(c, np.float32)
    running_mean, running_var = np.zeros(c, np.float32), np.ones(c, np.float32)
    y, saved = bnkernels.batch_norm_forward(x, weight, bias, running_mean, running_var,
                                            training=True, activation="relu")
    dx, dweight, dbias = bnkernels.batch_norm_backward(np.ones_like(y), saved)
    assert dx.shape == x.shape and dweight is not None and dbias is not None
    return y


def darknet_normalize(x: Array) -> Array:
    """Darknet's (pjreddie's) normalize_cpu on the batch statistics."""
    mean = darknet.mean_cpu(x)
    variance = darknet.variance_cpu(x, mean)
    return darknet.normalize_cpu(x, mean, variance, numerics="darknet")


def network(channels: int) -> Sequential:
    """Conv, BN (a core class, a Module), ReLU."""
    return Sequential(layers.Conv2d(channels, 4, 3, padding=1, rng=0),
                      bnkernels.BatchNorm2d(4), layers.ReLU())


def main() -> None:
    x: Array = np.random.default_rng(0).standard_normal((8, 3, 6, 6)).astype(np.float32)
    y = normalize(x)
    z = darknet_normalize(x)
    net = network(3)
    out = net.forward(x)
    grad = net.backward(np.ones_like(out))
    net.forward(x)
    # a training step needs no dL/dx of its input: None, the same gradients
    assert net.backward(np.ones_like(out), input_grad=False) is None
    state: dict[str, object] = dict(net.state_dict())
    print(f"y {y.shape}, darknet {z.shape}, network {out.shape} -> dx {grad.shape}, "
          f"{len(state)} state entries")


if __name__ == "__main__":
    main()
