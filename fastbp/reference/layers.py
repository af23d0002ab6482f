"""The book's layers in plain NumPy: the oracle for fastbp.layers.

Chapter 5 (``MulLayer`` ... ``SoftmaxWithLoss``), chapter 6 (``Dropout``,
``BatchNormalization``) and chapter 7 (``Convolution``, ``Pooling``), each in
its own section below.  Same names,
signatures and attributes as the book (``common/layers.py``), with the
deliberate differences listed in README:
  1. ``backward`` never writes into the caller's ``dout``;
  2. ``SoftmaxWithLoss.backward`` multiplies by ``dout``;
  3. the loss comes from log-softmax, not log(y + 1e-7);
  4. ``Sigmoid`` never overflows.
"""
import numbers

import numpy as np

from .. import _checks
from .._state import StatefulLayer
from .. import _conv_checks as _conv
from . import util as _util
from .functions import sigmoid, softmax_cross_entropy

__all__ = ["AddLayer", "MulLayer", "Relu", "ReLU", "Sigmoid", "Affine", "SoftmaxWithLoss",
           "Dropout", "BatchNormalization", "Convolution", "Pooling"]


def _matmul(a, b):
    """np.matmul without the floating-point warnings NumPy raises from the
    BLAS kernel's status flags: OpenBLAS's kernels on aarch64 leave spurious
    divide-by-zero, overflow and invalid flags after products of ordinary
    numbers (numpy#28967, numpy#29820), so the flags say nothing reliable
    there.  The values (inf and NaN included) are the product's; the compiled
    path, which calls BLAS directly, never warns either."""
    with np.errstate(all="ignore"):
        return np.matmul(a, b)


def _books_col_layout(col, n):
    """col laid out in memory as the book's im2col leaves it: its reshape is
    a copy (C-contiguous) for batches of several images, but for one image a
    view with the columns' stride, i.e. Fortran order.  BLAS kernels may
    round a product differently by its operands' layout (OpenBLAS's SkylakeX
    ones do), so the products use the book's to give its numbers exactly."""
    return np.asfortranarray(col) if n == 1 else col


class MulLayer(StatefulLayer):
    """z = x * y; backward gives (dout * y, dout * x). Scalars or arrays."""

    def __init__(self):
        self.x = None
        self.y = None

    def forward(self, x, y):
        self.x = x
        self.y = y
        return x * y

    def backward(self, dout):
        _checks.check_called_forward(self, "x")
        dx = dout * self.y
        dy = dout * self.x
        return dx, dy


class AddLayer(StatefulLayer):
    """z = x + y; backward gives (dout, dout)."""

    def __init__(self):
        pass

    def forward(self, x, y):
        return x + y

    def backward(self, dout):
        dx = dout * 1
        dy = dout * 1
        return dx, dy


class Relu(StatefulLayer):
    """max(x, 0). After forward, ``mask`` is the bool array ``x <= 0``."""

    def __init__(self):
        self.mask = None

    def forward(self, x):
        x = _checks.as_numeric_array("x", x)
        self.mask = (x <= 0)
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        _checks.check_called_forward(self, "mask")
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, self.mask.shape)
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


ReLU = Relu


class Sigmoid(StatefulLayer):
    """1 / (1 + exp(-x)), overflow-free. After forward, ``out`` holds the result."""

    def __init__(self):
        self.out = None

    def forward(self, x):
        x = _checks.as_numeric_array("x", x)
        out = sigmoid(x)
        self.out = out
        return out

    def backward(self, dout):
        _checks.check_called_forward(self, "out")
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, self.out.shape)
        one = self.out.dtype.type(1)     # float32 stays float32 on NumPy 1 too (0-d out)
        dx = dout * (one - self.out) * self.out
        return dx


class Affine(StatefulLayer):
    """x @ W + b for a batch x of shape (N, D) or (N, d1, d2, ...).

    Holds references to ``W`` (D, M) and ``b`` (M,) and reads them at every
    call, so in-place updates of the caller's arrays take effect.  After
    ``backward``: ``dW`` (D, M) and ``db`` (M,).
    """

    def __init__(self, W, b):
        _checks.check_affine_params(W, b)
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        W, b = _checks.check_affine_params(self.W, self.b)
        x2d = _checks.affine_input_2d(x, W)
        self.original_x_shape = np.shape(x)
        self.x = x2d
        out = _matmul(self.x, W) + b     # matmul: np.dot skips 0 * inf for 1x1 operands
        return out

    def backward(self, dout):
        _checks.check_called_forward(self, "x")
        W, _ = _checks.check_affine_params(self.W, self.b)
        _checks.check_affine_backward_weights(W, self.x)
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, (self.x.shape[0], W.shape[1]))
        x_shape = _checks.check_original_x_shape(self.original_x_shape, self.x.size)
        dx = _matmul(dout, W.T)
        self.dW = _matmul(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(x_shape)


class SoftmaxWithLoss(StatefulLayer):
    """Softmax followed by the mean cross-entropy loss.

    ``forward(x, t)``: logits x (N, C) or (C,), labels t as integers (N,) or
    (N, 1), or one-hot (N, C); stores ``y`` (probabilities, x's shape), ``t`` and ``loss``
    and returns the mean loss as a Python float.
    ``backward(dout=1)``: dout * (y - onehot(t)) / N, in x's shape.
    """

    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None
        self._x_shape = None

    def forward(self, x, t):
        x2d, labels, one_hot = _checks.softmax_inputs(x, t)
        self._x_shape = np.shape(x)
        self.t = t
        y, per_sample = softmax_cross_entropy(x2d, labels)
        self._labels = labels
        self.y = y.reshape(self._x_shape)
        self.loss = float(np.mean(per_sample, dtype=np.float64))
        return self.loss

    def backward(self, dout=1):
        _checks.check_called_forward(self, "y")
        dout = _checks.scalar_dout(dout)
        y = self.y.reshape(-1, self.y.shape[-1])
        batch_size = y.shape[0]
        if self._labels.ndim == 2:
            target = self._labels
        else:
            target = np.zeros_like(y)
            target[np.arange(batch_size), self._labels] = 1
        dx = (y - target) * (dout / batch_size)
        return dx.astype(y.dtype, copy=False).reshape(self._x_shape)


# ---------------------------------------------------------------------------
# Chapter 6: Dropout
# ---------------------------------------------------------------------------
def _dropout_generator(rng):
    """``Dropout``'s ``rng`` argument as a Generator, or None (the book's stream)."""
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(rng)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"rng: expected a non-negative integer seed, got {rng!r}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected None (NumPy's global generator, as in the book), a "
                    f"numpy.random.Generator, a SeedSequence, a BitGenerator or a "
                    f"non-negative integer seed, got {rng!r}")


class Dropout(StatefulLayer):
    """Dropout as in the book: units dropped at training time, no rescaling.

    ``forward(x, train_flg=True)``: in training, draws a keep-mask ``mask``
    (bool, x's shape; True where the unit is kept) and returns ``x * mask``;
    in test mode returns ``x * (1.0 - dropout_ratio)`` (the book scales at
    test time, not at training time).  ``backward(dout)``: ``dout * mask``.
    Outputs follow NumPy's dtype rules for those products: a float32 x gives
    float32 (the mask is bool, ``dropout_ratio`` a Python float); a dropped
    inf or NaN gives NaN, a dropped negative -0.0, exactly as the book.

    dropout_ratio: the fraction of units dropped, in [0, 1).

    rng (keyword only) picks the random stream of the masks:
      * None (default), the book's stream: ``np.random.rand(*x.shape) >
        dropout_ratio`` on NumPy's global generator, the same call as the book
        in the same order, so ``np.random.seed(s)`` gives the book's masks and
        leaves the global generator in the book's state.  (The draws are
        float64; the comparison makes the bool mask, whatever x's dtype.)
      * a ``numpy.random.Generator``, or a seed (int, SeedSequence or
        BitGenerator, made into ``np.random.default_rng(rng)`` once, here):
        the faster stream ``rng.random(x.shape, dtype=np.float32) >
        dropout_ratio``, compared in float64.  Each element consumes one
        32-bit output ``u`` of the generator (``next_uint32``; PCG64 serves
        two per 64-bit step) and is kept when ``(u >> 8) * 2**-24 >
        dropout_ratio``, i.e. when ``u >> 8 > floor(dropout_ratio * 2**24)``.
    Either way one draw per element in C (row-major) order of ``x.shape``,
    whatever x's memory layout, and none in test mode.  A Generator is
    shared, not copied: layers given the same one draw from one stream.

    Attributes: ``dropout_ratio`` (float, read at every forward), ``mask``
    (None until a training-mode forward), ``rng`` (None or the Generator).
    """

    def __init__(self, dropout_ratio=0.5, *, rng=None):
        self.dropout_ratio = _checks.check_unit_interval("dropout_ratio", dropout_ratio,
                                                         include_one=False)
        self.rng = _dropout_generator(rng)
        self.mask = None

    def _keep_mask(self, shape, ratio):
        """The bool keep-mask for ``shape``, from the stream ``rng`` selects."""
        if self.rng is None:
            # rand() with no dimensions returns a Python float: one draw all the same
            return np.asarray(np.random.rand(*shape) > ratio)
        # compared in float64 (NumPy 1 would compare a float32 array with a
        # scalar in float32, rounding the ratio)
        return np.greater(self.rng.random(shape, dtype=np.float32), ratio,
                          signature=(np.float64, np.float64, np.bool_))

    def forward(self, x, train_flg=True):
        x = _checks.as_numeric_array("x", x)
        ratio = _checks.check_unit_interval("dropout_ratio", self.dropout_ratio,
                                            include_one=False)
        if not train_flg:
            return x * (1.0 - ratio)
        self.mask = self._keep_mask(x.shape, ratio)
        with np.errstate(invalid="ignore"):      # a dropped inf is NaN, as in the book
            return x * self.mask

    def backward(self, dout):
        _checks.check_called_training_forward(self, "mask")
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, self.mask.shape)
        with np.errstate(invalid="ignore"):
            return dout * self.mask


# ---------------------------------------------------------------------------
# Chapter 6: BatchNormalization
# ---------------------------------------------------------------------------
_BN_EPS = 10e-7      # the book's epsilon (1e-6), added to the variance


def _statistics_dtype(x):
    """The dtype NumPy gives ``x.mean(axis=0)``: x's float dtype, float64 for integers."""
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


class BatchNormalization(StatefulLayer):
    """Batch normalisation as in the book: out = gamma * xn + beta.

    gamma, beta: arrays (D,), kept by reference and read at every call (an
    optimizer updates them in place).  momentum (in [0, 1]) of the running
    statistics.  running_mean, running_var: None (created as zeros on the
    first forward) or arrays (D,).

    ``forward(x, train_flg=True)``: x is (N, D), or (N, C, H, W) flattened
    per sample to D = C*H*W (every (c, h, w) position has its own gamma,
    beta and statistics, as in the book); the result has x's shape.
    Training mode normalises with the batch's mean mu and biased variance
    var (mean of (x - mu)**2, two passes): xn = (x - mu) / sqrt(var + 10e-7),
    and sets running_mean = momentum * running_mean + (1 - momentum) * mu and
    likewise running_var with var, as new arrays (an array the caller passed
    or read before is never written).  Test mode normalises with the running
    statistics.  ``backward(dout)``: dout of the shape of the last
    training-mode x; returns dx of that shape and sets ``dgamma``, ``dbeta``
    (it reads gamma, never beta).

    Attributes (the book's): ``gamma``, ``beta``, ``momentum``,
    ``input_shape`` (x's shape at the last forward, either mode),
    ``running_mean``, ``running_var`` (D,); after a training forward
    ``batch_size`` (N, an int), ``xc`` = x - mu (N, D), ``xn`` (N, D),
    ``std`` = sqrt(var + 10e-7) (D,); after backward ``dgamma``, ``dbeta`` (D,).

    Dtypes follow NumPy on the book's expressions (float32 x, gamma and beta
    give float32 everything).  One difference: running statistics created
    here have the dtype of the batch statistics (float32 for float32 x), not
    the book's float64 zeros, so a float32 network stays float32 in test
    mode too.  With float64 the numbers are the book's, bit for bit.
    """

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        gamma_arr, _ = _checks.check_batchnorm_params(gamma, beta)
        n_features = gamma_arr.shape[0]
        _checks.check_running_statistic("running_mean", running_mean, n_features)
        _checks.check_running_statistic("running_var", running_var, n_features)
        self.gamma = gamma
        self.beta = beta
        self.momentum = _checks.check_unit_interval("momentum", momentum, include_one=True)
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None
        self._train_shape = None    # x's shape at the last training forward (for backward)

    def forward(self, x, train_flg=True):
        x = _checks.as_numeric_array("x", x)
        x2d = _checks.batchnorm_input_2d(x)
        gamma, beta = _checks.check_batchnorm_params(self.gamma, self.beta, x.shape)
        momentum = _checks.check_unit_interval("momentum", self.momentum, include_one=True)
        n, n_features = x2d.shape
        running_mean = _checks.check_running_statistic("running_mean", self.running_mean,
                                                       n_features)
        running_var = _checks.check_running_statistic("running_var", self.running_var,
                                                      n_features)
        if train_flg and n == 0:
            raise ValueError(f"x: expected at least one sample in training mode (an empty "
                             f"batch has no mean or variance), got shape {x.shape}")
        # everything checked: from here on the layer's state may change
        if running_mean is None:
            running_mean = np.zeros(n_features, _statistics_dtype(x2d))
        if running_var is None:
            running_var = np.zeros(n_features, _statistics_dtype(x2d))
        if train_flg:
            mu = x2d.mean(axis=0)
            xc = x2d - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + _BN_EPS)
            xn = xc / std
            self.batch_size = n
            self.xc = xc
            self.xn = xn
            self.std = std
            self._train_shape = x.shape
            running_mean = momentum * running_mean + (1 - momentum) * mu
            running_var = momentum * running_var + (1 - momentum) * var
        else:
            xn = (x2d - running_mean) / np.sqrt(running_var + _BN_EPS)
        self.running_mean = running_mean
        self.running_var = running_var
        self.input_shape = x.shape
        out = gamma * xn + beta
        return out.reshape(x.shape)

    def backward(self, dout):
        _checks.check_called_training_forward(self, "xn")
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, self._train_shape)
        gamma = _checks.check_batchnorm_gamma(self.gamma, self._train_shape)   # beta isn't read
        dout = dout.reshape(self.xn.shape)
        n, xc, std = self.batch_size, self.xc, self.std
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = gamma * dout
        dxc = dxn / std
        dstd = -np.sum((dxn * xc) / (std * std), axis=0)
        dvar = 0.5 * dstd / std
        dxc += (2.0 / n) * xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / n
        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx.reshape(self._train_shape)


# ---------------------------------------------------------------------------
# Chapter 7: convolution and pooling over im2col/col2im
# ---------------------------------------------------------------------------
class Convolution(StatefulLayer):
    """2-D convolution (cross-correlation, as in the book) of a batch with filters.

    ``W`` (FN, C, FH, FW) and ``b`` (FN,) or a scalar (the book's
    ``ch07/apply_filter.py`` passes 0) are held by reference and read at
    every ``forward``, so in-place updates of the caller's arrays take effect.
    ``stride`` (positive int) and ``pad`` (non-negative int, zeros on all
    four sides) are read at every ``forward`` too.

    ``forward(x)``: x (N, C, H, W) -> out (N, FN, OH, OW), C-contiguous,
    OH = (H + 2*pad - FH) // stride + 1 (likewise OW); out = im2col(x) @
    W.reshape(FN, -1).T + b.  Keeps ``x``, ``col`` (N*OH*OW, C*FH*FW: im2col
    of x, in x's floating dtype) and ``col_W`` (C*FH*FW, FN: W.reshape(FN, -1).T,
    a view of W when W is C-contiguous).
    ``backward(dout)``: dout (N, FN, OH, OW) -> dx (N, C, H, W) through
    col2im; sets ``dW`` (FN, C, FH, FW) and ``db`` (FN,).  It uses the
    ``col``/``col_W`` and the geometry (shapes, stride, pad) of the last
    ``forward``.

    Dtypes follow NumPy's result type of x's floating dtype (integers count
    as float64), W and b: float32 x, W and b give float32 everywhere.
    """

    def __init__(self, W, b, stride=1, pad=0):
        _conv.conv_filters(W, b)
        self.W = W
        self.b = b
        self.stride = _conv.positive_int("stride", stride)
        self.pad = _conv.non_negative_int("pad", pad)
        self.x = None
        self.col = None
        self.col_W = None
        self.dW = None
        self.db = None
        self._geometry = None   # (x.shape, W.shape, stride, pad, out_h, out_w) of forward

    def _forward_args(self, x):
        """forward's arguments checked: (x, W, b, stride, pad, out_h, out_w)."""
        W, b = _conv.conv_filters(self.W, self.b)
        stride = _conv.positive_int("stride", self.stride)
        pad = _conv.non_negative_int("pad", self.pad)
        x, out_h, out_w = _conv.conv_input(x, W, stride, pad)
        return x, W, b, stride, pad, out_h, out_w

    def _backward_args(self, dout):
        """backward's dout checked against the last forward: (dout, geometry)."""
        _checks.check_called_forward(self, "x")
        x_shape, w_shape, stride, pad, out_h, out_w = self._geometry
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, (x_shape[0], w_shape[0], out_h, out_w))
        return dout, self._geometry

    def forward(self, x):
        x, W, b, stride, pad, out_h, out_w = self._forward_args(x)
        n = x.shape[0]
        n_filters, _, filter_h, filter_w = W.shape
        col = _util._im2col(x, filter_h, filter_w, stride, pad, out_h, out_w,
                            pad_value=0, dtype=_util.float_dtype(x))
        col_W = W.reshape(n_filters, -1).T
        out = _matmul(_books_col_layout(col, n), col_W) + b
        out = np.ascontiguousarray(out.reshape(n, out_h, out_w, n_filters).transpose(0, 3, 1, 2))
        self.x = x
        self.col = col
        self.col_W = col_W
        self._geometry = (x.shape, W.shape, stride, pad, out_h, out_w)
        return out

    def backward(self, dout):
        dout, (x_shape, w_shape, stride, pad, out_h, out_w) = self._backward_args(dout)
        n_filters, _, filter_h, filter_w = w_shape
        dout2d = dout.transpose(0, 2, 3, 1).reshape(-1, n_filters)    # rows (n, oy, ox)
        db = np.sum(dout2d, axis=0)
        dW = _matmul(_books_col_layout(self.col, x_shape[0]).T, dout2d).T.reshape(w_shape)
        dcol = _matmul(dout2d, self.col_W.T)
        dx = _util._col2im(dcol, x_shape, filter_h, filter_w, stride, pad, out_h, out_w)
        self.dW = dW
        self.db = db
        return dx


class Pooling(StatefulLayer):
    """Max pooling over pool_h x pool_w windows at ``stride``.

    ``forward(x)``: x (N, C, H, W) -> out (N, C, OH, OW), C-contiguous,
    OH = (H + 2*pad - pool_h) // stride + 1 (likewise OW), in x's floating
    dtype (integers give float64).  Each output is the first maximal element
    of its window (NumPy's argmax: ties go to the first position in (ky, kx)
    order, a NaN wins over everything and propagates).  Keeps ``x`` and
    ``arg_max``: int array (N*OH*OW*C,) in (n, oy, ox, c) order, the position
    ky*pool_w + kx of the chosen element in its window, as in the book.
    ``backward(dout)``: dout (N, C, OH, OW) -> dx (N, C, H, W) in dout's
    floating dtype: each dout goes to its window's chosen element, and
    elements chosen by several overlapping windows add up (in col2im's order).

    ``pad`` (0 <= pad < min(pool_h, pool_w)) widens the input by pad positions
    on every side that never win: a window takes the maximum of the input
    elements it covers (the book sizes the output without pad and zero-pads,
    so it fails or clips negative maxima to 0).  The parameters are read at
    every ``forward``; ``backward`` uses those of the last ``forward``.
    """

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self.pool_h = _conv.positive_int("pool_h", pool_h)
        self.pool_w = _conv.positive_int("pool_w", pool_w)
        self.stride = _conv.positive_int("stride", stride)
        self.pad = _conv.pooling_pad(pad, self.pool_h, self.pool_w)
        self.x = None
        self.arg_max = None
        self._geometry = None   # (x.shape, pool_h, pool_w, stride, pad, out_h, out_w) of forward

    def _forward_args(self, x):
        """forward's arguments checked: (x, pool_h, pool_w, stride, pad, out_h, out_w)."""
        pool_h = _conv.positive_int("pool_h", self.pool_h)
        pool_w = _conv.positive_int("pool_w", self.pool_w)
        stride = _conv.positive_int("stride", self.stride)
        pad = _conv.pooling_pad(self.pad, pool_h, pool_w)
        x = _conv.batch_4d("x", x)
        out_h, out_w = _conv.output_shape("x", x.shape, pool_h, pool_w, stride, pad,
                                          f"the {pool_h} x {pool_w} pooling window")
        return x, pool_h, pool_w, stride, pad, out_h, out_w

    def _backward_args(self, dout):
        """backward's dout checked against the last forward: (dout, geometry)."""
        _checks.check_called_forward(self, "x")
        x_shape, pool_h, pool_w, stride, pad, out_h, out_w = self._geometry
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, (x_shape[0], x_shape[1], out_h, out_w))
        return dout, self._geometry

    def forward(self, x):
        x, pool_h, pool_w, stride, pad, out_h, out_w = self._forward_args(x)
        n, c = x.shape[:2]
        window = pool_h * pool_w
        # one row per window, in (n, oy, ox, c) order; padding is -inf, which never wins
        col = _util._im2col(x, pool_h, pool_w, stride, pad, out_h, out_w,
                            pad_value=-np.inf, dtype=_util.float_dtype(x)).reshape(-1, window)
        arg_max = np.argmax(col, axis=1)
        if pad:
            # a window whose input elements are all -inf ties with the padding:
            # take its first input element instead
            real = _util._im2col(np.ones((1, 1) + x.shape[2:], bool), pool_h, pool_w, stride,
                                 pad, out_h, out_w, pad_value=False, dtype=bool)
            real = np.broadcast_to(real.reshape(1, out_h * out_w, 1, window),
                                   (n, out_h * out_w, c, window)).reshape(-1, window)
            on_padding = ~real[np.arange(arg_max.size), arg_max]
            arg_max[on_padding] = np.argmax(real[on_padding], axis=1)
        out = col[np.arange(arg_max.size), arg_max]
        out = np.ascontiguousarray(out.reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2))
        self.x = x
        self.arg_max = arg_max
        self._geometry = (x.shape, pool_h, pool_w, stride, pad, out_h, out_w)
        return out

    def backward(self, dout):
        dout, (x_shape, pool_h, pool_w, stride, pad, out_h, out_w) = self._backward_args(dout)
        n, c = x_shape[:2]
        window = pool_h * pool_w
        dmax = np.zeros((n * out_h * out_w * c, window), dtype=_util.float_dtype(dout))
        dmax[np.arange(dmax.shape[0]), self.arg_max] = dout.transpose(0, 2, 3, 1).reshape(-1)
        dcol = dmax.reshape(n * out_h * out_w, c * window)
        return _util._col2im(dcol, x_shape, pool_h, pool_w, stride, pad, out_h, out_w)
