"""Which implementation runs: the compiled kernels, or the NumPy reference.

The compiled extension modules are imported once here.  When they are
missing (a source checkout that was never built, a failed build) or when the
environment variable FASTBP_PURE=1 is set, fastbp runs entirely on
fastbp.reference, warns once, and ``fastbp.show_config()`` says so.
"""
import os
import warnings

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
