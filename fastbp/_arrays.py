"""Dtype and layout decisions between the public API and the kernels."""

import numpy as np

from . import _backend


def kernel_dtype(*arrays, integers_become_float=True):
    """The dtype the compiled kernels compute ``arrays`` in (a key of
    ``_backend.KERNELS``: float32 or float64), else None (float16,
    longdouble, or no compiled core: use the reference).
    With ``integers_become_float=False`` all-integer inputs give None too
    (NumPy keeps x @ W integer; so does the reference)."""
    if not _backend.COMPILED:
        return None
    if len(arrays) == 1 and type(arrays[0]) is np.ndarray:
        dtype = arrays[0].dtype          # (np.result_type's answer, without its cost)
    else:
        dtype = np.result_type(*arrays)
    if dtype.kind in "biu":
        if not integers_become_float:
            return None
        dtype = np.dtype(np.float64)
    return dtype if dtype in _backend.KERNELS else None


def contiguous(a, dtype=None):
    """``a`` cast to ``dtype`` and C- or F-contiguous; copies only if needed."""
    if dtype is not None:
        a = a.astype(dtype, copy=False)
    if a.flags.c_contiguous or a.flags.f_contiguous:
        return a
    return np.ascontiguousarray(a)


def like_layout(a, template):
    """``a`` laid out in memory like the contiguous array ``template``, so
    their flat (memory-order) views correspond element by element."""
    # np.array(order=...) rather than np.ascontiguousarray, which makes a 0-d array 1-d
    if template.flags.c_contiguous:
        return a if a.flags.c_contiguous else np.array(a, order="C")
    return a if a.flags.f_contiguous else np.array(a, order="F")


def flat(a):
    """The 1-D memory-order view of a C- or F-contiguous array (no copy)."""
    return a.ravel(order="K")
