"""Layers, Inception networks, an optimizer and a training command, built on
the core (``import bnkernels`` does not load this package; ``bnkernels.nn``
does, on first use).

``bnkernels.nn.layers``
    Conv2d, Linear, pools, ReLU, Dropout, ConvBNReLU, Sequential, Concat,
    SoftmaxCrossEntropy; the core batch-norm layers (``bnkernels.BatchNorm``,
    BatchNorm1d/2d/3d) are Modules and are re-exported here.
``bnkernels.nn.inception``
    Inception blocks and networks (GoogLeNet, BN-Inception, Inception-v3).
``bnkernels.nn.optim``
    SGD.
``bnkernels.nn.train``
    ``python -m bnkernels train`` (loaded when first used).
"""
import importlib
from typing import Any

from bnkernels.nn import inception, layers, optim
from bnkernels.nn.layers import (
    AvgPool2d, BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, Concat, Conv2d, ConvBNReLU,
    Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Module, ReLU, Sequential,
    SoftmaxCrossEntropy,
)
from bnkernels.nn.optim import SGD

__all__ = ["AvgPool2d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Concat",
           "Conv2d", "ConvBNReLU", "Dropout", "Flatten", "GlobalAvgPool2d", "Linear",
           "MaxPool2d", "Module", "ReLU", "SGD", "Sequential", "SoftmaxCrossEntropy",
           "inception", "layers", "optim", "train"]


def __getattr__(name: str) -> Any:
    """``bnkernels.nn.train`` on first use (it holds the command line)."""
    if name == "train":
        return importlib.import_module("bnkernels.nn.train")
    raise AttributeError(f"module 'bnkernels.nn' has no attribute {name!r}")
