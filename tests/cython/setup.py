from Cython.Build import cythonize
from setuptools import Extension, setup

import bnkernels

setup(ext_modules=cythonize([Extension("use_kernels", ["use_kernels.pyx"])],
                            include_path=[bnkernels.get_include()]))
