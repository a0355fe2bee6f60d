"""bnkernels: batch-normalization kernels in C, for NumPy arrays.

Two numerics families: Darknet-exact (``bnkernels.darknet``, and
``numerics="darknet"`` / ``"darknet-alexeyab"``) and standard (the BN paper /
PyTorch convention, ``numerics="standard"``). ``bnkernels.reference`` is the
pure-NumPy twin of every public function.

Large calls run on several threads when the extension was built with OpenMP
(``openmp_enabled()``); ``set_num_threads`` / ``get_num_threads`` control how
many. Every result is the same, bit for bit, whatever the number of threads.
A child process made by fork (``os.fork``, a multiprocessing 'fork' pool, a
PyTorch DataLoader's workers) runs the kernels on one thread, since OpenMP's
threads do not survive fork, until it calls ``set_num_threads`` itself (see
there for when that is safe).

Other Cython extensions can call the C kernels directly (``cimport`` from
``bnkernels._kernels``, see ``get_include``).

The packages above the core load on first use, not with ``import bnkernels``:
``bnkernels.nn`` (layers, Inception networks, optim, train), ``bnkernels.io``
(Darknet's .cfg and .weights files) and ``bnkernels.tools`` (bench, verify).
"""
import importlib
import os
from types import ModuleType


def _short_openmp_spin() -> None:
    """Ask GCC's OpenMP runtime (libgomp) to spin briefly, not for ~300,000
    turns, after each parallel kernel, unless the user chose a wait policy.

    Idle OpenMP threads that spin take the cores NumPy's BLAS threads need:
    with libgomp's default, a GoogLeNet training step (Conv2d on NumPy's
    BLAS between the C kernels) ran 3.5x slower on 2 cores; a spin count of
    10,000 keeps kernel calls as fast as before and the step as fast as one
    thread. libgomp reads this when it loads, which is when the extension
    below is imported, unless another module loaded libgomp first.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "10000"


_short_openmp_spin()

from bnkernels import darknet, distributed, reference  # noqa: E402 (after the spin setting)
from bnkernels._kernels import (  # noqa: E402
    cache_info, empty_cache, get_num_threads, get_streaming_threshold, openmp_enabled,
    set_cache_limit, set_num_threads, set_streaming_threshold, streaming_available,
)
from bnkernels.batchnorm import (  # noqa: E402
    ACTIVATIONS, NUMERICS, BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, BatchNormSaved,
    batch_norm_backward, batch_norm_forward, defaults,
)
from bnkernels.module import IncompatibleKeys, Module, StateDictError  # noqa: E402
from bnkernels.folding import fold_batchnorm  # noqa: E402

__version__ = "0.2.0"


def get_include() -> str:
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

__all__ = ["ACTIVATIONS", "NUMERICS", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
           "BatchNormSaved", "IncompatibleKeys", "Module", "StateDictError",
           "batch_norm_backward", "cache_info", "empty_cache", "batch_norm_forward", "darknet", "defaults", "distributed",
           "fold_batchnorm", "get_include", "get_num_threads", "io", "nn", "tools",
           "get_streaming_threshold", "openmp_enabled", "reference", "set_cache_limit", "set_num_threads",
           "set_streaming_threshold", "streaming_available"]

_LAZY = ("io", "nn", "tools")   # the packages above the core, loaded on first use


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        return importlib.import_module(f"bnkernels.{name}")
    raise AttributeError(f"module 'bnkernels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
