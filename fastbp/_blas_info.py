"""Which OpenBLAS core scipy's BLAS runs on, and how large a product the
compiled steps hand it whole (``fastbp._blas.gemm_pieces``).

OpenBLAS's AVX-512 cores (SkylakeX and the cores built on it) compute
products of at most 100**3 multiply-adds on kernels for small matrices,
which skip the packing of both operands.  Just above that size the general
kernels run far slower: x (100, 784) @ W1 (784, 100) whole takes 1.45x the
time of eight pieces of 98 inner columns (float64; float32 1.34x), and
(784, 100) @ (100, 100) whole 1.5x that of eight pieces of 98 rows.  Other
cores (Haswell's kernels, ARM, or BLAS libraries that are not OpenBLAS) get
their products whole.
"""
import functools
import importlib
import os

# (names as threadpoolctl reports them for OpenBLAS, lower-cased)
SMALL_KERNEL_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
SMALL_KERNEL_LIMIT = 100 * 100 * 100


def _scipys_library(path):
    """Whether a shared library path is one scipy bundles (scipy.libs on
    Linux and Windows, scipy/.dylibs on macOS)."""
    parts = os.path.normpath(path).split(os.sep)
    return "scipy.libs" in parts or ("scipy" in parts and ".dylibs" in parts)


@functools.lru_cache(maxsize=None)
def scipy_openblas_core():
    """The OpenBLAS core (e.g. 'SkylakeX', 'Haswell') of the BLAS that
    scipy.linalg.cython_blas calls -- the library scipy bundles, or the only
    OpenBLAS loaded -- or None: not OpenBLAS, or threadpoolctl can't tell."""
    try:
        importlib.import_module("scipy.linalg.cython_blas")     # loads scipy's BLAS
        from threadpoolctl import threadpool_info
        libraries = [info for info in threadpool_info() if info.get("internal_api") == "openblas"]
    except Exception:       # threadpoolctl missing or failing: no claim
        return None
    bundled = [info for info in libraries if _scipys_library(info.get("filepath") or "")]
    chosen = bundled or (libraries if len(libraries) == 1 else [])
    return chosen[0].get("architecture") if chosen else None


def gemm_piece_limit():
    """Multiply-adds of the largest product the compiled steps hand to BLAS
    whole: SMALL_KERNEL_LIMIT on OpenBLAS cores with small-matrix kernels,
    else 0 (no limit)."""
    core = scipy_openblas_core()
    return SMALL_KERNEL_LIMIT if core and core.lower() in SMALL_KERNEL_CORES else 0
