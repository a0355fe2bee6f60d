"""Build of the bnkernels C extension.

The kernels in csrc/ are compiled into bnkernels._kernels together with the
Cython layer. Floating-point flags matter: the Darknet-exact kernels must not be
contracted into fused multiply-adds or reordered, so the build uses
-ffp-contract=off (GCC, Clang) and never -ffast-math; MSVC gets /fp:precise.

OpenMP: used when a probe program compiles and links with -fopenmp, or with
Apple clang's -Xpreprocessor -fopenmp and -lomp (Homebrew's libomp found in
its keg); MSVC gets /openmp. Otherwise the build is serial, with a warning.
BNKERNELS_OPENMP=0 builds serial on purpose.

MSVC compiles in C11 mode (/std:c11, Visual Studio 2019 16.8 or later).

BNKERNELS_REFERENCE=1 builds the reference tier of csrc/ alone (csrc/ref/,
-DBNKERNELS_REFERENCE_ONLY): plain loops, one thread, the same public names;
a check that the library is correct without its fast tier (csrc/fast/).

BNKERNELS_SANITIZE=address,undefined (any -fsanitize= list) builds a checking
extension with GCC or Clang's sanitizers; run Python with the ASan runtime
preloaded (see the README).

The C files compile in parallel, one job per CPU (build_ext -j N sets the
number of jobs), with GCC- or Clang-like compilers.

Debug information: kept by builds in the source tree (pip install -e,
build_ext --inplace) and sanitizer builds; a wheel or plain install is built
with -g0 and, on Linux, linked with -s (stripped).

bnkernels/include/ (bnkernels.get_include()) is written by the build, next to
the extension, from csrc/bnkernels.h and bnkernels/_kernels.pxd.
"""
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
import sys
import tempfile
import warnings

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


OPENMP_PROBE = r"""
#include <omp.h>
int main(void)
{
    int threads = 0;
    #pragma omp parallel reduction(+ : threads)
    threads += 1;
    return threads > 0 && omp_get_max_threads() > 0 ? 0 : 1;
}
"""


def openmp_candidates():
    """(compile args, link args) that may enable OpenMP, in the order tried:
    -fopenmp (GCC, LLVM's clang), then Apple clang's form, whose driver takes
    no -fopenmp: the flag passed to its preprocessor and LLVM's libomp linked,
    from Homebrew's libomp where it is installed (a keg outside the default
    paths), else from the default paths."""
    yield ["-fopenmp"], ["-fopenmp"]
    homes = [os.environ.get("HOMEBREW_PREFIX"), "/opt/homebrew", "/usr/local"]
    for home in dict.fromkeys(h for h in homes if h):
        prefix = os.path.join(home, "opt", "libomp")
        if os.path.isfile(os.path.join(prefix, "include", "omp.h")):
            yield (["-Xpreprocessor", "-fopenmp", "-I" + os.path.join(prefix, "include")],
                   ["-L" + os.path.join(prefix, "lib"), "-lomp"])
    yield ["-Xpreprocessor", "-fopenmp"], ["-lomp"]


def links_openmp(compiler, compile_args, link_args):
    """Whether the probe above compiles with compile_args and links with
    link_args."""
    tmp = tempfile.mkdtemp(prefix="bnkernels-openmp-")
    try:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
        compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
    except Exception:  # any compile or link failure means no usable OpenMP this way
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def openmp_disabled():
    return os.environ.get("BNKERNELS_OPENMP", "1").strip().lower() in ("0", "false", "no", "off")


def openmp_flags(compiler):
    """(compile args, link args) that enable OpenMP: /openmp for MSVC, else
    the first of openmp_candidates() with which the probe builds; None if
    none does (or BNKERNELS_OPENMP=0)."""
    if openmp_disabled():
        return None
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    for compile_args, link_args in openmp_candidates():
        if links_openmp(compiler, compile_args, link_args):
            return compile_args, link_args
    return None


# What bnkernels.get_include() holds, for other extensions: the C header and
# the .pxd they cimport (as bnkernels._kernels), copied from their one place.
INCLUDE_FILES = {"bnkernels.h": "csrc/bnkernels.h",
                 "bnkernels/_kernels.pxd": "bnkernels/_kernels.pxd"}


def copy_include(command, package_dir):
    """Copy INCLUDE_FILES into package_dir/include with a setuptools command."""
    for target, source in INCLUDE_FILES.items():
        path = os.path.join(package_dir, "include", target)
        command.mkpath(os.path.dirname(path))
        command.copy_file(source, path)


class BuildPy(build_py):
    """The pure-Python part of a wheel, plus bnkernels/include (csrc/ is not in
    the wheel)."""

    def run(self):
        super().run()
        if not self.editable_mode:
            copy_include(self, os.path.join(self.build_lib, "bnkernels"))


def compile_in_parallel(compiler, jobs):
    """Make compiler.compile run each source file as its own job, at most
    `jobs` at a time; the objects come back in the sources' order, and the
    first failure is raised once all jobs have ended."""
    serial = compiler.compile

    def compile(sources, output_dir=None, *args, **kwargs):
        if jobs < 2 or len(sources) < 2:
            return serial(sources, output_dir, *args, **kwargs)
        for source in sources:  # the object folders, made before the jobs race for them
            obj = compiler.object_filenames([source], output_dir=output_dir or "")[0]
            os.makedirs(os.path.dirname(obj) or ".", exist_ok=True)
        with ThreadPoolExecutor(jobs) as pool:
            done = [pool.submit(serial, [source], output_dir, *args, **kwargs)
                    for source in sources]
        return [obj for job in done for obj in job.result()]

    compiler.compile = compile


class BuildExt(build_ext):
    """Pick flags by compiler family (unix-like vs MSVC), with OpenMP where
    the compiler supports it."""

    in_tree = False  # set by run()

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            # C11 for _Pragma (the OpenMP loops of parallel.h)
            args = ["/O2", "/fp:precise", "/std:c11"]
        else:
            args = ["-O3", "-std=c11", "-fno-fast-math", "-ffp-contract=off",
                    "-fno-strict-aliasing"]
        link_args = []
        sanitize = os.environ.get("BNKERNELS_SANITIZE", "").strip()
        if sanitize:  # e.g. address,undefined: a checking build, see the README
            if self.compiler.compiler_type == "msvc":
                raise RuntimeError("BNKERNELS_SANITIZE needs GCC or Clang")
            flags = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
            if "undefined" in sanitize:
                flags.append("-fno-sanitize-recover=undefined")
            args = [a for a in args if a != "-O3"] + ["-O1"] + flags
            link_args += flags
        elif self.compiler.compiler_type != "msvc" and not self.in_tree:
            # a wheel or plain install: no debug information (Python's CFLAGS
            # has -g), and on Linux no symbol table past the dynamic one
            args.append("-g0")
            if sys.platform.startswith("linux"):
                link_args.append("-s")
        openmp = openmp_flags(self.compiler)
        if openmp is None and openmp_disabled():
            warnings.warn("bnkernels: building without OpenMP, as BNKERNELS_OPENMP asks: "
                          "the kernels will run on one thread")
        elif openmp is None:
            tried = ", then ".join(" ".join(dict.fromkeys(c + l)) for c, l in openmp_candidates())
            # a warning, not a print: pip 26.3 on relays a backend's warnings to
            # its normal output; no pip shows what a build prints without -v
            warnings.warn(f"bnkernels: building without OpenMP: the compiler built no "
                          f"OpenMP program with {tried} (on macOS: brew install libomp). "
                          f"The kernels will run on one thread")
        else:
            args += openmp[0]
            link_args += openmp[1]
        if self.compiler.compiler_type != "msvc":  # MSVC initializes itself in compile()
            jobs = self.parallel if type(self.parallel) is int else os.cpu_count()
            compile_in_parallel(self.compiler, jobs or 1)
        for ext in self.extensions:
            ext.extra_compile_args = args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
        super().build_extensions()

    def run(self):
        # build_ext --inplace or pip install -e: a build in the source tree, for
        # development, keeps its debug information (setuptools clears inplace
        # while it builds, so it is read here)
        self.in_tree = bool(self.inplace or getattr(self, "editable_mode", False))
        super().run()
        if self.inplace:  # build_ext --inplace, pip install -e: in the source tree
            copy_include(self, "bnkernels")


# csrc/ in two tiers: ref/ (plain loops, also the C oracle of the tests) and
# fast/ (lanes, tiling, streaming stores, threads). BNKERNELS_REFERENCE=1
# builds the reference tier alone behind the public names (a slow, correct
# library: CI checks it against the Darknet vectors and the float64 oracles).
REFERENCE_ONLY = os.environ.get("BNKERNELS_REFERENCE", "0").strip().lower() in (
    "1", "true", "yes", "on")
CSRC_SOURCES = ["csrc/geometry.c", "csrc/settings.c", "csrc/threads.c",
                "csrc/ref/reference.c", "csrc/fast/conv_direct.c",
                "csrc/gemm_pieces.c"]
if not REFERENCE_ONLY:
    CSRC_SOURCES += ["csrc/fast/conv_pool.c", "csrc/fast/darknet.c",
                     "csrc/fast/darknet_ofast.c", "csrc/fast/darknet_quick.c",
                     "csrc/fast/standard.c", "csrc/fast/stream.c"]
CSRC_DEPENDS = ["csrc/bnkernels.h", "csrc/compiler.h", "csrc/formulas.h",
                "csrc/gemm_pieces.h", "csrc/geometry.h", "csrc/parallel.h", "csrc/ref/reference.h",
                "csrc/ref/rename.h", "csrc/ref/unrename.h", "csrc/ref/rename_public.h",
                "csrc/ref/darknet.inc", "csrc/ref/darknet_ofast.inc", "csrc/ref/standard.inc",
                "csrc/ref/conv_pool.inc",
                "csrc/fast/dispatch.h", "csrc/fast/lanes.h", "csrc/fast/prefetch.h",
                "csrc/fast/stream.h", "csrc/fast/stream_twins.inc",
                "csrc/fast/darknet.inc", "csrc/fast/darknet_ofast.inc",
                "csrc/fast/darknet_quick.h", "csrc/fast/darknet_rows.inc",
                "csrc/fast/conv_direct.h",
                "csrc/fast/tiles.inc",
                "csrc/fast/standard.inc",
                "csrc/fast/standard_nhwc.inc", "csrc/fast/standard_sums.inc",
                "csrc/fast/conv_pool.inc"]

kernels = Extension(
    "bnkernels._kernels",
    sources=["bnkernels/_kernels.pyx", *CSRC_SOURCES],
    include_dirs=[numpy.get_include(), "csrc"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    + ([("BNKERNELS_REFERENCE_ONLY", "1")] if REFERENCE_ONLY else []),
    depends=[*CSRC_DEPENDS, "bnkernels/_kernels.pxd", "bnkernels/bnkernels_h.pxd",
             "bnkernels/_capi.pxi", "bnkernels/_dispatch.pxi", "bnkernels/_conv_pool.pxi",
             "bnkernels/_products.pxi"],
)

setup(
    ext_modules=[kernels],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
