"""The book's optimizers with fused compiled updates (one pass per array).

Same classes, signatures and state attributes as
``fastbp.reference.optimizers``; each overrides only ``_update_one``, calling
a kernel of ``fastbp._optim`` when the parameter, gradient and state share a
float32/float64 dtype and are contiguous, and the reference otherwise.
"""
import numpy as np

from . import _backend
from ._arrays import flat
from .reference import optimizers as _reference
from .reference.optimizers import Optimizer, resolve_optimizer

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
           "OPTIMIZERS", "get_optimizer"]


def overrides_update(optimizer):
    """Whether ``optimizer`` (one of fastbp's) has another ``update`` than
    ``Optimizer.update``, or ``_validate``: then a fused ``train_step`` calls
    its update() (to clip, freeze, log...) instead of fusing the rule."""
    cls = type(optimizer)
    return (getattr(cls, "update", None) is not _reference.Optimizer.update
            or getattr(cls, "_validate", None) is not _reference.Optimizer._validate
            or "update" in getattr(optimizer, "__dict__", ()))


def is_fusable_sgd(optimizer):
    """Whether a fused step may apply ``optimizer`` as plain SGD itself."""
    return type(optimizer) in (SGD, _reference.SGD) and not overrides_update(optimizer)


def apply_step_gradients(optimizer, params, grads):
    """Update ``params`` from a fused step's ``grads`` (its own buffers,
    same keys and shapes) as ``optimizer.update(params, grads)`` would.

    fastbp's own optimizers run their per-array rule under their lock after
    checking each parameter and its state (an optimizer used on another
    network refuses, as update() does); a foreign optimizer, or one whose
    update() is overridden, gets its update() with copies it may keep.
    """
    if isinstance(optimizer, _reference.Optimizer) and not overrides_update(optimizer):
        with optimizer._lock:
            for key, param in params.items():
                optimizer._check_param(key, param)
                optimizer._check_state(key, param)
            optimizer._begin_step()
            for key, param in params.items():
                optimizer._update_one(key, param, grads[key])
    else:
        optimizer.update(params, {k: g.copy() for k, g in grads.items()})


def _kernels_for(param, grad, *states):
    """The compiled kernels that can update these arrays in place (one
    float32/float64 dtype, one shape, C-contiguous, param and state arrays
    writeable), or None: the reference updates.  The state arrays are
    checked at every call: the caller may have replaced them since."""
    shape, dtype = param.shape, param.dtype
    if grad.dtype != dtype or grad.shape != shape or not grad.flags.c_contiguous:
        return None
    for array in (param, *states):
        if type(array) is not np.ndarray or array.dtype != dtype or array.shape != shape \
                or not array.flags.c_contiguous or not array.flags.writeable:
            return None
    return _backend.KERNELS.get(dtype)


class SGD(_reference.SGD):
    __doc__ = _reference.SGD.__doc__

    def _update_one(self, key, param, grad):
        kernels = _kernels_for(param, grad)
        if kernels is None:
            return super()._update_one(key, param, grad)
        kernels.sgd(flat(param), flat(grad), self.lr)


class Momentum(_reference.Momentum):
    __doc__ = _reference.Momentum.__doc__

    def _update_one(self, key, param, grad):
        v = self._state("v", key, param)
        kernels = _kernels_for(param, grad, v)
        if kernels is None:
            return super()._update_one(key, param, grad)
        kernels.momentum(flat(param), flat(grad), flat(v), self.lr, self.momentum)


class Nesterov(_reference.Nesterov):
    __doc__ = _reference.Nesterov.__doc__

    def _update_one(self, key, param, grad):
        v = self._state("v", key, param)
        kernels = _kernels_for(param, grad, v)
        if kernels is None:
            return super()._update_one(key, param, grad)
        kernels.nesterov(flat(param), flat(grad), flat(v), self.lr, self.momentum)


class AdaGrad(_reference.AdaGrad):
    __doc__ = _reference.AdaGrad.__doc__

    def _update_one(self, key, param, grad):
        h = self._state("h", key, param)
        kernels = _kernels_for(param, grad, h)
        if kernels is None:
            return super()._update_one(key, param, grad)
        kernels.adagrad(flat(param), flat(grad), flat(h), self.lr)


class RMSprop(_reference.RMSprop):
    __doc__ = _reference.RMSprop.__doc__

    def _update_one(self, key, param, grad):
        h = self._state("h", key, param)
        kernels = _kernels_for(param, grad, h)
        if kernels is None:
            return super()._update_one(key, param, grad)
        kernels.rmsprop(flat(param), flat(grad), flat(h), self.lr, self.decay_rate)


class Adam(_reference.Adam):
    __doc__ = _reference.Adam.__doc__

    def _update_one(self, key, param, grad):
        m = self._state("m", key, param)
        v = self._state("v", key, param)
        kernels = _kernels_for(param, grad, m, v)
        if kernels is None:
            return super()._update_one(key, param, grad)
        kernels.adam(flat(param), flat(grad), flat(m), flat(v), self.lr_t, self.beta1,
                     self.beta2)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov,
              "adagrad": AdaGrad, "rmsprop": RMSprop, "adam": Adam}


def get_optimizer(name_or_instance, **params):
    return resolve_optimizer(OPTIMIZERS, name_or_instance, **params)


get_optimizer.__doc__ = _reference.get_optimizer.__doc__
