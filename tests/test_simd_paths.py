"""Every SIMD level of src/fb_simd.h gives the same numbers.

The installed extension runs only the loop version that suits this CPU (the
target_clones resolver picks it), so the other versions would go untested.
Here the header is compiled once per ISA level (baseline x86-64, AVX2,
AVX-512 where the CPU has them) into a small shared library and its sigmoid
and softmax are compared with the NumPy reference on special values and a
dense sweep.
"""
import ctypes
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastbp.reference.functions import sigmoid, softmax_cross_entropy

HEADER_DIR = Path(__file__).resolve().parents[1] / "fastbp" / "src"

WRAPPERS = r"""
#include "fb_simd.h"
void sigmoid_d(const double *x, double *out, ptrdiff_t n) { fb_sigmoid_forward_d(x, out, n); }
void sigmoid_f(const float *x, float *out, ptrdiff_t n) { fb_sigmoid_forward_f(x, out, n); }
double softmax_d(const double *x, const int64_t *t, double *y, double *loss,
                 ptrdiff_t n, ptrdiff_t c) { return fb_softmax_xent_labels_d(x, t, y, loss, n, c); }
"""


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _levels():
    flags = _cpu_flags()
    levels = [("baseline", [])]
    if {"avx2", "fma"} <= flags:
        levels.append(("x86-64-v3", ["-march=x86-64-v3"]))
    if {"avx512f", "avx512dq", "avx512vl", "avx512bw"} <= flags:
        levels.append(("x86-64-v4", ["-march=x86-64-v4"]))
    return levels


pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                       reason="the ISA levels compiled here are x86-64 ones"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to compile the header"),
    pytest.mark.skipif(not (HEADER_DIR / "fb_simd.h").exists(),
                       reason="needs the source checkout's fastbp/src/fb_simd.h"),
]


@pytest.fixture(scope="module", params=_levels(), ids=lambda level: level[0])
def simd_lib(request, tmp_path_factory):
    name, flags = request.param
    tmp = tmp_path_factory.mktemp(name)
    source = tmp / "wrap.c"
    source.write_text(WRAPPERS)
    library = tmp / "libwrap.so"
    # FASTBP_NATIVE: one version for the given -march, as setup.py's native build
    cmd = ["gcc", "-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
           "-DFB_OPENMP_SIMD=1", "-DFASTBP_NATIVE=1", "-Wall", "-Werror",
           "-Wno-unused-function", "-shared", "-fPIC", *flags, f"-I{HEADER_DIR}",
           str(source), "-o", str(library), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    ptr = np.ctypeslib.ndpointer
    lib.sigmoid_d.argtypes = [ptr(np.float64, flags="C"), ptr(np.float64, flags="C"), ctypes.c_ssize_t]
    lib.sigmoid_f.argtypes = [ptr(np.float32, flags="C"), ptr(np.float32, flags="C"), ctypes.c_ssize_t]
    lib.softmax_d.argtypes = [ptr(np.float64, flags="C"), ptr(np.int64, flags="C"),
                              ptr(np.float64, flags="C"), ptr(np.float64, flags="C"),
                              ctypes.c_ssize_t, ctypes.c_ssize_t]
    lib.softmax_d.restype = ctypes.c_double
    return lib


SPECIAL = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 0.5, -0.5, 36.0, -36.0,
                    -700.0, -708.4, -709.8, -740.0, -745.1, -745.2, -746.0, -1000.0, 710.0,
                    1000.0, 1e300, -1e300, np.inf, -np.inf, np.nan])


def test_sigmoid_float64_special_values_and_sweep(simd_lib):
    x = np.concatenate([SPECIAL, np.linspace(-800, 800, 100_003)])
    out = np.empty_like(x)
    simd_lib.sigmoid_d(x, out, x.size)
    expected = sigmoid(x)
    assert np.array_equal(np.isnan(out), np.isnan(expected))
    finite = ~np.isnan(expected)
    # relative where the result is normal, absolute at the subnormal end
    np.testing.assert_allclose(out[finite], expected[finite], rtol=4e-15, atol=1e-320)


def test_sigmoid_float32_sweep(simd_lib):
    special = SPECIAL[np.abs(np.nan_to_num(SPECIAL, posinf=0, neginf=0)) < 3e38]
    x = np.concatenate([special, [np.inf, -np.inf, np.nan, 1e-45, -1e-45, -87.5, -103.9, -104.5],
                        np.linspace(-120, 120, 50_001)]).astype(np.float32)
    out = np.empty_like(x)
    simd_lib.sigmoid_f(x, out, x.size)
    exact = sigmoid(x.astype(np.float64))
    assert np.array_equal(np.isnan(out), np.isnan(exact))
    finite = ~np.isnan(exact)
    np.testing.assert_allclose(out[finite], exact[finite], rtol=1e-6, atol=1e-44)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (100, 10), (5, 2049), (3000, 1)])
def test_softmax_cross_entropy_matches_reference(simd_lib, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) * 20
    t = rng.integers(0, shape[1], shape[0]).astype(np.int64)
    y = np.empty_like(x)
    loss = np.empty(shape[0])
    total = simd_lib.softmax_d(x, t, y, loss, shape[0], shape[1])
    y_ref, loss_ref = softmax_cross_entropy(x, t)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12, atol=1e-12)
    assert total == pytest.approx(loss_ref.sum(), rel=1e-12)
