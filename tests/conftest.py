"""Shared helpers for the compiled-vs-reference test suite.

The test modules import the plain helpers below directly
(``from conftest import assert_close, with_layout, ...``); pytest puts this
directory on sys.path.  Fixtures live at the bottom.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings, strategies as st
from hypothesis.extra import numpy as hnp

from fastbp._env import env_flag

PURE = env_flag("FASTBP_PURE")

# The full MNIST files sit beside the repository (../shared/data/mnist) in
# development and CI; $FASTBP_MNIST_FULL points at another directory.
SHARED_MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (an empty set where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def run_isolated(code, timeout=120, unset=()):
    """Run ``code`` (dedented) in a fresh interpreter on the fastbp under test,
    without the environment variables named in ``unset``; return
    ``(returncode, stdout, stderr)``.  For cases that crashed the process
    once (a regression is then a failing test, not a dead run), or that need
    another environment."""
    import fastbp
    package_parent = str(Path(fastbp.__file__).resolve().parents[1])
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    # cwd: the tests directory (`python -c` puts the cwd first on sys.path;
    # the repository root would put the uncompiled checkout there)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          cwd=os.path.dirname(os.path.abspath(__file__)), capture_output=True,
                          text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def full_mnist_candidate():
    """Where the full MNIST files are looked for: $FASTBP_MNIST_FULL, else SHARED_MNIST_DIR."""
    env = os.environ.get("FASTBP_MNIST_FULL")
    return Path(env).expanduser() if env else SHARED_MNIST_DIR


def full_mnist_dir():
    """The directory holding all four full MNIST files (raw or gzipped), or None.

    Use as ``pytest.mark.skipif(full_mnist_dir() is None, reason=...)``.
    """
    from fastbp.datasets import MNIST_FILES
    directory = full_mnist_candidate()
    if all((directory / name).is_file() or (directory / (name + ".gz")).is_file()
           for name in MNIST_FILES):
        return directory
    return None


FLOAT_DTYPES = (np.float32, np.float64)
LAYOUTS = ("C", "F", "strided", "readonly")

# Relative tolerance of a compiled result against the reference, per dtype.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

# Hypothesis: no deadline (first calls pay for imports/BLAS warm-up), few
# examples per test so the whole suite stays well under a minute.
# FASTBP_HYPOTHESIS_DERANDOMIZE=1 (CI sets it) draws the same examples every
# run, so a CI run can't fail on a case no earlier run saw; a plain pytest
# explores new ones each time (what found the subnormal-gradient case).
settings.register_profile("derandomized", derandomize=True, database=None)
if env_flag("FASTBP_HYPOTHESIS_DERANDOMIZE"):
    settings.load_profile("derandomized")
HYPOTHESIS = settings(deadline=None, max_examples=40)


def rtol_for(dtype):
    return RTOL[np.dtype(dtype)]


def assert_close(fast, ref, dtype, scale=1.0):
    """``fast`` matches ``ref``: same type, shape and dtype (== ``dtype``), and
    values within the per-dtype relative tolerance, with an absolute floor of
    ``rtol * scale`` (pass the magnitude a sum of products can reach, e.g.
    D * max|x| * max|W| for a GEMM).  NaN must match NaN.
    Python floats (losses) compare as scalars; ``dtype`` picks the tolerance.
    """
    rtol = rtol_for(dtype)
    if isinstance(ref, float):
        assert type(fast) is float, f"expected a Python float, got {type(fast).__name__}"
        assert fast == pytest.approx(ref, rel=rtol, abs=rtol * scale, nan_ok=True)
        return
    assert isinstance(fast, np.ndarray), f"expected an ndarray, got {type(fast).__name__}"
    assert isinstance(ref, np.ndarray)
    assert fast.shape == ref.shape, (fast.shape, ref.shape)
    assert fast.dtype == ref.dtype == np.dtype(dtype), (fast.dtype, ref.dtype, dtype)
    np.testing.assert_allclose(fast, ref, rtol=rtol, atol=rtol * scale, equal_nan=True)


def assert_identical(fast, ref):
    """Bit-for-bit the same values: dtype, shape, NaN positions, signs of zeros."""
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.dtype == ref.dtype, (fast.dtype, ref.dtype)
    assert fast.shape == ref.shape, (fast.shape, ref.shape)
    assert np.array_equal(fast, ref, equal_nan=fast.dtype.kind in "fc")
    if fast.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(fast), np.signbit(ref))


def amax(a):
    """Largest magnitude in ``a`` (0 for an empty array), as a Python float."""
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def gemm_scale(inner, a, b):
    """Tolerance scale of a product summed over ``inner`` terms of a and b."""
    return max(1.0, inner * amax(a) * amax(b))


def with_layout(a, layout):
    """A copy of ``a`` with the same values in the requested memory layout.

    "C" / "F": contiguous in that order; "strided": a view that skips
    elements of a bigger array filled with garbage (NaN for floats), so a
    kernel reading the wrong memory gives a wrong answer; "readonly": a
    C-contiguous copy with the writeable flag cleared.
    """
    a = np.asarray(a)
    if layout == "C":
        return np.array(a, order="C", copy=True)
    if layout == "F":
        return np.array(a, order="F", copy=True)
    if layout == "strided":
        steps = (2, 3, 2, 2, 2)[:a.ndim]
        garbage = np.nan if a.dtype.kind == "f" else 99
        big = np.full(tuple(s * n for s, n in zip(steps, a.shape)), garbage, dtype=a.dtype)
        index = tuple(slice(None, None, s) for s in steps)
        big[index] = a
        view = big[index]
        assert view.shape == a.shape
        return view
    if layout == "readonly":
        out = np.array(a, order="C", copy=True)
        out.setflags(write=False)
        return out
    raise ValueError(layout)


def random_array(rng, shape, dtype=np.float64, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def with_special_zeros(rng, x):
    """``x`` with a few exact +0.0 and -0.0 entries (ReLU's mask boundary)."""
    x = np.array(x, copy=True)
    flat = x.reshape(-1)
    if flat.size:
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 10))] = 0.0
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 10))] = -0.0
    return x


def float_arrays(dtype, shape, low=-1e3, high=1e3):
    """Hypothesis strategy: finite arrays of ``dtype`` with values in [low, high]."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    return hnp.arrays(dtype, shape,
                      elements=st.floats(low, high, width=width,
                                         allow_nan=False, allow_infinity=False))


def small_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims,
                            min_side=min_side, max_side=max_side)


def rel_error(a, b):
    """||a - b|| / (||a|| + ||b||): the gradient-check error measure."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: reproducible, different per test."""
    seed = sum(request.node.nodeid.encode()) * 7919 % (2**32)
    return np.random.default_rng(seed)
