"""bnkernels: batch-normalization kernels in C, for NumPy arrays.

Two numerics families: Darknet-exact (``bnkernels.darknet``, and
``numerics="darknet"`` / ``"darknet-alexeyab"``) and standard (the BN paper /
PyTorch convention, ``numerics="standard"``). ``bnkernels.reference`` is the
pure-NumPy twin of every public function.
"""
from bnkernels import darknet, reference
from bnkernels.batchnorm import (
    NUMERICS, BatchNorm2d, BatchNormSaved, batch_norm_backward, batch_norm_forward,
    defaults,
)

__version__ = "0.1.0"

__all__ = ["NUMERICS", "BatchNorm2d", "BatchNormSaved", "batch_norm_backward",
           "batch_norm_forward", "darknet", "defaults", "reference"]
