"""Build fastbp's compiled core.  Metadata lives in pyproject.toml.

Environment switches:
  FASTBP_OPENMP=0      build without OpenMP (serial kernels)
  FASTBP_NATIVE=1      compile for this machine (-march=native) instead of
                       portable code with per-CPU loop versions
  FASTBP_BOUNDSCHECK=1 Cython bounds and wraparound checks on (debug/test build)
"""
import glob
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tools.build_support import compiler_flags  # noqa: E402

DEBUG = os.environ.get("FASTBP_BOUNDSCHECK", "0") == "1"


class BuildExt(build_ext):
    """Pick flags for the actual compiler: OpenMP if it works, else serial."""

    def build_extensions(self):
        compile_args, link_args, macros = compiler_flags(self.compiler)
        for ext in self.extensions:
            ext.extra_compile_args += compile_args
            ext.extra_link_args += link_args
            ext.define_macros += macros
        super().build_extensions()


# Every fastbp/*.pyx is a compiled module (fastbp._backend.MODULE_NAMES lists
# them for the Python side; a test checks the two agree).  A change to any
# header or .pxd rebuilds them all.
PYX = sorted(glob.glob("fastbp/*.pyx"))
DEPENDS = sorted(glob.glob("fastbp/src/*.h") + glob.glob("fastbp/*.pxd"))


def extension(pyx):
    name = os.path.splitext(os.path.basename(pyx))[0]
    return Extension(f"fastbp.{name}", [pyx], depends=DEPENDS,
                     include_dirs=[np.get_include(), "fastbp/src"],
                     define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")])


setup(
    ext_modules=cythonize(
        [extension(pyx) for pyx in PYX],
        compiler_directives={
            "language_level": 3, "boundscheck": DEBUG, "wraparound": DEBUG,
            "initializedcheck": DEBUG, "cdivision": True, "embedsignature": True,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
