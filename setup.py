"""Build of the bnkernels C extension.

The kernels in csrc/ are compiled into bnkernels._kernels together with the
Cython layer. Floating-point flags matter: the Darknet-exact kernels must not be
contracted into fused multiply-adds or reordered, so the build uses
-ffp-contract=off (GCC, Clang) and never -ffast-math; MSVC gets /fp:precise.
"""
import os
import sys

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildExt(build_ext):
    """Pick flags by compiler family (unix-like vs MSVC)."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            args = ["/O2", "/fp:precise"]
        else:
            args = ["-O3", "-std=c11", "-fno-fast-math", "-ffp-contract=off",
                    "-fno-strict-aliasing"]
        for ext in self.extensions:
            ext.extra_compile_args = args + ext.extra_compile_args
        super().build_extensions()


kernels = Extension(
    "bnkernels._kernels",
    sources=["bnkernels/_kernels.pyx", "csrc/darknet.c", "csrc/standard.c"],
    include_dirs=[numpy.get_include(), "csrc"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    depends=["csrc/bnkernels.h", "csrc/dispatch.h", "csrc/loops.h", "csrc/darknet.inc", "csrc/standard.inc",
             "bnkernels/_kernels.pxd"],
)

setup(
    ext_modules=[kernels],
    cmdclass={"build_ext": BuildExt},
)
