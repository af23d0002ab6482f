"""``fastbp.show_config()``: what this installation runs on."""
import sys

import numpy as np

from . import _backend


def _blas_description():
    """The BLAS library scipy's cython_blas (the one fastbp calls) links to."""
    try:
        import scipy
    except ImportError as exc:
        return f"unknown ({type(exc).__name__})"
    try:
        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # scipy < 1.11: no mode="dicts", numpy.distutils' info dicts
        libraries = getattr(scipy.__config__, "blas_opt_info", {}).get("libraries", ["?"])
        name = " ".join(dict.fromkeys(libraries))
    return f"{name} (through scipy {scipy.__version__})"


def _blas_core_description():
    """OpenBLAS's core and whether the compiled steps split products for it."""
    from ._blas_info import scipy_openblas_core
    limit = _backend.GEMM_PIECE_LIMIT
    pieces = (f"products over {limit:,} multiply-adds in pieces" if limit
              else "products whole")
    return f"{scipy_openblas_core() or 'not OpenBLAS, or unknown'} ({pieces})"


def config_dict():
    """The facts ``show_config`` prints, as a dict."""
    from . import __version__
    info = {
        "fastbp": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "compiled core": "loaded" if _backend.COMPILED else f"NOT loaded: {_backend.REASON}",
        "blas": _blas_description(),
        "openmp": "no",
        "simd": "none (pure NumPy)",
        "threads": _backend.get_num_threads(),
    }
    if _backend.COMPILED:
        ew = _backend.elementwise
        info["openmp"] = "yes" if ew.openmp_enabled() else "no (serial build)"
        info["simd"] = ew.simd_level()
        info["compiler"] = ew.compiler()
        info["compiled modules"] = ", ".join(m.__file__ for m in _backend.MODULES)
        info["blas core"] = _blas_core_description()
    return info


def show_config(file=None):
    """Print version, compiled core, BLAS, OpenMP, SIMD level and threads."""
    for key, value in config_dict().items():
        print(f"{key:>16}: {value}", file=file or sys.stdout)
