"""Output arrays the layers allocate: on a cache line's boundary, and
written again once the caller has let them go (large arrays only)."""
import math
import sys

import numpy as np


# Where a kernel's output starts.  Streaming stores (AVX-512, outputs far
# larger than the caches) write whole 64-byte cache lines; NumPy's allocator
# gives 16-byte alignment, so a plane or row of an output it made starts on
# a line boundary only by chance: Pooling.backward's 14 MB dx was written
# 1.6 times slower when it did not.  aligned_empty makes the boundary sure.
_LINE = 64


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` whose
    data starts on a 64-byte boundary: a view into a byte buffer that only
    it holds (its ``base``)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _LINE, np.uint8)
    start = -raw.__array_interface__["data"][0] % _LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


# Reusing an array the caller has let go of.  A layer that returns a large
# new array every call (Pooling's dx) costs the allocator fresh pages each
# time: the kernel zeroes them on first touch, which for a 14 MB dx took as
# long as the pooling itself.  When the array a layer returned last time is
# held by nobody but the layer (the caller dropped it; a view of it, which
# NumPy makes a view of its byte buffer, or any buffer export would hold a
# reference to the array or to the buffer), nobody can see it change, and it
# is written again instead.  Counted with sys.getrefcount against the counts
# the same functions read for an array held only by an attribute and a
# buffer held only by that array (measured at import, so the counts'
# details per Python version don't matter); off where counts don't mean
# that (PyPy, free-threaded CPython).
def _refcount_of_attribute(owner, name):
    return sys.getrefcount(vars(owner)[name])


def _refcount_of_its_buffer(owner, name):
    return sys.getrefcount(vars(owner)[name].base)


class _Holder:
    pass


def _counts_when_held_only_by_an_attribute():
    holder = _Holder()
    holder.array = aligned_empty((1,), np.float64)
    return _refcount_of_attribute(holder, "array"), _refcount_of_its_buffer(holder, "array")


_REUSE = hasattr(sys, "getrefcount") and getattr(sys, "_is_gil_enabled", lambda: True)()
_ONLY_AN_ATTRIBUTE, _ONLY_ITS_ARRAY = \
    _counts_when_held_only_by_an_attribute() if _REUSE else (None, None)


# Below this size an array is cheaper to allocate than to look after: small
# allocations come from pages the allocator already has (glibc maps anything
# from 128 KiB up afresh until it has seen such a size freed).
REUSE_MIN_BYTES = 256 * 1024


def reusable_or_empty(owner, name, shape, dtype, other_holders=0):
    """``owner.<name>`` (an array of ``shape`` and ``dtype`` made here before)
    when nothing holds it or its buffer but that attribute and
    ``other_holders`` other references the owner keeps; else a new
    ``aligned_empty(shape, dtype)``.  Stores nothing: the caller assigns the
    result once its call has succeeded."""
    cached = vars(owner).get(name)
    if (_REUSE and type(cached) is np.ndarray and cached.shape == shape
            and cached.dtype == dtype and type(cached.base) is np.ndarray
            and cached.base.base is None and cached.flags.c_contiguous
            and cached.flags.writeable):
        cached = None      # (this frame's reference: counted below without it)
        if (_refcount_of_attribute(owner, name) == _ONLY_AN_ATTRIBUTE + other_holders
                and _refcount_of_its_buffer(owner, name) == _ONLY_ITS_ARRAY):
            return vars(owner)[name]
    return aligned_empty(shape, dtype)


def released_or_empty(owner, name, shape, dtype):
    """``reusable_or_empty(owner, name, shape, dtype)``, stored in
    ``owner.<name>`` for the next call (a private cache of the array a call
    returns)."""
    array = reusable_or_empty(owner, name, shape, dtype)
    setattr(owner, name, array)
    return array
