"""Every SIMD level of the C loops (src/fb_loops.h) gives the same numbers.

The installed extension runs only the loop version that suits this CPU (the
AVX-512 intrinsic loops, or the target_clones version the resolver picks),
so the other versions would go untested.  Here the header is compiled once
per path (baseline x86-64, AVX2, AVX-512 generic loops with
FB_NO_AVX512_KERNELS, AVX-512 intrinsics directly under -march=x86-64-v4 and
through the runtime dispatch of a portable build, where the CPU has them),
with GCC (target_clones) and with Clang (hand dispatch, its v3 and baseline
versions reached through the dispatch by capping FB_MAX_CPU_LEVEL) where each
is installed, into a small shared library, and its sigmoid and softmax + cross-entropy are
compared with the NumPy reference on special values, dense sweeps and every
short length (the intrinsic loops end in a masked vector).
"""
import ctypes
import platform
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import cpu_flags
from fastbp.reference.functions import sigmoid, softmax_cross_entropy

HEADER_DIR = Path(__file__).resolve().parents[1] / "fastbp" / "src"

WRAPPERS = r"""
#include "fb_loops.h"
const char *level(void) { return fb_simd_level(); }
void sigmoid_d(const double *x, double *out, ptrdiff_t n) { fb_sigmoid_forward_d(x, out, n); }
void sigmoid_f(const float *x, float *out, ptrdiff_t n) { fb_sigmoid_forward_f(x, out, n); }
double softmax_d(const double *x, const int64_t *t, double *y, double *loss,
                 ptrdiff_t n, ptrdiff_t c) { return fb_softmax_xent_labels_d(x, t, y, loss, n, c); }
double softmax_f(const float *x, const int64_t *t, float *y, float *loss,
                 ptrdiff_t n, ptrdiff_t c) { return fb_softmax_xent_labels_f(x, t, y, loss, n, c); }
double softmax_onehot_d(const double *x, const double *t, double *y, double *loss,
                        ptrdiff_t n, ptrdiff_t c) { return fb_softmax_xent_onehot_d(x, t, y, loss, n, c); }
double softmax_onehot_f(const float *x, const float *t, float *y, float *loss,
                        ptrdiff_t n, ptrdiff_t c) { return fb_softmax_xent_onehot_f(x, t, y, loss, n, c); }
void relu_forward_d(const double *x, double *out, uint8_t *mask, ptrdiff_t n) { fb_relu_forward_d(x, out, mask, n); }
void relu_forward_f(const float *x, float *out, uint8_t *mask, ptrdiff_t n) { fb_relu_forward_f(x, out, mask, n); }
void relu_backward_d(const double *d, const uint8_t *mask, double *dx, ptrdiff_t n) { fb_relu_backward_d(d, mask, dx, n); }
void relu_backward_f(const float *d, const uint8_t *mask, float *dx, ptrdiff_t n) { fb_relu_backward_f(d, mask, dx, n); }
void relu_grad_d(const double *x, double *out, ptrdiff_t n) { fb_relu_grad_d(x, out, n); }
void relu_grad_f(const float *x, float *out, ptrdiff_t n) { fb_relu_grad_f(x, out, n); }
void sigmoid_backward_d(const double *d, const double *y, double *dx, ptrdiff_t n) { fb_sigmoid_backward_d(d, y, dx, n); }
void sigmoid_backward_f(const float *d, const float *y, float *dx, ptrdiff_t n) { fb_sigmoid_backward_f(d, y, dx, n); }
void sigmoid_grad_d(const double *x, double *out, ptrdiff_t n) { fb_sigmoid_grad_d(x, out, n); }
void sigmoid_grad_f(const float *x, float *out, ptrdiff_t n) { fb_sigmoid_grad_f(x, out, n); }
"""


# FASTBP_NATIVE: one version for the given -march, as setup.py's native build
NATIVE = ["-DFASTBP_NATIVE=1"]
# Compilers the header is built with: GCC clones the portable loops with
# target_clones, Clang dispatches them by hand (fb_generic_versions.h).
COMPILERS = [cc for cc in ("gcc", "clang") if shutil.which(cc)]


def _levels():
    """(name, compiler, extra flags, True if the AVX-512 intrinsic loops run,
    words fb_simd_level() must say or None)."""
    flags = cpu_flags()
    levels = []
    for cc in COMPILERS:
        levels.append((f"{cc}-baseline", cc, NATIVE, False, None))
        if {"avx2", "fma"} <= flags:
            levels.append((f"{cc}-x86-64-v3", cc, [*NATIVE, "-march=x86-64-v3"], False, None))
        if {"avx512f", "avx512dq", "avx512vl", "avx512bw"} <= flags:
            levels += [
                (f"{cc}-x86-64-v4", cc, [*NATIVE, "-march=x86-64-v4",
                                         "-DFB_NO_AVX512_KERNELS=1"], False, None),
                (f"{cc}-x86-64-v4-intrinsics", cc, [*NATIVE, "-march=x86-64-v4"], True, None),
                # the portable build: per-CPU loop versions + the runtime CPU check
                (f"{cc}-portable-dispatch", cc, [], True, "x86-64-v4 loop versions"),
                (f"{cc}-portable-dispatch-generic", cc, ["-DFB_NO_AVX512_KERNELS=1"], False,
                 "AVX-512 (x86-64-v4 loop versions)"),
            ]
        if cc == "clang" and {"avx2", "fma", "bmi2"} <= flags:
            # the hand dispatch's lower versions, chosen through FB_GENERIC on this CPU
            levels += [
                ("clang-portable-dispatch-v3", cc, ["-DFB_NO_AVX512_KERNELS=1",
                                                    "-DFB_MAX_CPU_LEVEL=1"], False,
                 "AVX2+FMA (x86-64-v3 loop versions)"),
                ("clang-portable-dispatch-baseline", cc, ["-DFB_NO_AVX512_KERNELS=1",
                                                          "-DFB_MAX_CPU_LEVEL=0"], False,
                 "SSE2 (x86-64 baseline loop versions)"),
            ]
    return levels


pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                       reason="the ISA levels compiled here are x86-64 ones"),
    pytest.mark.skipif(not COMPILERS, reason="needs gcc or clang to compile the header"),
    pytest.mark.skipif(not (HEADER_DIR / "fb_loops.h").exists(),
                       reason="needs the source checkout's fastbp/src/fb_loops.h"),
]


@pytest.fixture(scope="module", params=_levels(), ids=lambda level: level[0])
def simd_lib(request, tmp_path_factory):
    name, cc, flags, intrinsics, words = request.param
    tmp = tmp_path_factory.mktemp(name)
    source = tmp / "wrap.c"
    source.write_text(WRAPPERS)
    library = tmp / "libwrap.so"
    cmd = [cc, "-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
           "-DFB_OPENMP_SIMD=1", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function",
           "-shared", "-fPIC", *flags, f"-I{HEADER_DIR}", str(source), "-o", str(library),
           "-lm"]
    subprocess.run(cmd, check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.level.restype = ctypes.c_char_p
    for dtype, suffix in ((np.float64, "d"), (np.float32, "f")):
        ptr = np.ctypeslib.ndpointer(dtype, flags="C")
        labels = np.ctypeslib.ndpointer(np.int64, flags="C")
        for kernel in ("sigmoid", "relu_grad", "sigmoid_grad"):
            getattr(lib, f"{kernel}_{suffix}").argtypes = [ptr, ptr, ctypes.c_ssize_t]
        getattr(lib, f"sigmoid_backward_{suffix}").argtypes = [ptr, ptr, ptr, ctypes.c_ssize_t]
        # ReLU takes raw addresses: the tests hand it misaligned slices
        getattr(lib, f"relu_forward_{suffix}").argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_ssize_t]
        getattr(lib, f"relu_backward_{suffix}").argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_ssize_t]
        for kernel, target in ((f"softmax_{suffix}", labels), (f"softmax_onehot_{suffix}", ptr)):
            getattr(lib, kernel).argtypes = [ptr, target, ptr, ptr, ctypes.c_ssize_t,
                                             ctypes.c_ssize_t]
            getattr(lib, kernel).restype = ctypes.c_double
    lib.intrinsics = intrinsics
    lib.level_words = words
    return lib


def test_level_reports_the_path(simd_lib):
    level = simd_lib.level().decode()
    assert ("AVX-512 intrinsics" in level) == simd_lib.intrinsics, level
    if simd_lib.level_words is not None:
        assert simd_lib.level_words in level, level


SPECIAL = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 0.5, -0.5, 36.0, -36.0,
                    -700.0, -708.4, -709.8, -740.0, -745.1, -745.2, -746.0, -1000.0, 710.0,
                    1000.0, 1e300, -1e300, np.inf, -np.inf, np.nan])


# Tolerances against fastbp.reference.  The reference itself (NumPy's exp and
# a division) is within 2.4 ulp of the exact sigmoid, every path here within
# 2.7 ulp (measured against long double over [-750, 40] and random normals:
# generic loops 2.6, the intrinsics with their table-driven exp 2.63); they
# differ from each other by <= 4.5e-16 relative (2 ulp of 2**-52).  So 1e-15 (4.5 ulp) for float64.  float32 is compared with the
# float64 reference: measured <= 2.1e-7 relative (1.8 ulp of 2**-23), bound
# 4e-7.  Subnormal results get an absolute bound instead.
RTOL_D = 1e-15
RTOL_F = 4e-7


def _sigmoid(lib, x):
    """lib's sigmoid of x, checking that it writes exactly x.size elements."""
    out = np.full(x.size + 20, 7.0, dtype=x.dtype)   # sentinels after the end
    getattr(lib, "sigmoid_d" if x.dtype == np.float64 else "sigmoid_f")(x, out, x.size)
    assert np.all(out[x.size:] == 7.0), "wrote past the end"
    return out[:x.size]


def _check_sigmoid(x, out):
    exact = sigmoid(x.astype(np.float64))
    assert np.array_equal(np.isnan(out), np.isnan(exact))
    finite = ~np.isnan(exact)
    if x.dtype == np.float64:
        # relative where the result is normal, absolute at the subnormal end
        np.testing.assert_allclose(out[finite], exact[finite], rtol=RTOL_D, atol=1e-320)
    else:
        np.testing.assert_allclose(out[finite], exact[finite], rtol=RTOL_F, atol=1e-44)


def test_sigmoid_float64_special_values_and_sweep(simd_lib):
    x = np.concatenate([SPECIAL, np.linspace(-800, 800, 100_003)])
    out = _sigmoid(simd_lib, x)
    _check_sigmoid(x, out)
    # the exact ends: sigmoid(+inf) = 1, sigmoid(-inf) = 0, NaN stays NaN
    assert out[list(SPECIAL).index(np.inf)] == 1.0
    assert out[list(SPECIAL).index(-np.inf)] == 0.0


def test_sigmoid_float32_sweep(simd_lib):
    special = SPECIAL[np.abs(np.nan_to_num(SPECIAL, posinf=0, neginf=0)) < 3e38]
    x = np.concatenate([special, [np.inf, -np.inf, np.nan, 1e-45, -1e-45, -87.5, -103.9, -104.5],
                        np.linspace(-120, 120, 50_001)]).astype(np.float32)
    out = _sigmoid(simd_lib, x)
    _check_sigmoid(x, out)
    assert out[-50_001 - 8] == 1.0 and out[-50_001 - 7] == 0.0   # +inf, -inf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_every_short_length_and_odd_sizes(simd_lib, dtype):
    """Lengths 0..40 and a few around vector multiples: the masked tails."""
    rng = np.random.default_rng(3)
    for n in [*range(41), 1000, 4097]:
        x = (rng.standard_normal(n) * 30).astype(dtype)
        if n > 2:
            x[-1], x[n // 2] = np.nan, -np.inf    # specials in the tail and the body
        _check_sigmoid(x, _sigmoid(simd_lib, x))


def _softmax(lib, x, t):
    """lib's softmax + cross-entropy of x (N, C) against labels or targets t."""
    n, c = x.shape
    suffix = "d" if x.dtype == np.float64 else "f"
    kernel = getattr(lib, f"softmax_{suffix}" if t.ndim == 1 else f"softmax_onehot_{suffix}")
    y = np.full(n * c + 20, 7.0, dtype=x.dtype)     # sentinels after the end
    loss = np.empty(n, dtype=x.dtype)
    total = kernel(x, t, y, loss, n, c)
    assert np.all(y[n * c:] == 7.0), "wrote past the end"
    return y[:n * c].reshape(n, c), loss, total


def _check_softmax(x, t, y, loss, total):
    """Against the float64 reference of the same inputs, within error bounds
    of the computation: x - max(x) is rounded to the working precision
    (absolute error eps * |x - max|, which exp turns into that relative
    error), then exp (<= 2.6 ulp), the row sum (vector lanes, rows up to 4097
    long) and 1/sum: 8 eps on top.  The loss log(sum) - (x_t - max) cancels
    when the target class dominates, so its bound is 8 eps times the size of
    the terms, not of the result, plus sqrt(C) eps for soft targets' sum of
    C terms (rounding errors of a long sum grow like a random walk)."""
    xd = x.astype(np.float64)
    w = np.eye(x.shape[1])[t] if t.ndim == 1 else t.astype(np.float64)
    y_ref, loss_ref = softmax_cross_entropy(xd, t if t.ndim == 1 else w)
    eps = np.finfo(x.dtype).eps
    assert np.array_equal(np.isnan(y), np.isnan(y_ref))
    assert np.array_equal(np.isnan(loss), np.isnan(loss_ref))
    with np.errstate(invalid="ignore"):
        shifted = np.abs(xd - xd.max(axis=1, keepdims=True))
        ok = ~np.isnan(y_ref)
        y_bound = np.where(y_ref != 0, (8 * eps + eps * shifted) * np.abs(y_ref), 0)
        y_bound += np.finfo(x.dtype).smallest_subnormal
        assert np.all(np.abs(y - y_ref)[ok] <= y_bound[ok])
        terms = np.where(w != 0, np.abs(w) * shifted, 0).sum(axis=1)
        ok = ~np.isnan(loss_ref)
        loss_bound = (8 + np.sqrt(x.shape[1])) * eps * (1 + np.abs(loss_ref) + terms)
        assert np.all(np.abs(loss - loss_ref)[ok] <= loss_bound[ok])
    if ok.all():
        assert abs(total - loss_ref.sum()) <= loss_bound.sum()


# rows of 6+ classes run the intrinsic loops (shorter ones the generic loops):
# every tail length 0..15 of a float32 row and 0..7 of a float64 row; batches
# of more than FB_LOG_BLOCK (256) rows, which the intrinsic loops take in blocks
SHAPES = [(1, 1), (7, 3), (100, 10), (5, 2049), (3000, 1), (4, 1000), (3, 4097),
          (600, 7), (257, 33), (513, 5),
          *[(3, c) for c in range(1, 41)], *[(2, c) for c in range(41, 64)]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("targets", ["labels", "onehot", "soft"])
def test_softmax_cross_entropy_matches_reference(simd_lib, dtype, targets):
    for shape in SHAPES:
        rng = np.random.default_rng(sum(shape))
        x = (rng.standard_normal(shape) * 20).astype(dtype)
        labels = rng.integers(0, shape[1], shape[0]).astype(np.int64)
        if targets == "labels":
            t = labels
        elif targets == "onehot":
            t = np.eye(shape[1], dtype=dtype)[labels]
        else:
            t = rng.dirichlet(np.ones(shape[1]), shape[0]).astype(dtype)
        _check_softmax(x, t, *_softmax(simd_lib, x, t))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", [5, 10, 16, 19, 33, 45, 1000])
def test_softmax_special_rows(simd_lib, dtype, c):
    """NaN or +inf logits make their row NaN; -inf logits are probability 0
    and, with a target weight of 0, cost nothing; large logits don't overflow."""
    rng = np.random.default_rng(c)
    x = (rng.standard_normal((6, c)) * 5).astype(dtype)
    x[0, c - 1] = np.nan        # in the masked tail when c % 8 != 0
    x[1, 0] = np.inf
    x[2, 1:] = -np.inf          # one finite logit: probability 1
    x[3, c // 2] = -np.inf
    x[4] += 1e4 if dtype == np.float64 else 1e3
    labels = np.array([0, 0, 0, 0, 0, c - 1], dtype=np.int64)
    onehot = np.eye(c, dtype=dtype)[labels]
    for t in (labels, onehot):
        y, loss, total = _softmax(simd_lib, x, t)
        assert np.isnan(y[:2]).all() and np.isnan(loss[:2]).all()
        assert y[2, 0] == 1.0 and (y[2, 1:] == 0).all() and loss[2] == 0.0
        assert y[3, c // 2] == 0.0 and np.isfinite(loss[3])
        _check_softmax(x[2:], t[2:], y[2:], loss[2:], float(loss[2:].sum()))


# ReLU: the AVX-512 path streams outputs of >= 2 MiB (FB_STREAM_MIN_BYTES)
# after a generic head up to a 64-byte boundary and before a generic tail.
# Sizes on both sides of the threshold, outputs starting at every element
# offset within a cache line; results must be exact, nothing written outside.
RELU_SIZES = [0, 1, 17, 1000, (1 << 21) // 8 - 1, (1 << 21) // 4 + 37]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("size", RELU_SIZES)
def test_relu_exact_at_every_alignment(simd_lib, dtype, size):
    rng = np.random.default_rng(size)
    suffix = "d" if dtype == np.float64 else "f"
    x = rng.standard_normal(size + 16).astype(dtype)
    x[:: 7] = -0.0
    x[3:: 11] = np.nan
    x[5:: 13] = np.inf
    x[6:: 17] = -np.inf
    dout = rng.standard_normal(size + 16).astype(dtype)
    lanes = 64 // np.dtype(dtype).itemsize
    for offset in (0, 1, lanes // 2 + 1, lanes - 1):
        xs, ds = x[offset:offset + size], dout[offset:offset + size]
        out = np.full(size + 2 * lanes, 7.0, dtype)
        mask = np.full(size + 2 * lanes, 9, np.uint8)
        dx = np.full(size + 2 * lanes, 7.0, dtype)
        getattr(simd_lib, f"relu_forward_{suffix}")(
            xs.ctypes.data, out[offset:].ctypes.data, mask[offset:].ctypes.data, size)
        expected_mask = xs <= 0
        assert np.array_equal(out[offset:offset + size], np.where(expected_mask, 0, xs),
                              equal_nan=True)
        assert np.array_equal(mask[offset:offset + size], expected_mask.astype(np.uint8))
        getattr(simd_lib, f"relu_backward_{suffix}")(
            ds.ctypes.data, mask[offset:].ctypes.data, dx[offset:].ctypes.data, size)
        assert np.array_equal(dx[offset:offset + size], np.where(expected_mask, 0, ds))
        for buffer, fill in ((out, 7.0), (mask, 9), (dx, 7.0)):
            assert np.all(buffer[:offset] == fill) and np.all(buffer[offset + size:] == fill), \
                "wrote outside the output"


# The portable-only loops (one version each, target_clones): sigmoid
# backward, the derivatives of ReLU and sigmoid.  Every short length (the
# vector tails) and specials; sigmoid_grad within a few ulp of (1 - s) * s
# (plus s's own error where 1 - s cancels), the others exact.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_portable_only_loops_every_short_length(simd_lib, dtype):
    suffix = "d" if dtype == np.float64 else "f"
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).smallest_subnormal)
    rng = np.random.default_rng(5)
    for n in [*range(41), 1000, 4097]:
        x = (rng.standard_normal(n) * 30).astype(dtype)
        if n > 4:
            x[:4] = np.nan, -0.0, np.inf, -np.inf
        y = rng.random(n).astype(dtype)
        dout = rng.standard_normal(n).astype(dtype)
        outs = {name: np.full(n + 20, 7.0, dtype) for name in ("rg", "sg", "sb")}
        getattr(simd_lib, f"relu_grad_{suffix}")(x, outs["rg"], n)
        getattr(simd_lib, f"sigmoid_grad_{suffix}")(x, outs["sg"], n)
        getattr(simd_lib, f"sigmoid_backward_{suffix}")(dout, y, outs["sb"], n)
        for out in outs.values():
            assert np.all(out[n:] == 7.0), "wrote past the end"
        np.testing.assert_array_equal(outs["rg"][:n], (x > 0).astype(dtype))
        np.testing.assert_array_equal(outs["sb"][:n], dout * (1 - y) * y)
        s = sigmoid(x.astype(np.float64))
        exact = (1 - s) * s
        grad = outs["sg"][:n]
        assert np.array_equal(np.isnan(grad), np.isnan(x))
        ok = ~np.isnan(x)
        bound = 8 * eps * exact + 4 * eps * s + 2 * tiny
        assert (np.abs(grad - exact)[ok] <= bound[ok]).all()


def test_entry_points_reach_portable_loops_through_fb_generic():
    """Under Clang's hand dispatch FB_NAME(fb_generic_x) is always the SSE2
    version; the entry points must call FB_GENERIC(fb_generic_x), which picks
    the CPU's (every FB_CLONES loop is reached from an entry point)."""
    dispatch = (HEADER_DIR / "fb_dispatch.h").read_text()
    assert "FB_NAME(fb_generic_" not in dispatch
    loops = (HEADER_DIR / "fb_generic_loops.h").read_text()
    cloned = set(re.findall(r"FB_CLONES\s+static\s+\w+\s+FB_NAME\((fb_generic_\w+)\)", loops))
    called = set(re.findall(r"FB_GENERIC\((fb_generic_\w+)\)", dispatch))
    assert cloned and cloned == called
