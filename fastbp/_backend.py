"""Which implementation runs: the compiled kernels, or the NumPy reference.

The compiled extension modules are imported once here.  When they are
missing (a source checkout that was never built, a failed build) or when the
environment variable FASTBP_PURE=1 is set, fastbp runs entirely on
fastbp.reference, warns once, and ``fastbp.show_config()`` says so.
"""
import os
import types
import warnings

import numpy as np

REQUESTED_PURE = os.environ.get("FASTBP_PURE", "0") not in ("", "0")

affine = elementwise = optim = train = None
COMPILED = False
REASON = ""

if REQUESTED_PURE:
    REASON = "FASTBP_PURE is set"
else:
    try:
        import importlib
        affine, elementwise, optim, train = (
            importlib.import_module(f"{__package__}.{name}")
            for name in ("_affine", "_elementwise", "_optim", "_train"))
        COMPILED = True
    except ImportError as exc:  # never built, or built for another Python
        REASON = f"compiled core not importable: {exc}"


def _specialised_kernels(modules, signature):
    """Every fused-type kernel of ``modules`` specialised for ``signature``
    ('float' or 'double'), as attributes of one namespace.

    Calling a fused Cython function goes through its dispatcher, which
    inspects the arguments' dtypes on every call (0.3-1.2 us, as much as a
    small kernel's work); the layers pick the dtype themselves and call the
    specialisation directly.
    """
    kernels = types.SimpleNamespace()
    for module in modules:
        for name, fn in vars(module).items():
            signatures = getattr(fn, "__signatures__", None)
            if signatures and not name.startswith("_"):
                setattr(kernels, name, signatures[signature])
    return kernels


#: {dtype: namespace of that dtype's compiled kernels}, float32 and float64
KERNELS = {}
if COMPILED:
    KERNELS = {np.dtype(np.float32): _specialised_kernels((affine, elementwise, optim), "float"),
               np.dtype(np.float64): _specialised_kernels((affine, elementwise, optim), "double")}

if not COMPILED:
    warnings.warn(f"fastbp is running on its pure-NumPy reference ({REASON}); "
                  "results are the same, only slower", RuntimeWarning, stacklevel=2)

FAST_DTYPES = ("float32", "float64")


def set_num_threads(n):
    """Use ``n`` OpenMP threads in the elementwise kernels (0: the default,
    which follows OMP_NUM_THREADS and threadpoolctl).  BLAS threads are
    BLAS's own: set them with threadpoolctl or OPENBLAS_NUM_THREADS."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer thread count, got {n!r}")
    if COMPILED:
        elementwise.set_num_threads(n)


def get_num_threads():
    """Threads the elementwise kernels use for large arrays (1 without OpenMP)."""
    return elementwise.get_num_threads() if COMPILED else 1
