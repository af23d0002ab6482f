"""Activation and loss functions with compiled kernels where they pay.

Same names and signatures as ``fastbp.reference.functions``; dtypes the
kernels don't cover go through the reference.
"""
import numpy as np

from . import _backend, _checks
from ._arrays import contiguous, flat, kernel_dtype
from .reference import functions as _reference
from .reference.functions import (cross_entropy_error, identity_function, labels_to_indices,
                                  mean_squared_error, relu, softmax_loss, step_function,
                                  sum_squared_error)

__all__ = ["sigmoid", "sigmoid_grad", "relu", "relu_grad", "softmax",
           "cross_entropy_error", "softmax_cross_entropy", "labels_to_indices",
           "identity_function", "step_function", "sum_squared_error", "mean_squared_error",
           "softmax_loss"]


def _map(kernel, x, dtype):
    """``kernel(x, out)`` over x cast to ``dtype`` and a new ``out`` of its
    shape and layout, both as flat views; returns ``out``."""
    x = contiguous(x, dtype)
    out = np.empty_like(x)
    kernel(flat(x), flat(out))
    return out


def sigmoid(x):
    x = _checks.as_numeric_array("x", x)
    dtype = kernel_dtype(x)
    if dtype is None:
        return _reference.sigmoid(x)
    return _map(_backend.KERNELS[dtype].sigmoid_forward, x, dtype)


def sigmoid_grad(x):
    x = _checks.as_numeric_array("x", x)
    dtype = kernel_dtype(x)
    if dtype is None or x.ndim == 0:     # 0-d: the reference gives a NumPy scalar
        return _reference.sigmoid_grad(x)
    return _map(_backend.KERNELS[dtype].sigmoid_grad, x, dtype)


def relu_grad(x):
    x = _checks.as_numeric_array("x", x)
    dtype = kernel_dtype(x, integers_become_float=False)
    if dtype is None or x.ndim == 0:     # integers: float64 0/1 from the reference
        return _reference.relu_grad(x)
    return _map(_backend.KERNELS[dtype].relu_grad, x, dtype)


def softmax(x):
    x = _checks.as_numeric_array("x", x)
    dtype = kernel_dtype(x)
    if dtype is None or x.ndim not in (1, 2) or x.size == 0:
        return _reference.softmax(x)
    x2d = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=dtype)
    y = np.empty_like(x2d)
    # The fused kernel also computes a loss; against label 0 it is cheap and unused.
    labels = np.zeros(x2d.shape[0], dtype=np.int64)
    _backend.KERNELS[dtype].softmax_xent_labels(x2d, labels, y, np.empty(x2d.shape[0], dtype))
    return y.reshape(x.shape)


def softmax_cross_entropy(x, t):
    x, t, one_hot = _checks.softmax_inputs(x, t)
    dtype = kernel_dtype(x)
    if dtype is None:
        return _reference.softmax_cross_entropy(x, t)
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.empty_like(x)
    loss = np.empty(x.shape[0], dtype=dtype)
    kernels = _backend.KERNELS[dtype]
    if one_hot:
        kernels.softmax_xent_onehot(x, np.ascontiguousarray(t, dtype=dtype), y, loss)
    else:
        kernels.softmax_xent_labels(x, np.ascontiguousarray(t), y, loss)
    return y, loss


for _fast in (sigmoid, sigmoid_grad, relu_grad, softmax, softmax_cross_entropy):
    _fast.__doc__ = getattr(_reference, _fast.__name__).__doc__
del _fast
