"""The book's chapter-5 layers in plain NumPy: the oracle for fastbp.layers.

Same names, signatures and attributes as the book (``common/layers.py``),
with the deliberate differences listed in README:
  1. ``backward`` never writes into the caller's ``dout``;
  2. ``SoftmaxWithLoss.backward`` multiplies by ``dout``;
  3. the loss comes from log-softmax, not log(y + 1e-7);
  4. ``Sigmoid`` never overflows.
"""
import numpy as np

from .. import _checks
from .functions import sigmoid, softmax_cross_entropy

__all__ = ["AddLayer", "MulLayer", "Relu", "ReLU", "Sigmoid", "Affine", "SoftmaxWithLoss"]


class MulLayer:
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


class AddLayer:
    """z = x + y; backward gives (dout, dout)."""

    def __init__(self):
        pass

    def forward(self, x, y):
        return x + y

    def backward(self, dout):
        dx = dout * 1
        dy = dout * 1
        return dx, dy


class Relu:
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


class Sigmoid:
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
        dx = dout * (1.0 - self.out) * self.out
        return dx


class Affine:
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
        out = np.matmul(self.x, W) + b     # matmul: np.dot skips 0 * inf for 1x1 operands
        return out

    def backward(self, dout):
        _checks.check_called_forward(self, "x")
        W, _ = _checks.check_affine_params(self.W, self.b)
        _checks.check_affine_backward_weights(W, self.x)
        dout = _checks.as_numeric_array("dout", dout)
        _checks.check_same_shape("dout", dout, (self.x.shape[0], W.shape[1]))
        dx = np.matmul(dout, W.T)
        self.dW = np.matmul(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        dx = dx.reshape(*self.original_x_shape)
        return dx


class SoftmaxWithLoss:
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
