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
from ._outputs import released_or_empty
from .reference.util import float_dtype

__all__ = ["Convolution", "Pooling"]

#: Bytes of a block of unfolded input (the B of a block's GEMM): small
#: enough to stay in the L2 cache between im2col and the GEMM reading it.
BLOCK_BYTES = 1 << 18
# ...and at least this many output positions: with fewer, a wide filter's
# block (DeepConvNet's 64 x 3 x 3 taps: one 8 x 8 image) leaves BLAS too
# little to run on (its last convolution, forward + backward: 10.6 -> 8.6
# ms in float32, 23.1 -> 18.6 ms in float64, batch 100).
BLOCK_POSITIONS = 384


def block_buffer_size(taps, out_w, itemsize):
    """Elements of a block buffer for ``taps`` (C*FH*FW) x output rows of
    ``out_w``: BLOCK_BYTES worth, or BLOCK_POSITIONS output positions if that
    is more, and at least one output row."""
    return max(taps * out_w, BLOCK_BYTES // itemsize, taps * BLOCK_POSITIONS)


def nchw_strides(shape):
    """Element strides (batch, channel) of a C-contiguous (N, C, H, W) array."""
    return (shape[1] * shape[2] * shape[3], shape[2] * shape[3])


def _made_writable(cache):
    """Whether a read-only array a layer computed for the caller to read
    (Convolution.col, Pooling.arg_max) has since been made writable: then
    only the array itself says what backward must use."""
    return cache is not None and cache.flags.writeable


class _ComputedOnRead:
    """A book attribute (Convolution.col, Pooling.arg_max) that the compiled
    layer does not build at forward: computed by ``compute(layer)`` from what
    forward kept (the attribute named ``source``) when first read, cached in
    ``_<name>`` and read-only.  Assigning it stores the caller's array and
    drops ``source``: backward then uses that array, the reference way.
    :class:`_DropsComputedAttributes` leaves the cache out of copies."""

    def __init__(self, source, compute):
        self.source, self.compute = source, compute
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner, name):
        self.cache = "_" + name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        value = getattr(layer, self.cache)
        if value is None and getattr(layer, self.source) is not None:
            value = self.compute(layer)
            value.setflags(write=False)
            setattr(layer, self.cache, value)
        return value

    def __set__(self, layer, value):
        setattr(layer, self.cache, value)
        setattr(layer, self.source, None)


class _DropsComputedAttributes:
    """Copies (pickle, copy, deepcopy) leave out each _ComputedOnRead cache
    whose source is kept: the copy recomputes it when read."""

    def __getstate__(self):
        state = super().__getstate__()
        for klass in type(self).__mro__:
            for attribute in vars(klass).values():
                if isinstance(attribute, _ComputedOnRead) \
                        and state.get(attribute.source) is not None:
                    state[attribute.cache] = None
        return state


class _Buffers:
    """Scratch arrays a layer keeps between calls, one per name, grown when a
    call needs more (never shared between layers)."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, size, dtype):
        a = self._arrays.get(name)
        if a is None or a.dtype != dtype or a.size < size:
            a = self._arrays[name] = np.empty(size, dtype)
        return a[:size]             # (its size sets the kernels' block)


class _ForwardState:
    """What Convolution.forward keeps for backward: its own copy of x in the
    computing dtype, the dtype of the book's col, and the col_W it set."""

    __slots__ = ("x", "dtype", "col_dtype", "col_W")

    def __init__(self, x, dtype, col_dtype, col_W):
        self.x, self.dtype, self.col_dtype, self.col_W = x, dtype, col_dtype, col_W


class Convolution(_DropsComputedAttributes, _reference.Convolution):
    __doc__ = _reference.Convolution.__doc__

    def __init__(self, W, b, stride=1, pad=0):
        self._fast = None       # _ForwardState of the last compiled forward
        self._col = None        # the book's col: computed when read, or the caller's
        super().__init__(W, b, stride, pad)
        self._buffers = _Buffers()

    def _im2col_of_kept_input(self):
        """im2col of the last forward's x (N*OH*OW, C*FH*FW), the book's
        attribute: computed on first read from the input forward kept,
        read-only."""
        from .util import im2col
        _, w_shape, stride, pad, _, _ = self._geometry
        return im2col(self._fast.x.astype(self._fast.col_dtype, copy=False), w_shape[2],
                      w_shape[3], stride, pad)

    col = _ComputedOnRead("_fast", _im2col_of_kept_input)

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


class Pooling(_DropsComputedAttributes, _reference.Pooling):
    __doc__ = _reference.Pooling.__doc__

    # the dx returned last, written again once the caller has let it go
    _dx_buffer = None
    _transient_attributes = ("_dx_buffer",)

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self._positions = None    # uint8 (N, C, OH, OW) of the last compiled forward
        self._arg_max = None      # the book's arg_max: computed when read, or the caller's
        super().__init__(pool_h, pool_w, stride, pad)

    def _book_arg_max(self):
        """Position ky*pool_w + kx of each window's chosen element, (N*OH*OW*C,)
        intp in (n, oy, ox, c) order as in the book: computed on first read
        from the positions forward kept, read-only."""
        return self._positions.transpose(0, 2, 3, 1).reshape(-1).astype(np.intp)

    arg_max = _ComputedOnRead("_positions", _book_arg_max)

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
        dx = released_or_empty(self, "_dx_buffer", x_shape, dtype)
        _backend.KERNELS[dtype].maxpool_backward(
            dout.reshape(-1), nchw_strides(dout.shape), positions.reshape(-1), x_shape, pool_h,
            pool_w, stride, pad, dx.reshape(-1), nchw_strides(x_shape))
        return dx
