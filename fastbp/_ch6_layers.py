"""The book's chapter-6 layers with compiled kernels: ``Dropout`` and
``BatchNormalization``, exported by ``fastbp.layers``.

Each subclasses its twin in ``fastbp.reference.layers`` (same signature,
attributes and numbers) and overrides ``forward``/``backward``: a few cheap
checks decide whether the kernels (``fastbp._dropout``,
``fastbp._batchnorm``) can compute the call exactly as the reference would;
anything else -- another dtype, a mixed-dtype call, bad input, an attribute
replaced by the caller -- goes to the reference, which computes it or raises
its error.  What ``backward`` reads from the last ``forward`` is either
re-checked (Dropout's ``mask``) or trusted only while it is still the very
object the kernels wrote (BatchNormalization's ``xc``, ``xn``, ``std``).
"""
import math

import numpy as np

from . import _backend, _checks
from ._arrays import flat
from ._outputs import REUSE_MIN_BYTES, released_or_empty, reusable_or_empty
from .reference import layers as _reference

__all__ = ["Dropout", "BatchNormalization"]

#: NumPy's np.random.rand at import: while it is still the one installed, the
#: book's stream can be drawn in C from the global generator's bit generator
#: (a replaced np.random.rand -- a test's fixed masks -- is called instead).
_NUMPY_RAND = np.random.rand


def _global_bit_generator():
    """The bit generator of NumPy's global RandomState (np.random.rand's)."""
    get = getattr(np.random, "get_bit_generator", None)      # NumPy >= 1.25
    return get() if get is not None else np.random.mtrand._rand._bit_generator


def dropout_stream(rng):
    """``(bit_generator, book_stream)`` for a Dropout's ``rng``, or None when
    the compiled kernels cannot draw its masks (np.random.rand replaced, or
    ``rng`` not a Generator): then the reference draws them.

    rng None: the global generator's bit generator, book_stream True (the
    masks of ``np.random.rand(*shape) > ratio``); a Generator: its bit
    generator, book_stream False (``rng.random(shape, dtype=float32) > ratio``).
    """
    if rng is None:
        if np.random.rand is not _NUMPY_RAND:
            return None
        return _global_bit_generator(), True
    if type(rng) is np.random.Generator:
        return rng.bit_generator, False
    return None


def _dropout_ratio(value):
    """The layer's dropout_ratio as a float in [0, 1) (ValueError otherwise)."""
    if type(value) is float and 0.0 <= value < 1.0:
        return value
    return _checks.check_unit_interval("dropout_ratio", value, include_one=False)


def _c_order(a):
    """``a`` C-contiguous (a copy only if it is not; 0-d arrays stay 0-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")


class Dropout(_reference.Dropout):
    __doc__ = _reference.Dropout.__doc__

    def forward(self, x, train_flg=True):
        kernels = _backend.KERNELS.get(x.dtype) if isinstance(x, np.ndarray) else None
        if not train_flg or kernels is None:
            return super().forward(x, train_flg)      # test mode: one NumPy product
        ratio = _dropout_ratio(self.dropout_ratio)
        stream = dropout_stream(self.rng)
        if stream is None:
            return super().forward(x, train_flg)
        bit_generator, book_stream = stream
        x = _c_order(x)                               # draws in C order of x.shape
        out = np.empty(x.shape, x.dtype)
        mask = np.empty(x.shape, np.bool_)
        kernels.dropout_forward(bit_generator, book_stream, ratio, flat(x),
                                flat(mask).view(np.uint8), flat(out))
        self.mask = mask
        return out

    def backward(self, dout):
        mask = self.mask
        if not (isinstance(dout, np.ndarray) and isinstance(mask, np.ndarray)
                and mask.dtype == np.bool_ and dout.shape == mask.shape):
            return super().backward(dout)
        kernels = _backend.KERNELS.get(dout.dtype)
        if kernels is None:
            return super().backward(dout)
        dout, mask = _c_order(dout), _c_order(mask)
        dx = np.empty(dout.shape, dout.dtype)
        kernels.dropout_apply(flat(dout), flat(mask).view(np.uint8), flat(dx))
        return dx


class BatchNormalization(_reference.BatchNormalization):
    __doc__ = _reference.BatchNormalization.__doc__

    # the arrays forward and backward return, kept to be written again once the
    # caller has dropped them (a conv-sized batch's fresh pages cost as much as
    # the kernels); never copied with the layer
    _out_buffer = None
    _dx_buffer = None
    _transient_attributes = ("_out_buffer", "_dx_buffer")

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        super().__init__(gamma, beta, momentum, running_mean, running_var)
        # (xc, xn, std, x's shape) as the kernels wrote them at the last training
        # forward: backward runs compiled only while the attributes are these
        self._kernel_state = None

    def _reusable(self, name, shape, dtype):
        """A new xc or xn for a training forward: the last one again if nobody
        but the layer (the attribute, and _kernel_state) holds it."""
        state = self._kernel_state
        kept = state is not None and vars(self).get(name) is state[0 if name == "xc" else 1]
        return reusable_or_empty(self, name, shape, dtype, other_holders=int(kept))

    def forward(self, x, train_flg=True):
        # The kernels take x, gamma, beta and the running statistics when they
        # are arrays of one float32/float64 dtype, C-contiguous (x is made so),
        # of matching sizes, and a float momentum in [0, 1]: they check all of
        # it before writing anything.  Anything else -- mixed dtypes, lists,
        # bad input -- goes to the reference, which computes it or raises.
        kernels = _backend.KERNELS.get(x.dtype) if type(x) is np.ndarray else None
        momentum = self.momentum
        if (kernels is None or x.ndim not in (2, 4) or not isinstance(momentum, float)
                or not 0 <= momentum <= 1 or (train_flg and x.shape[0] == 0)):
            # (a momentum outside [0, 1] is refused in test mode too, as the reference does)
            return self._reference_forward(x, train_flg)
        dtype = x.dtype
        x2d = x if x.ndim == 2 else x.reshape(x.shape[0], math.prod(x.shape[1:]))
        if not x2d.flags.c_contiguous:
            x2d = np.ascontiguousarray(x2d)
        n, n_features = x2d.shape
        running_mean, running_var = self.running_mean, self.running_var
        if running_mean is None:                     # the reference's zeros
            running_mean = np.zeros(n_features, dtype)
        if running_var is None:
            running_var = np.zeros(n_features, dtype)
        shape2d = (n, n_features)
        large = n * n_features * dtype.itemsize >= REUSE_MIN_BYTES
        out = released_or_empty(self, "_out_buffer", shape2d, dtype) if large \
            else np.empty(shape2d, dtype)
        try:
            if train_flg:
                xc = self._reusable("xc", shape2d, dtype) if large else np.empty(shape2d, dtype)
                xn = self._reusable("xn", shape2d, dtype) if large else np.empty(shape2d, dtype)
                std = np.empty(n_features, dtype)
                mean_out = np.empty(n_features, dtype)
                var_out = np.empty(n_features, dtype)
                kernels.bn_forward_train(x2d, self.gamma, self.beta, running_mean,
                                         running_var, momentum, xc, xn, out, std, mean_out,
                                         var_out)
            else:
                kernels.bn_forward_test(x2d, self.gamma, self.beta, running_mean, running_var,
                                        out)
        except (TypeError, ValueError):
            return self._reference_forward(x, train_flg)
        if train_flg:
            self.batch_size = n
            self.xc, self.xn, self.std = xc, xn, std
            self._train_shape = shape = x.shape
            self._kernel_state = (xc, xn, std, shape)
            running_mean, running_var = mean_out, var_out
        self.running_mean = running_mean
        self.running_var = running_var
        self.input_shape = x.shape
        return out if x.ndim == 2 else out.reshape(x.shape)

    def _reference_forward(self, x, train_flg):
        if train_flg:
            self._kernel_state = None
        return super().forward(x, train_flg)

    def backward(self, dout):
        state = self._kernel_state
        if state is None or type(dout) is not np.ndarray:
            return super().backward(dout)
        xc, xn, std, shape = state
        # compiled only on what the last compiled forward wrote, still in place
        if not (self.xc is xc and self.xn is xn and self.std is std
                and self._train_shape is shape and dout.shape == shape
                and dout.dtype == xc.dtype and type(self.batch_size) is int
                and self.batch_size == xc.shape[0]):
            return super().backward(dout)
        if not dout.flags.c_contiguous:
            dout = np.ascontiguousarray(dout)
        dx = released_or_empty(self, "_dx_buffer", xc.shape, xc.dtype) \
            if xc.nbytes >= REUSE_MIN_BYTES else np.empty(xc.shape, xc.dtype)
        dgamma = np.empty(std.shape, std.dtype)
        dbeta = np.empty(std.shape, std.dtype)
        try:
            _backend.KERNELS[xc.dtype].bn_backward(dout.reshape(xc.shape), xn, xc, std,
                                                   self.gamma, dx, dgamma, dbeta)
        except (TypeError, ValueError):                # gamma replaced: the reference's way
            return super().backward(dout)
        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx if len(shape) == 2 else dx.reshape(shape)
