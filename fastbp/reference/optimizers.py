"""The book's optimizers (``common/optimizer.py``) in plain NumPy.

Every optimizer has ``update(params, grads)``: ``params`` and ``grads`` are
dicts (any mapping) from a parameter name to an array; each ``params[key]``
(a floating ndarray, float32 or float64) is updated IN PLACE with exactly
the book's formula, so layers holding a reference to the array see the new
values.  State arrays (``v``, ``h``, ``m``) are created lazily as
``np.zeros_like(param)`` on the first update of each key.

Differences from the book, all on invalid input only:
  * ``update`` validates every key before touching any array: mismatched
    keys or shapes raise ValueError naming the key, the expected and the
    actual value; non-float params raise TypeError.  On error nothing
    (parameters, state, Adam's step counter) changes.
  * Hyperparameters are checked at construction (finite, non-negative;
    Adam's betas in [0, 1), RMSprop's decay_rate in [0, 1]).
  * Adam's ``lr_t`` is a Python float, so float32 parameters are updated in
    float32 arithmetic (the book's NumPy float64 scalar would promote the
    step to float64 under NumPy 2's casting rules before storing it back).

Subclassing (how ``fastbp.optimizers`` adds compiled fast paths): ``update``
calls ``_begin_step()`` once per call after validation, then
``_update_one(key, param, grad)`` once per key in ``params`` order.  A
subclass overriding only those two methods keeps the validation and the
lazy state creation (``_state(name, key, param)``).  A subclass that
overrides ``update`` itself (to clip, freeze or log) is always called
through it: a network's fused ``train_step`` then hands it the gradients.

Aliasing: the keys are updated one after the other, in ``params`` order,
each from ``grads[key]`` as it is when that key's turn comes.  A gradient
that shares memory with its own parameter or that key's state arrays
(``update(p, p)``) is copied first, so it is read as it was at the call,
not while the update writes it.  (The compiled updates make one pass per
array, the formulas above several; without the copy they would disagree.)
"""
import math
from collections.abc import Mapping

import numpy as np

from .. import _checks
from .._state import Stateful

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
           "OPTIMIZERS", "get_optimizer", "resolve_optimizer"]


class Optimizer(Stateful):
    """Base class: validation and the per-key loop shared by all optimizers.

    Subclasses implement ``_update_one(key, param, grad)`` (update the
    ndarray ``param`` in place) and may implement ``_begin_step()``.
    ``_state_names`` lists the per-key state dicts (e.g. ``('v',)``).
    ``update`` holds the optimizer's lock (``fastbp._state``): concurrent
    updates through one optimizer take turns.
    """

    _state_names = ()
    _serialised_methods = ("update",)

    def __init__(self):
        for name in self._state_names:
            setattr(self, name, {})

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        return f"{type(self).__name__}({hyper})"

    def _hyperparameters(self):
        return {}

    # -- validation -------------------------------------------------------
    def _validate(self, params, grads):
        """Check everything ``update`` will touch; return [(key, param, grad)]."""
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict of parameter arrays, got "
                            f"{type(params).__name__}")
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads: expected a dict of gradient arrays, got "
                            f"{type(grads).__name__}")
        param_keys = list(params.keys())
        missing = [k for k in param_keys if k not in grads]
        extra = [k for k in grads.keys() if k not in params]
        if missing or extra:
            detail = []
            if missing:
                detail.append(f"missing {missing}")
            if extra:
                detail.append(f"unexpected {extra}")
            raise ValueError(f"grads: expected the keys of params {param_keys}, got "
                             f"{list(grads.keys())} ({', '.join(detail)})")
        items = []
        for key in param_keys:
            param = params[key]
            self._check_param(key, param)
            grad = _checks.as_numeric_array(f"grads[{key!r}]", grads[key])
            if grad.dtype.kind == "b":
                raise TypeError(f"grads[{key!r}]: expected a floating or integer "
                                f"array, got dtype {grad.dtype}")
            if grad.shape != param.shape:
                raise ValueError(f"grads[{key!r}]: expected shape {param.shape} (the "
                                 f"shape of params[{key!r}]), got {grad.shape}")
            states = self._check_state(key, param)
            if any(np.may_share_memory(grad, other) for other in (param, *states)):
                grad = grad.copy()    # read as it was at the call (see "Aliasing" above)
            items.append((key, param, grad))
        return items

    @staticmethod
    def _check_param(key, param):
        """TypeError/ValueError unless ``param`` is a writeable floating ndarray."""
        if not isinstance(param, np.ndarray) or param.dtype.kind != "f":
            what = f"dtype {param.dtype}" if isinstance(param, np.ndarray) \
                else type(param).__name__
            raise TypeError(f"params[{key!r}]: expected a floating numpy array "
                            f"(updated in place), got {what}")
        if not param.flags.writeable:
            raise ValueError(f"params[{key!r}]: expected a writeable array (it is "
                             "updated in place), got a read-only array")

    def _check_state(self, key, param):
        """The state arrays of ``key`` (those created so far), after checking
        each is an ndarray of ``param``'s shape and dtype (ValueError naming
        the key otherwise: an optimizer used on another network, or a state
        array replaced by the caller)."""
        states = []
        for name in self._state_names:
            state = getattr(self, name).get(key)
            if state is None:
                continue
            if not isinstance(state, np.ndarray) or state.shape != param.shape \
                    or state.dtype != param.dtype:
                what = (f"shape {state.shape} and dtype {state.dtype}"
                        if isinstance(state, np.ndarray)
                        else f"the shape and dtype of its state (a {type(state).__name__})")
                raise ValueError(
                    f"params[{key!r}]: expected {what} as in earlier updates (state "
                    f"{name!r}), got shape {param.shape} and dtype {param.dtype}; use a new "
                    "optimizer for a different network")
            states.append(state)
        return states

    def _state(self, name, key, param):
        """State array ``name`` for ``key``, created as zeros_like(param) if new."""
        store = getattr(self, name)
        arr = store.get(key)
        if arr is None:
            arr = np.zeros_like(param)
            store[key] = arr
        return arr

    # -- the update ---------------------------------------------------------
    def update(self, params, grads):
        """Update every ``params[key]`` in place from ``grads[key]``.

        params: dict name -> floating ndarray (float32 or float64), any shape.
        grads: dict with the same keys; each a real array of the param's shape.
        Returns None.  Raises before changing anything when the arguments
        do not match (ValueError) or a param is not a float ndarray (TypeError).
        """
        items = self._validate(params, grads)
        self._begin_step()
        for key, param, grad in items:
            self._update_one(key, param, grad)

    def _begin_step(self):
        """Called once per ``update``, after validation, before any key."""

    def _update_one(self, key, param, grad):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent: p -= lr * g."""

    def __init__(self, lr=0.01):
        super().__init__()
        self.lr = _checks.check_positive_number("lr", lr)

    def _hyperparameters(self):
        return {"lr": self.lr}

    def _update_one(self, key, param, grad):
        param -= self.lr * grad


class Momentum(Optimizer):
    """Momentum SGD: v = momentum * v - lr * g; p += v.  State ``v``."""

    _state_names = ("v",)

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__()
        self.lr = _checks.check_positive_number("lr", lr)
        self.momentum = _checks.check_positive_number("momentum", momentum)

    def _hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum}

    def _update_one(self, key, param, grad):
        v = self._state("v", key, param)
        v *= self.momentum
        v -= self.lr * grad
        param += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, in the book's current form.  State ``v``.

    p += momentum**2 * v; p -= (1 + momentum) * lr * g; v *= momentum; v -= lr * g
    (the parameter moves with the velocity of the previous step, then the
    velocity is updated).  Same hyperparameters and state as Momentum; only
    the update differs.
    """

    def _update_one(self, key, param, grad):
        v = self._state("v", key, param)
        param += self.momentum * self.momentum * v
        param -= (1 + self.momentum) * self.lr * grad
        v *= self.momentum
        v -= self.lr * grad


class AdaGrad(Optimizer):
    """AdaGrad: h += g * g; p -= lr * g / (sqrt(h) + 1e-7).  State ``h``."""

    _state_names = ("h",)

    def __init__(self, lr=0.01):
        super().__init__()
        self.lr = _checks.check_positive_number("lr", lr)

    def _hyperparameters(self):
        return {"lr": self.lr}

    def _update_one(self, key, param, grad):
        h = self._state("h", key, param)
        h += grad * grad
        param -= self.lr * grad / (np.sqrt(h) + 1e-7)


class RMSprop(Optimizer):
    """RMSprop: h = decay * h + (1 - decay) * g * g; p -= lr * g / (sqrt(h) + 1e-7).

    State ``h``.  decay_rate must lie in [0, 1].
    """

    _state_names = ("h",)

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__()
        self.lr = _checks.check_positive_number("lr", lr)
        self.decay_rate = _checks.check_unit_interval("decay_rate", decay_rate, include_one=True)

    def _hyperparameters(self):
        return {"lr": self.lr, "decay_rate": self.decay_rate}

    def _update_one(self, key, param, grad):
        h = self._state("h", key, param)
        h *= self.decay_rate
        h += (1 - self.decay_rate) * grad * grad
        param -= self.lr * grad / (np.sqrt(h) + 1e-7)


class Adam(Optimizer):
    """Adam, in the book's form.  State ``m``, ``v`` and the step counter ``iter``.

    Per update: iter += 1; lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter);
    per key: m += (1 - beta1) * (g - m); v += (1 - beta2) * (g**2 - v);
    p -= lr_t * m / (sqrt(v) + 1e-7).  beta1 and beta2 must lie in [0, 1).
    After an update, ``lr_t`` holds the step size used (a Python float).
    """

    _state_names = ("m", "v")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__()
        self.lr = _checks.check_positive_number("lr", lr)
        self.beta1 = _checks.check_unit_interval("beta1", beta1, include_one=False)
        self.beta2 = _checks.check_unit_interval("beta2", beta2, include_one=False)
        self.iter = 0
        self.lr_t = None

    def _hyperparameters(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2}

    def _begin_step(self):
        self.iter += 1
        self.lr_t = (self.lr * math.sqrt(1.0 - self.beta2 ** self.iter)
                     / (1.0 - self.beta1 ** self.iter))

    def _update_one(self, key, param, grad):
        m = self._state("m", key, param)
        v = self._state("v", key, param)
        m += (1 - self.beta1) * (grad - m)
        v += (1 - self.beta2) * (grad ** 2 - v)
        param -= self.lr_t * m / (np.sqrt(v) + 1e-7)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def resolve_optimizer(registry, name_or_instance, **params):
    """``get_optimizer`` over any ``registry`` (lower-case name -> class).

    ``fastbp.optimizers`` reuses it with its own registry of compiled classes.
    """
    if isinstance(name_or_instance, str):
        key = name_or_instance.lower()
        if key not in registry:
            raise ValueError(f"optimizer: expected one of {sorted(registry)} "
                             f"(case-insensitive), got {name_or_instance!r}")
        return registry[key](**params)
    if isinstance(name_or_instance, type) and hasattr(name_or_instance, "update"):
        return name_or_instance(**params)
    if callable(getattr(name_or_instance, "update", None)):
        if params:
            raise ValueError(f"optimizer: got an optimizer instance "
                             f"{name_or_instance!r} and parameters {sorted(params)}; "
                             "pass either a name with parameters or a ready instance")
        return name_or_instance
    raise TypeError(f"optimizer: expected a name from {sorted(registry)} or an object "
                    f"with an update(params, grads) method, got "
                    f"{type(name_or_instance).__name__}")


def get_optimizer(name_or_instance, **params):
    """An optimizer from a name (case-insensitive), a class, or an instance.

    ``get_optimizer('Adam', lr=0.01)`` is ``Adam(lr=0.01)``; an instance is
    returned unchanged (then no ``params`` may be given).  Unknown names raise
    ValueError listing the valid ones: sgd, momentum, nesterov, adagrad,
    rmsprop, adam.
    """
    return resolve_optimizer(OPTIMIZERS, name_or_instance, **params)
