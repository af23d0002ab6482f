"""The book's ``Convolution`` and ``Pooling`` (chapter 7) on compiled kernels,
exported by ``fastbp.layers``.

Each subclasses its twin in ``fastbp.reference.layers`` (same signature,
attributes and checks) and overrides ``forward``/``backward``:

* ``Convolution`` runs fastbp's convolution engine (``fastbp._conv``): per
  image, blocks of output rows are unfolded (transposed im2col) into a
  buffer the layer keeps between calls, sized to stay in cache, and one
  GEMM per block computes the outputs with the bias added in the same pass;
  backward unfolds each block again and computes dW and dx through BLAS, db
  in one pass over dout, col2im compiled.  The book's ``col`` (N*OH*OW,
  C*FH*FW) is never built for the batch: the attribute is computed from the
  input forward kept when it is first read (and is read-only: backward does
  not use it).  ``x``, ``col_W``, ``dW``, ``db`` are the book's.
* ``Pooling`` takes each window's maximum in one compiled pass and keeps the
  chosen positions as bytes in (n, c, oy, ox) order; backward scatters dout
  onto them in one pass.  The book's ``arg_max`` (N*OH*OW*C,) in (n, oy, ox,
  c) order is computed from them when first read (read-only).

What backward reads is owned or re-checked: ``Convolution`` keeps its own
copy of x (cast to the computing dtype) and re-reads ``col_W``;
``Pooling`` keeps the positions it chose.  A ``col``, ``col_W`` or
``arg_max`` replaced between forward and backward is used as the reference
layer uses it (backward then runs the reference).  dtypes other than
float32/float64 (after NumPy's result type; integers count as float64), an
empty batch and windows of more than 256 elements run the reference.
"""
import numpy as np

from . import _backend, _checks
from .reference import layers as _reference
from .reference.util import float_dtype

__all__ = ["Convolution", "Pooling"]

#: Bytes of a block of unfolded input (the B of a block's GEMM): small
#: enough to stay in the L2 cache between im2col and the GEMM reading it.
BLOCK_BYTES = 1 << 18


def block_buffer_size(taps, out_w, itemsize):
    """Elements of a block buffer for ``taps`` (C*FH*FW) x output rows of
    ``out_w``: BLOCK_BYTES worth, and at least one output row."""
    return max(taps * out_w, BLOCK_BYTES // itemsize)


def nchw_strides(shape):
    """Element strides (batch, channel) of a C-contiguous (N, C, H, W) array."""
    return (shape[1] * shape[2] * shape[3], shape[2] * shape[3])


def _made_writable(cache):
    """Whether a read-only array a layer computed for the caller to read
    (Convolution.col, Pooling.arg_max) has since been made writable: then
    only the array itself says what backward must use."""
    return cache is not None and cache.flags.writeable


class _Buffers:
    """Scratch arrays a layer keeps between calls, one per name, grown when a
    call needs more (never shared between layers)."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, size, dtype):
        a = self._arrays.get(name)
        if a is None or a.dtype != dtype or a.size < size:
            a = self._arrays[name] = np.empty(size, dtype)
        return a


class _ForwardState:
    """What Convolution.forward keeps for backward: its own copy of x in the
    computing dtype, the dtype of the book's col, and the col_W it set."""

    __slots__ = ("x", "dtype", "col_dtype", "col_W")

    def __init__(self, x, dtype, col_dtype, col_W):
        self.x, self.dtype, self.col_dtype, self.col_W = x, dtype, col_dtype, col_W


class Convolution(_reference.Convolution):
    __doc__ = _reference.Convolution.__doc__

    def __init__(self, W, b, stride=1, pad=0):
        self._fast = None       # _ForwardState of the last compiled forward
        self._col = None        # the book's col: computed when read, or the caller's
        super().__init__(W, b, stride, pad)
        self._buffers = _Buffers()

    @property
    def col(self):
        """im2col of the last forward's x (N*OH*OW, C*FH*FW), the book's
        attribute: computed on first read from the input forward kept,
        read-only."""
        if self._col is None and self._fast is not None:
            from .util import im2col
            _, w_shape, stride, pad, _, _ = self._geometry
            col = im2col(self._fast.x.astype(self._fast.col_dtype, copy=False), w_shape[2],
                         w_shape[3], stride, pad)
            col.setflags(write=False)
            self._col = col
        return self._col

    @col.setter
    def col(self, value):
        # a col given by the caller is the one backward uses (the reference path)
        self._col = value
        self._fast = None

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("_fast") is not None:
            state["_col"] = None      # a cache of the forward kept: the copy recomputes it
        return state

    def forward(self, x):
        x, W, b, stride, pad, out_h, out_w = self._forward_args(x)
        col_dtype = float_dtype(x)
        dtype = np.result_type(col_dtype, W, b)
        if dtype not in _backend.KERNELS or x.size == 0:
            self._fast = None
            return super().forward(x)
        n, channels, height, width = x.shape
        n_filters, _, filter_h, filter_w = W.shape
        taps = channels * filter_h * filter_w
        _checks.check_blas_size(filters=n_filters, taps=taps, positions=out_h * out_w)
        x_kernel = np.array(x, dtype=dtype, order="C", copy=True)    # owned: backward reads it
        weights = np.ascontiguousarray(W.reshape(n_filters, taps), dtype=dtype)
        bias = np.ascontiguousarray(np.broadcast_to(b, (n_filters,)), dtype=dtype)
        out = np.empty((n, n_filters, out_h, out_w), dtype=dtype)
        buffer = self._buffers.get("col", block_buffer_size(taps, out_w, dtype.itemsize), dtype)
        _backend.KERNELS[dtype].conv_forward(
            x_kernel.reshape(-1), x.shape, nchw_strides(x.shape), weights, filter_h, filter_w,
            stride, pad, bias, out.reshape(-1), nchw_strides(out.shape), buffer)
        self.x = x
        self.col_W = W.reshape(n_filters, -1).T
        self._col = None
        self._fast = _ForwardState(x_kernel, dtype, col_dtype, self.col_W)
        self._geometry = (x.shape, W.shape, stride, pad, out_h, out_w)
        return out

    def backward(self, dout):
        dout, (x_shape, w_shape, stride, pad, out_h, out_w) = self._backward_args(dout)
        n_filters, channels, filter_h, filter_w = w_shape
        fast = self._fast
        if fast is None or self.col_W is not fast.col_W or dout.dtype != fast.dtype \
                or self.col_W.shape != (channels * filter_h * filter_w, n_filters) \
                or _made_writable(self._col):
            # the reference path, or col/col_W replaced, or the col it computed
            # made writable (and maybe changed) by the caller
            return super().backward(dout)
        dtype = fast.dtype
        taps = channels * filter_h * filter_w
        weights = np.ascontiguousarray(self.col_W.T, dtype=dtype)    # re-read, as the book
        dout = np.ascontiguousarray(dout)
        dx = np.empty(x_shape, dtype=dtype)
        dW = np.empty((n_filters, taps), dtype=dtype)
        db = np.empty(n_filters, dtype=dtype)
        size = block_buffer_size(taps, out_w, dtype.itemsize)
        _backend.KERNELS[dtype].conv_backward(
            fast.x.reshape(-1), x_shape, nchw_strides(x_shape), weights, filter_h, filter_w,
            stride, pad, dout.reshape(-1), nchw_strides(dout.shape), dW, db, dx.reshape(-1),
            nchw_strides(x_shape), self._buffers.get("col", size, dtype),
            self._buffers.get("dcol", size, dtype))
        self.dW = dW.reshape(w_shape)
        self.db = db
        return dx


class Pooling(_reference.Pooling):
    __doc__ = _reference.Pooling.__doc__

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self._positions = None    # uint8 (N, C, OH, OW) of the last compiled forward
        self._arg_max = None      # the book's arg_max: computed when read, or the caller's
        super().__init__(pool_h, pool_w, stride, pad)

    @property
    def arg_max(self):
        """Position ky*pool_w + kx of each window's chosen element, (N*OH*OW*C,)
        intp in (n, oy, ox, c) order as in the book: computed on first read
        from the positions forward kept, read-only."""
        if self._arg_max is None and self._positions is not None:
            arg_max = self._positions.transpose(0, 2, 3, 1).reshape(-1).astype(np.intp)
            arg_max.setflags(write=False)
            self._arg_max = arg_max
        return self._arg_max

    @arg_max.setter
    def arg_max(self, value):
        # an arg_max given by the caller is the one backward uses (the reference path)
        self._arg_max = value
        self._positions = None

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("_positions") is not None:
            state["_arg_max"] = None  # a cache of the positions kept: the copy recomputes it
        return state

    def forward(self, x):
        x, pool_h, pool_w, stride, pad, out_h, out_w = self._forward_args(x)
        dtype = float_dtype(x)
        if dtype not in _backend.KERNELS or x.size == 0 or pool_h * pool_w > 256:
            self._positions = None
            return super().forward(x)
        n, channels = x.shape[:2]
        x_kernel = np.ascontiguousarray(x, dtype=dtype)
        out = np.empty((n, channels, out_h, out_w), dtype=dtype)
        positions = np.empty(out.shape, dtype=np.uint8)
        _backend.KERNELS[dtype].maxpool_forward(
            x_kernel.reshape(-1), x.shape, nchw_strides(x.shape), pool_h, pool_w, stride, pad,
            out.reshape(-1), nchw_strides(out.shape), positions.reshape(-1))
        self.x = x
        self._arg_max = None
        self._positions = positions
        self._geometry = (x.shape, pool_h, pool_w, stride, pad, out_h, out_w)
        return out

    def backward(self, dout):
        dout, (x_shape, pool_h, pool_w, stride, pad, out_h, out_w) = self._backward_args(dout)
        dtype = float_dtype(dout)
        positions = self._positions
        if positions is None or dtype not in _backend.KERNELS or _made_writable(self._arg_max):
            # the reference path, or arg_max replaced, or the arg_max it computed
            # made writable (and maybe changed) by the caller
            return super().backward(dout)
        dout = np.ascontiguousarray(dout, dtype=dtype)
        dx = np.empty(x_shape, dtype=dtype)
        _backend.KERNELS[dtype].maxpool_backward(
            dout.reshape(-1), nchw_strides(dout.shape), positions.reshape(-1), x_shape, pool_h,
            pool_w, stride, pad, dx.reshape(-1), nchw_strides(x_shape))
        return dx
