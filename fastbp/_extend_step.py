"""The compiled ``train_step`` of ``MultiLayerNetExtend`` (fastbp.networks).

One call of ``fastbp._train_extend.ExtendStep.step`` per training step:
the dropout masks (drawn from each Dropout layer's stream, in layer order,
as the layers draw them), affine, batch normalisation, ReLU/sigmoid,
dropout, softmax cross-entropy, the backward pass, weight decay and, with
SGD, the update of every parameter, in buffers allocated once per batch
size.  Other optimizers get the gradients in reused arrays and update each
parameter in one compiled pass.  The numbers are those of ``gradient()`` +
``optimizer.update`` (the same loops; with weight decay or SGD, BLAS folds
the decay term and the step into its products: equal within rounding).

The step runs compiled while the network is as ``MultiLayerNetExtend``
built it: its BatchNorm layers read ``params['gamma{i}']`` and
``params['beta{i}']`` and keep running statistics of the net's dtype, its
Dropout layers draw from the global generator (np.random.rand not
replaced) or a ``numpy.random.Generator``.  Anything else (a replaced
array or layer, a float16 net, a build without the compiled core) takes
the layer-by-layer path: ``gradient()`` + ``optimizer.update``.

After ``train_step`` the layers' running statistics are new arrays, as
after a training ``forward``; their other cached attributes (``xc``,
``mask``, ``dW``...) are not refreshed.
"""
import functools

import numpy as np

from . import _backend, _checks
from . import optimizers as _optimizers
from ._ch6_layers import dropout_stream
from .reference import layers as _reference_layers
from .reference.networks import gradient_step

__all__ = ["ExtendTrainStep"]


@functools.lru_cache(maxsize=64)
def _hidden_keys(sizes):
    """Per hidden layer of a net of ``sizes``: (i, width, the keys of its
    BatchNorm layer, gamma, beta and Dropout layer), made once."""
    return tuple((i, sizes[i], f"BatchNorm{i}", f"gamma{i}", f"beta{i}", f"Dropout{i}")
                 for i in range(1, len(sizes) - 1))


def _step_statistic(value, dtype, width):
    """A running statistic as the compiled step takes it: the array itself,
    zeros for None (before the first forward), or None when the step can't
    take it (then the layer-by-layer path runs)."""
    if value is None:
        return np.zeros(width, dtype)
    if (isinstance(value, np.ndarray) and value.dtype == dtype
            and value.shape == (width,) and value.flags.c_contiguous):
        return value
    return None


class _ExtendWorkspace:
    """The compiled step's buffers for batch size n and a dtype, the cast
    input and the gradient arrays (for optimizers other than SGD)."""

    def __init__(self, net, n):
        sizes, dtype = net._sizes, net.dtype
        self.key = (n, dtype)
        self.step = _backend.train_extend.ExtendStep(
            sizes, n, dtype, net.activation, net.use_batchnorm, net.use_dropout)
        self.x = np.empty((n, sizes[0]), dtype)
        self.grads = {key: np.empty_like(param) for key, param in net.params.items()}
        n_affine = len(sizes) - 1
        self.weight_keys = [f"W{i}" for i in range(1, n_affine + 1)]
        self.bias_keys = [f"b{i}" for i in range(1, n_affine + 1)]
        self.grad_W = [self.grads[key] for key in self.weight_keys]
        self.grad_b = [self.grads[key] for key in self.bias_keys]


class ExtendTrainStep:
    """Mixin for MultiLayerNetExtend: the compiled ``train_step``.  Uses
    ``_checked_batch``, ``_step_inputs``, ``_apply_optimizer`` and the
    blocked ``accuracy`` of fastbp.networks' ``_FastTrainStep``."""

    def _get_workspace(self, n):
        ws = self._workspace
        if ws is None or ws.key != (n, self.dtype) or ws.grads.keys() != self.params.keys():
            _checks.check_blas_size(N=n, widest_layer=max(self._sizes))
            ws = self._workspace = _ExtendWorkspace(self, n)
        return ws

    def _layer_state(self):
        """``(norms, dropouts, new_statistics)`` for ExtendStep.step, or None
        when a layer is not as built (then the layer-by-layer path runs).
        norms: per BatchNorm layer the tuple the step takes, with gamma and
        beta as their own outputs (the fused SGD update; train_step swaps in
        gradient arrays for other optimizers); new_statistics: per BatchNorm
        layer, (layer, mean_out, var_out), the arrays the step fills."""
        norms, dropouts, statistics = [], [], []
        dtype, params, layers = self.dtype, self.params, self.layers
        for i, width, bn_key, gamma_key, beta_key, dropout_key in _hidden_keys(self._sizes):
            if self.use_batchnorm:
                layer = layers.get(bn_key)
                gamma, beta = params.get(gamma_key), params.get(beta_key)
                if not (isinstance(layer, _reference_layers.BatchNormalization)
                        and layer.gamma is gamma and layer.beta is beta
                        and isinstance(layer.momentum, float)):
                    return None
                mean = _step_statistic(layer.running_mean, dtype, width)
                var = _step_statistic(layer.running_var, dtype, width)
                if mean is None or var is None:
                    return None
                mean_out, var_out = np.empty(width, dtype), np.empty(width, dtype)
                norms.append((gamma, beta, gamma, beta, mean, var, mean_out, var_out,
                              layer.momentum))
                statistics.append((layer, mean_out, var_out))
            if self.use_dropout:
                layer = layers.get(dropout_key)
                if not isinstance(layer, _reference_layers.Dropout):
                    return None
                ratio = _checks.check_unit_interval("dropout_ratio", layer.dropout_ratio,
                                                    include_one=False)
                stream = dropout_stream(layer.rng)
                if stream is None:
                    return None
                dropouts.append((*stream, ratio))
        return norms, dropouts, statistics

    def train_step(self, x, t, optimizer):
        x2d, t = self._checked_batch(x, t, optimizer)
        n = x2d.shape[0]
        state = None
        if _backend.COMPILED and self.dtype in _backend.KERNELS:
            state = self._layer_state()
        if state is None:
            _checks.check_blas_size(N=n, widest_layer=max(self._sizes))
            return gradient_step(self, x, t, optimizer)
        norms, dropouts, statistics = state
        ws = self._get_workspace(n)
        fused_sgd = _optimizers.is_fusable_sgd(optimizer)
        if not fused_sgd:              # the step writes dgamma, dbeta into ws.grads
            norms = [norm[:2] + (ws.grads[gamma_key], ws.grads[beta_key]) + norm[4:]
                     for norm, (_, _, _, gamma_key, beta_key, _)
                     in zip(norms, _hidden_keys(self._sizes))]
        x_in, t = self._step_inputs(ws, x2d, t)
        params = self.params
        weights = [params[key] for key in ws.weight_keys]
        biases = [params[key] for key in ws.bias_keys]
        lam = self.weight_decay_lambda
        # the loss is at the parameters before the update: weight decay first
        decay_loss = self._weight_decay_loss()
        try:
            if fused_sgd:
                # W = (1 - lr*lam) W - lr x.T dz, b = b - lr sum(dz), gamma, beta likewise
                lr = optimizer.lr
                total = ws.step.step(x_in, t, weights, biases, weights, biases,
                                     -lr, 1.0 - lr * lam, 1.0, norms, dropouts)
            else:
                # gradients dW = x.T dz + lam W, db = sum(dz), dgamma, dbeta; then the optimizer
                total = ws.step.step(x_in, t, weights, biases, ws.grad_W, ws.grad_b,
                                     1.0, lam, 0.0, norms, dropouts)
        except _backend.train.ParamsOverlap:
            # params sharing memory (no mask drawn yet): the reference computes
            # every gradient before it updates anything
            return gradient_step(self, x, t, optimizer)
        except (TypeError, ValueError):
            # the step checks everything before it draws or writes; params it
            # can't take (another dtype, a view, read-only) go the reference way
            if self._params_fit_compiled_step():
                raise
            return gradient_step(self, x, t, optimizer)
        for layer, mean_out, var_out in statistics:
            layer.running_mean, layer.running_var = mean_out, var_out
        if not fused_sgd:
            self._apply_optimizer(ws, optimizer)
        return total / n + decay_loss
