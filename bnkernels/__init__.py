"""bnkernels: batch-normalization kernels in C, for NumPy arrays.

Two numerics families: Darknet-exact (``bnkernels.darknet``, and
``numerics="darknet"`` / ``"darknet-alexeyab"``) and standard (the BN paper /
PyTorch convention, ``numerics="standard"``). ``bnkernels.reference`` is the
pure-NumPy twin of every public function.

Large calls run on several threads when the extension was built with OpenMP
(``openmp_enabled()``); ``set_num_threads`` / ``get_num_threads`` control how
many. Every result is the same, bit for bit, whatever the number of threads.

Other Cython extensions can call the C kernels directly (``cimport`` from
``bnkernels._kernels``, see ``get_include``).
"""
import os

from bnkernels import darknet, distributed, reference
from bnkernels._kernels import get_num_threads, openmp_enabled, set_num_threads
from bnkernels.batchnorm import (
    ACTIVATIONS, NUMERICS, BatchNorm2d, BatchNormSaved, batch_norm_backward,
    batch_norm_forward, defaults,
)
from bnkernels.folding import fold_batchnorm

__version__ = "0.2.0"


def get_include():
    """The directory of bnkernels.h and bnkernels/_kernels.pxd, for building
    other extensions against the kernels.

    Pass it to ``cythonize(..., include_path=[bnkernels.get_include()])`` to
    ``cimport`` the kernels from ``bnkernels._kernels`` (see that .pxd), and to
    a C compiler's include path for ``#include "bnkernels.h"``. The build of
    bnkernels writes it (``pip install``, or ``setup.py build_ext --inplace``).

    Returns
    -------
    str
        ``<bnkernels package>/include``.
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")

__all__ = ["ACTIVATIONS", "NUMERICS", "BatchNorm2d", "BatchNormSaved",
           "batch_norm_backward", "batch_norm_forward", "darknet", "defaults", "distributed",
           "fold_batchnorm", "get_include", "get_num_threads", "openmp_enabled",
           "reference", "set_num_threads"]
