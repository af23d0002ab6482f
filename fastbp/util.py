"""The book's ``common/util.py``: im2col/col2im and the data helpers.

A drop-in for ``from common.util import *``, with the same names, signatures
and layouts (see ``fastbp.reference.util`` for shapes and dtypes).
``im2col`` and ``col2im`` run compiled loops for float32 and float64 (and
integer or bool inputs, which give float64): the same results as the
reference, bit for bit (col2im adds overlapping windows in the book's
order).  Other dtypes (float16, longdouble) run the reference.
"""
import numpy as np

from . import _backend
from .reference import util as _reference
from .reference.util import conv_output_size, float_dtype, shuffle_dataset, smooth_curve

__all__ = ["im2col", "col2im", "conv_output_size", "smooth_curve", "shuffle_dataset"]


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    x, filter_h, filter_w, stride, pad, out_h, out_w = _reference._im2col_checks(
        input_data, filter_h, filter_w, stride, pad)
    dtype = float_dtype(x)
    if dtype not in _backend.KERNELS or x.size == 0:
        return _reference._im2col(x, filter_h, filter_w, stride, pad, out_h, out_w,
                                  pad_value=0, dtype=dtype)
    x = np.ascontiguousarray(x, dtype=dtype)
    n, c = x.shape[:2]
    col = np.empty((n * out_h * out_w, c * filter_h * filter_w), dtype=dtype)
    _backend.KERNELS[dtype].im2col(x, col, filter_h, filter_w, stride, pad)
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    col, shape, filter_h, filter_w, stride, pad, out_h, out_w = _reference._col2im_checks(
        col, input_shape, filter_h, filter_w, stride, pad)
    dtype = float_dtype(col)
    if dtype not in _backend.KERNELS or col.size == 0:
        return _reference._col2im(col, shape, filter_h, filter_w, stride, pad, out_h, out_w)
    img = np.empty(shape, dtype=dtype)
    _backend.KERNELS[dtype].col2im(np.ascontiguousarray(col, dtype=dtype), img, filter_h,
                                   filter_w, stride, pad)
    return img


im2col.__doc__ = _reference.im2col.__doc__
col2im.__doc__ = _reference.col2im.__doc__
