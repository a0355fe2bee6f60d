"""Type aliases of the public API (for annotations; nothing here runs).

``FloatArray``: a NumPy array of float32 or float64, what every function
returns. ``Tensor``: what the functions take as a tensor: a NumPy array or
any object NumPy can view without a copy (``__dlpack__``,
``__array_interface__``, the buffer protocol), so ``Any`` to a type checker.
"""
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Activation", "Build", "DarknetNumerics", "FloatArray", "Layout", "Numerics", "Tensor"]

FloatArray = npt.NDArray[np.floating[Any]]
Tensor = Any
Numerics = Literal["standard", "darknet", "darknet-alexeyab", "darknet-ofast",
                   "darknet-alexeyab-ofast", "darknet-alexeyab-ofast-avx"]
DarknetNumerics = Literal["darknet", "darknet-alexeyab"]
Build = Literal["strict", "ofast", "ofast-avx"]
Activation = Literal["relu"] | None
Layout = Literal["NCHW", "NHWC"]
