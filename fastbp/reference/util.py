"""The book's ``common/util.py`` in plain NumPy: im2col/col2im and helpers.

Layouts are the book's.  ``im2col`` turns a batch (N, C, H, W) into a matrix
with one row per output position, in (n, oy, ox) order, and one column per
filter tap, in (c, ky, kx) order, so that a convolution is one matrix product
with ``W.reshape(FN, -1).T``.  ``col2im`` is its adjoint: it adds every
column back onto the position it was read from, so overlapping windows
accumulate.  The additions happen in the book's order (taps in (ky, kx)
order, each tap added over the whole image, starting from zero), so float64
results equal the book's bit for bit.

One deliberate difference: results keep the input's floating dtype (float32
in, float32 out); the book always returns float64.  Integer and bool inputs
give float64, as in the book.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import _checks
from .. import _conv_checks as _conv

__all__ = ["im2col", "col2im", "conv_output_size", "smooth_curve", "shuffle_dataset"]


def float_dtype(*arrays):
    """NumPy's result dtype of ``arrays``, made floating: integers and bool
    give float64, float16/32/64 and longdouble stay what they are."""
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """Number of positions a filter takes along one axis: the output size of
    a convolution or pooling, (input_size + 2*pad - filter_size) // stride + 1.

    Returns an int (the book's returns a float, e.g. 24.0, and a fraction when
    the stride doesn't divide evenly; the layers round down, and so does this).
    ValueError when the filter is larger than the padded input.
    """
    input_size = _conv.positive_int("input_size", input_size)
    filter_size = _conv.positive_int("filter_size", filter_size)
    stride = _conv.positive_int("stride", stride)
    pad = _conv.non_negative_int("pad", pad)
    if filter_size > input_size + 2 * pad:
        raise ValueError(f"filter_size: expected at most input_size + 2*pad = "
                         f"{input_size + 2 * pad}, got {filter_size}")
    return _conv.window_count(input_size, filter_size, stride, pad)


def _im2col_checks(input_data, filter_h, filter_w, stride, pad):
    x = _conv.batch_4d("input_data", input_data)
    filter_h = _conv.positive_int("filter_h", filter_h)
    filter_w = _conv.positive_int("filter_w", filter_w)
    stride = _conv.positive_int("stride", stride)
    pad = _conv.non_negative_int("pad", pad)
    out_h, out_w = _conv.output_shape("input_data", x.shape, filter_h, filter_w, stride, pad,
                                      f"a {filter_h} x {filter_w} filter")
    return x, filter_h, filter_w, stride, pad, out_h, out_w


def _windows(padded, filter_h, filter_w, stride, out_h, out_w):
    """Read-only view (N, out_h, out_w, C, filter_h, filter_w) of the windows
    of ``padded`` (N, C, Hp, Wp) at ``stride``."""
    windows = sliding_window_view(padded, (filter_h, filter_w), axis=(2, 3))
    windows = windows[:, :, :stride * (out_h - 1) + 1:stride, :stride * (out_w - 1) + 1:stride]
    return windows.transpose(0, 2, 3, 1, 4, 5)


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Unfold the filter windows of a batch into the rows of a matrix.

    input_data: (N, C, H, W), any real dtype, any memory layout.
    filter_h, filter_w, stride: positive ints; pad: non-negative int (zeros
    are added on all four sides).
    Returns a new C-contiguous array col of shape (N*out_h*out_w, C*filter_h*filter_w),
    out_h = (H + 2*pad - filter_h) // stride + 1 (likewise out_w), with
    col[(n*out_h + oy)*out_w + ox, (c*filter_h + ky)*filter_w + kx] =
    padded[n, c, oy*stride + ky, ox*stride + kx].  Its dtype is the input's
    floating dtype (integers and bool give float64).
    """
    x, filter_h, filter_w, stride, pad, out_h, out_w = _im2col_checks(
        input_data, filter_h, filter_w, stride, pad)
    return _im2col(x, filter_h, filter_w, stride, pad, out_h, out_w,
                   pad_value=0, dtype=float_dtype(x))


def _im2col(x, filter_h, filter_w, stride, pad, out_h, out_w, pad_value, dtype):
    """im2col of checked arguments, padding with ``pad_value``, in ``dtype``."""
    n, c = x.shape[:2]
    x = x.astype(dtype, copy=False)
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    windows = _windows(x, filter_h, filter_w, stride, out_h, out_w)
    col = np.empty((n, out_h, out_w, c, filter_h, filter_w), dtype=dtype)
    col[...] = windows
    return col.reshape(n * out_h * out_w, c * filter_h * filter_w)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Fold the rows of ``col`` back onto an image batch: the adjoint of im2col.

    col: (N*out_h*out_w, C*filter_h*filter_w) in im2col's layout, any real dtype.
    input_shape: (N, C, H, W) of the image im2col read.
    Returns a new C-contiguous array (N, C, H, W): every entry of col added to
    the input position it came from (overlapping windows accumulate; what fell
    on the padding is dropped).  The sum for each position starts from zero
    and adds the taps in (ky, kx) order, as the book does, so float64 results
    are the book's exactly.  The dtype is col's floating dtype (integers and
    bool give float64).
    """
    return _col2im(*_col2im_checks(col, input_shape, filter_h, filter_w, stride, pad))


def _col2im_checks(col, input_shape, filter_h, filter_w, stride, pad):
    """col2im's arguments checked: (col, shape, filter_h, filter_w, stride,
    pad, out_h, out_w), the arguments of _col2im."""
    shape = _conv.image_shape("input_shape", input_shape)
    filter_h = _conv.positive_int("filter_h", filter_h)
    filter_w = _conv.positive_int("filter_w", filter_w)
    stride = _conv.positive_int("stride", stride)
    pad = _conv.non_negative_int("pad", pad)
    out_h, out_w = _conv.output_shape("input_shape", shape, filter_h, filter_w, stride, pad,
                                      f"a {filter_h} x {filter_w} filter")
    col = _checks.as_numeric_array("col", col)
    n, c, h, w = shape
    expected = (n * out_h * out_w, c * filter_h * filter_w)
    _checks.check_same_shape("col", col, expected)
    return col, shape, filter_h, filter_w, stride, pad, out_h, out_w


def _col2im(col, shape, filter_h, filter_w, stride, pad, out_h, out_w):
    """col2im of checked arguments."""
    n, c, h, w = shape
    dtype = float_dtype(col)
    taps = col.reshape(n, out_h, out_w, c, filter_h, filter_w)
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dtype)
    rows_end = stride * (out_h - 1) + 1
    cols_end = stride * (out_w - 1) + 1
    for ky in range(filter_h):
        for kx in range(filter_w):
            # every window's (ky, kx) tap lands on a strided grid of positions
            target = padded[:, :, ky:ky + rows_end:stride, kx:kx + cols_end:stride]
            target += taps[:, :, :, :, ky, kx].transpose(0, 3, 1, 2)
    if pad:
        return np.ascontiguousarray(padded[:, :, pad:pad + h, pad:pad + w])
    return padded


def smooth_curve(x):
    """The book's smoothing of a loss curve for plotting.

    x: a 1-D sequence of at least 11 numbers (the window; a list of losses is fine).
    Returns an array of len(x): x convolved with a normalised Kaiser window
    (length 11, beta 2), reflected at both ends, in x's floating dtype
    (float64 for integers and lists).  Values are the book's exactly in float64.
    """
    values = _checks.as_numeric_array("x", x)
    window_len = 11
    if values.ndim != 1 or values.shape[0] < window_len:
        raise ValueError(f"x: expected a 1-D sequence of at least {window_len} values (the "
                         f"smoothing window), got shape {values.shape}")
    dtype = float_dtype(values)
    half = window_len // 2
    # the book's reflection: x[10..1] in front, x[-1..-10] behind
    extended = np.concatenate([values[window_len - 1:0:-1], values,
                               values[-1:-window_len:-1]]).astype(np.float64)
    kernel = np.kaiser(window_len, 2)
    smoothed = np.convolve(kernel / kernel.sum(), extended, mode="valid")
    return smoothed[half:len(smoothed) - half].astype(dtype, copy=False)


def shuffle_dataset(x, t):
    """Shuffle samples and labels together.

    x: (N, ...) samples; t: (N, ...) labels.  Returns new arrays (x[p], t[p])
    for one permutation p from ``np.random.permutation(N)`` (the global
    generator, as in the book, so ``np.random.seed`` gives the book's order).
    """
    x = np.asarray(x)
    t = np.asarray(t)
    if x.ndim == 0 or t.ndim == 0:
        raise ValueError(f"x, t: expected arrays with a sample axis, got shapes {x.shape} "
                         f"and {t.shape}")
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"t: expected {x.shape[0]} labels to match x of shape {x.shape}, "
                         f"got {t.shape[0]}")
    permutation = np.random.permutation(x.shape[0])
    return x[permutation], t[permutation]
