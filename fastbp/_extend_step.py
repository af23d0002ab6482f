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
import numpy as np

from . import _backend, _checks
from . import optimizers as _optimizers
from ._ch6_layers import dropout_stream
from .reference import layers as _reference_layers
from .reference.networks import gradient_step

__all__ = ["ExtendTrainStep"]


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
        self.grad_W = [self.grads[f"W{i}"] for i in range(1, n_affine + 1)]
        self.grad_b = [self.grads[f"b{i}"] for i in range(1, n_affine + 1)]


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

    def _layer_state(self, n):
        """``(norms, dropouts, new_statistics)`` for ExtendStep.step but for
        the outputs of gamma and beta, or None when a layer is not as built
        (then the layer-by-layer path runs).  new_statistics: per BatchNorm
        layer, (layer, mean_out, var_out), the arrays the step fills."""
        norms, dropouts, statistics = [], [], []
        dtype, params = self.dtype, self.params
        for i in range(1, self.n_affine):
            width = self._sizes[i]
            if self.use_batchnorm:
                layer = self.layers.get(f"BatchNorm{i}")
                gamma, beta = params.get(f"gamma{i}"), params.get(f"beta{i}")
                if not (isinstance(layer, _reference_layers.BatchNormalization)
                        and layer.gamma is gamma and layer.beta is beta
                        and isinstance(layer.momentum, float)):
                    return None
                running = []
                for value in (layer.running_mean, layer.running_var):
                    if value is None:
                        value = np.zeros(width, dtype)
                    elif not (isinstance(value, np.ndarray) and value.dtype == dtype
                              and value.shape == (width,) and value.flags.c_contiguous):
                        return None
                    running.append(value)
                mean_out, var_out = np.empty(width, dtype), np.empty(width, dtype)
                norms.append([gamma, beta, None, None, *running, mean_out, var_out,
                              layer.momentum])
                statistics.append((layer, mean_out, var_out))
            if self.use_dropout:
                layer = self.layers.get(f"Dropout{i}")
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
            state = self._layer_state(n)
        if state is None:
            _checks.check_blas_size(N=n, widest_layer=max(self._sizes))
            return gradient_step(self, x, t, optimizer)
        norms, dropouts, statistics = state
        ws = self._get_workspace(n)
        x_in, t = self._step_inputs(ws, x2d, t)
        params = self.params
        n_affine = self.n_affine
        weights = [params[f"W{i}"] for i in range(1, n_affine + 1)]
        biases = [params[f"b{i}"] for i in range(1, n_affine + 1)]
        lam = self.weight_decay_lambda
        # the loss is at the parameters before the update: weight decay first
        decay_loss = self._weight_decay_loss()
        fused_sgd = _optimizers.is_fusable_sgd(optimizer)
        for i, norm in enumerate(norms, start=1):
            if fused_sgd:                              # gamma, beta updated in place
                norm[2], norm[3] = norm[0], norm[1]
            else:
                norm[2], norm[3] = ws.grads[f"gamma{i}"], ws.grads[f"beta{i}"]
        norms = [tuple(norm) for norm in norms]
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
