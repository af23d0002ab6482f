"""The book's layers with compiled kernels: a drop-in for ``common.layers``.

Chapter 5 here; chapter 6 (``Dropout``, ``BatchNormalization``) in
``fastbp._ch6_layers``; chapter 7's ``Convolution`` and ``Pooling`` are the
reference classes for now.

Each class subclasses its twin in ``fastbp.reference.layers`` and overrides
``forward``/``backward``: validate in Python, pick the dtype and memory
layout, call one kernel.  Dtypes the kernels don't cover (float16,
longdouble, integers where NumPy keeps them integer) and a build without the
compiled core go through the reference implementation, with identical
results.  float32 stays float32; mixed inputs follow NumPy's result dtype.

State between calls (README, "Threads and state"): a ``backward`` reads
what ``forward`` left and attributes the caller may have reassigned since
(``mask``, ``out``, ``x``, ``W``, ``original_x_shape``, ``y``).  Each is read
once per call and re-checked there; the kernel runs only on state it
recognises (the exact arrays forward made, or arrays of the right type,
dtype and shape), and anything else goes the reference way, whose NumPy
code gives the reference's result or error.  Calls on one layer take turns
(``fastbp._state.StatefulLayer``).
"""
import numpy as np

from . import _backend, _checks
from ._arrays import contiguous, flat, kernel_dtype, like_layout
from ._ch6_layers import BatchNormalization, Dropout
from .reference import layers as _reference
from ._conv_layers import Convolution, Pooling
from .reference.layers import AddLayer, MulLayer

__all__ = ["AddLayer", "MulLayer", "Relu", "ReLU", "Sigmoid", "Affine", "SoftmaxWithLoss",
           "Dropout", "BatchNormalization", "Convolution", "Pooling"]


class Relu(_reference.Relu):
    __doc__ = _reference.Relu.__doc__

    def forward(self, x):
        x = _checks.as_numeric_array("x", x)
        dtype = kernel_dtype(x, integers_become_float=False)
        if dtype is None:
            return super().forward(x)      # integers stay integers, as in the book
        x = contiguous(x, dtype)           # (native byte order for the kernel)
        out = np.empty_like(x)
        mask = np.empty_like(x, dtype=bool)
        _backend.KERNELS[dtype].relu_forward(flat(x), flat(out), flat(mask).view(np.uint8))
        self.mask = mask
        return out

    def backward(self, dout):
        mask = self.mask
        if type(mask) is not np.ndarray or mask.dtype != np.bool_:
            return super().backward(dout)   # not forward's bool mask: NumPy indexing
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, mask.shape)
        dtype = kernel_dtype(dout, integers_become_float=False)
        if dtype is None:
            return super().backward(dout)
        mask = contiguous(mask)
        dout = like_layout(dout.astype(dtype, copy=False), mask)
        dx = np.empty_like(dout)
        _backend.KERNELS[dtype].relu_backward(flat(dout), flat(mask).view(np.uint8), flat(dx))
        return dx


ReLU = Relu


class Sigmoid(_reference.Sigmoid):
    __doc__ = _reference.Sigmoid.__doc__

    def forward(self, x):
        x = _checks.as_numeric_array("x", x)
        dtype = kernel_dtype(x)
        if dtype is None:
            return super().forward(x)
        x = contiguous(x, dtype)
        out = np.empty_like(x)
        _backend.KERNELS[dtype].sigmoid_forward(flat(x), flat(out))
        self.out = out
        return out

    def backward(self, dout):
        out = self.out
        if type(out) is not np.ndarray:
            return super().backward(dout)
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, out.shape)
        dtype = kernel_dtype(dout, out)
        if dtype is None or dout.dtype != dtype or out.dtype != dtype:
            return super().backward(dout)   # mixed dtypes: NumPy rounds 1 - out in out's dtype
        out = contiguous(out)
        dout = like_layout(dout, out)
        dx = np.empty_like(dout)
        _backend.KERNELS[dtype].sigmoid_backward(flat(dout), flat(out), flat(dx))
        return dx


class Affine(_reference.Affine):
    __doc__ = _reference.Affine.__doc__

    def forward(self, x):
        W, b = _checks.check_affine_params(self.W, self.b)
        x2d = _checks.affine_input_2d(x, W)
        n, d = x2d.shape
        # fastbp's limit whichever path computes (BLAS indexes with 32-bit ints)
        _checks.check_blas_size(N=n, D=d, M=W.shape[1])
        dtype = kernel_dtype(x2d, W, b, integers_become_float=False)
        if dtype is None:
            return super().forward(x)
        out = np.empty((n, W.shape[1]), dtype=dtype)
        _backend.KERNELS[dtype].affine_forward(contiguous(x2d, dtype), contiguous(W, dtype),
                                               np.ascontiguousarray(b, dtype=dtype), out)
        self.original_x_shape = x.shape if isinstance(x, np.ndarray) else np.shape(x)
        self.x = x2d
        return out

    def backward(self, dout):
        # self.x is read here, as the book's backward reads it (the caller's
        # x, or whatever has been assigned since): checked against W and dout
        x, x_shape = self.x, self.original_x_shape
        if type(x) is not np.ndarray or x.ndim != 2 or type(x_shape) is not tuple:
            return super().backward(dout)
        W, _ = _checks.check_affine_params(self.W, self.b)
        _checks.check_affine_backward_weights(W, x)
        dout = _checks.as_numeric_array("dout", dout)
        n, d = x.shape
        _checks.check_same_shape("dout", dout, (n, W.shape[1]))
        dtype = kernel_dtype(x, W, dout, integers_become_float=False)
        if dtype is None or dout.dtype != dtype:
            return super().backward(dout)   # NumPy's per-product dtypes
        if not (x_shape == (n, d) and type(x_shape[0]) is int and type(x_shape[1]) is int):
            x_shape = _checks.check_original_x_shape(x_shape, n * d)
        x_kernel = contiguous(x, dtype)
        dx = np.empty((n, d), dtype=dtype)
        dW = np.empty(W.shape, dtype=dtype)
        db = np.empty(W.shape[1], dtype=dtype)
        _backend.KERNELS[dtype].affine_backward(np.ascontiguousarray(dout), x_kernel.T,
                                                contiguous(W, dtype).T, dx, dW, db)
        self.dW = dW
        self.db = db
        return dx if x_shape == (n, d) else dx.reshape(x_shape)


class SoftmaxWithLoss(_reference.SoftmaxWithLoss):
    __doc__ = _reference.SoftmaxWithLoss.__doc__

    def __init__(self):
        super().__init__()
        self._row_losses = None   # the kernel's per-row loss output, reused call to call
        self._kernel_y = None     # the 2-D y the kernel wrote (None: reference path)
        self._y_forward = None    # the self.y forward set: the kernel's y, or a view of it

    def forward(self, x, t):
        label_check = (_backend.elementwise.first_label_out_of_range
                       if _backend.COMPILED else None)
        x2d, labels, one_hot = _checks.softmax_inputs(x, t, label_check)
        dtype = kernel_dtype(x2d)
        if dtype is None:
            self._kernel_y = None
            return super().forward(x, t)
        x2d = np.ascontiguousarray(x2d, dtype=dtype)
        n = x2d.shape[0]
        y = np.empty_like(x2d)
        row_losses = self._row_losses
        if row_losses is None or row_losses.shape[0] != n or row_losses.dtype != dtype:
            row_losses = self._row_losses = np.empty(n, dtype=dtype)
        if one_hot:
            labels = np.ascontiguousarray(labels, dtype=dtype)
            total = _backend.KERNELS[dtype].softmax_xent_onehot(x2d, labels, y, row_losses)
        else:
            total = _backend.KERNELS[dtype].softmax_xent_labels(x2d, labels, y, row_losses)
        self._x_shape = x_shape = x.shape if isinstance(x, np.ndarray) else np.shape(x)
        self.t = t
        self._labels = labels
        self.y = self._y_forward = y if len(x_shape) == 2 else y.reshape(x_shape)
        self._kernel_y = y
        self.loss = total / n
        return self.loss

    def backward(self, dout=1):
        y = self._kernel_y
        # the kernel path needs a real scalar dout and the y forward wrote (not
        # one the caller has assigned since; in-place changes to it are read)
        if y is None or self.y is not self._y_forward \
                or isinstance(dout, (bool, np.bool_)) \
                or not isinstance(dout, (int, float, np.integer, np.floating)):
            return super().backward(dout)
        dx = np.empty_like(y)
        scale = dout / y.shape[0]
        kernels = _backend.KERNELS[y.dtype]
        if self._labels.ndim == 2:
            kernels.softmax_xent_backward_onehot(flat(y), flat(self._labels), flat(dx), scale)
        else:
            kernels.softmax_xent_backward_labels(y, self._labels, dx, scale)
        return dx if len(self._x_shape) == 2 else dx.reshape(self._x_shape)
