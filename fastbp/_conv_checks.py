"""Argument checks of im2col/col2im, Convolution and Pooling.

Shared by the reference and the compiled versions: every check happens here,
in Python, before anything is computed or stored, with one clear error naming
the argument, what was expected and what came.
"""
import numbers

import numpy as np

from ._checks import as_numeric_array


def positive_int(name, value):
    """``value`` as a Python int >= 1 (Python or NumPy integer, not bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name, value):
    """``value`` as a Python int >= 0 (Python or NumPy integer, not bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def batch_4d(name, x):
    """``x`` as a real numeric array of shape (N, C, H, W)."""
    x = as_numeric_array(name, x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D batch of shape (N, C, H, W), got shape "
                         f"{x.shape}" + ("; a single image is x.reshape(1, C, H, W)"
                                         if x.ndim == 3 else ""))
    return x


def window_count(size, window, stride, pad):
    """How many windows of ``window`` fit along ``size`` padded by ``pad`` on
    both sides at ``stride``: (size + 2*pad - window) // stride + 1, or 0 when
    the window is larger than the padded size."""
    padded = size + 2 * pad
    return 0 if window > padded else (padded - window) // stride + 1


def output_shape(name, shape, filter_h, filter_w, stride, pad, filter_desc):
    """(out_h, out_w) of sliding a filter_h x filter_w window over the last
    two axes of ``shape`` (N, C, H, W).  ValueError naming ``name`` when the
    window is larger than the padded input; ``filter_desc`` says where the
    window size came from (e.g. "W of shape (30, 1, 5, 5)")."""
    h, w = shape[2], shape[3]
    if filter_h > h + 2 * pad or filter_w > w + 2 * pad:
        raise ValueError(f"{name}: expected height and width of at least {filter_h} x "
                         f"{filter_w} after padding by {pad} to fit {filter_desc}, got "
                         f"shape {tuple(shape)} (padded {h + 2 * pad} x {w + 2 * pad})")
    return window_count(h, filter_h, stride, pad), window_count(w, filter_w, stride, pad)


def image_shape(name, input_shape):
    """``input_shape`` as a tuple of four ints (N, C, H, W), N and C >= 0, H and W >= 1."""
    try:
        dims = tuple(input_shape)
    except TypeError:
        dims = None
    if dims is None or len(dims) != 4 or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_)) and d >= 0
            for d in dims) or dims[2] < 1 or dims[3] < 1:
        raise ValueError(f"{name}: expected four non-negative integers (N, C, H, W) with "
                         f"H, W >= 1, got {input_shape!r}")
    return tuple(int(d) for d in dims)


def conv_filters(W, b):
    """Return (W, b) as arrays after checking W is (FN, C, FH, FW) and b is a
    scalar (the book's ``ch07/apply_filter.py`` passes 0) or of shape (FN,)."""
    W = as_numeric_array("W", W)
    b = as_numeric_array("b", b)
    if W.ndim != 4:
        raise ValueError(f"W: expected 4-D filters of shape (FN, C, FH, FW), got shape "
                         f"{W.shape}")
    if b.shape not in ((), (W.shape[0],)):
        raise ValueError(f"b: expected a scalar or shape ({W.shape[0]},) to match W of shape "
                         f"{W.shape}, got shape {b.shape}")
    return W, b


def conv_input(x, W, stride, pad):
    """Check a Convolution's batch against its filters; return (x, out_h, out_w)."""
    x = batch_4d("x", x)
    if x.shape[1] != W.shape[1]:
        raise ValueError(f"x: expected {W.shape[1]} channels to match W of shape {W.shape}, "
                         f"got {x.shape[1]} (x of shape {x.shape})")
    out_h, out_w = output_shape("x", x.shape, W.shape[2], W.shape[3], stride, pad,
                                f"the filters of W {W.shape}")
    return x, out_h, out_w


def pooling_pad(pad, pool_h, pool_w):
    """Pooling's pad: 0 <= pad < min(pool_h, pool_w), so that every window
    holds at least one element of the input."""
    pad = non_negative_int("pad", pad)
    if pad >= min(pool_h, pool_w):
        raise ValueError(f"pad: expected less than the pooling window {pool_h} x {pool_w} "
                         f"(a window must hold at least one input element), got {pad}")
    return pad
