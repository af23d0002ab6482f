"""The book's networks on compiled layers, with a fused ``train_step``.

``TwoLayerNet`` and ``MultiLayerNet`` are the reference classes
(``fastbp.reference.networks``) built on ``fastbp.layers``; everything the
book does with them (``predict``, ``loss``, ``gradient``, the params dict
updated in place) works unchanged.  ``train_step(x, t, optimizer)`` is the
fast path: one compiled call (``fastbp._train.MLPStep``) runs the forward
pass, the loss, the backward pass and the update in buffers allocated once
per batch shape, with no input gradient for the first layer and, with SGD,
the update fused into the weight-gradient GEMM
(W = (1 - lr*lambda) * W - lr * x.T @ dz); other optimizers get the
gradients and update each parameter in one compiled pass.
After ``train_step`` the layers' cached attributes (``.x``, ``.dW``, ...)
are not refreshed; ``gradient()`` still returns fresh arrays.
``MultiLayerNetExtend`` (chapter 6) has its own compiled step with batch
normalisation, dropout and weight decay (fastbp/_extend_step.py).
The batch is cast to the net's dtype first (uint8 or float32 images into a
float64 net; float64 images into a float32 net compute in float32, where
``gradient()`` would follow NumPy's result dtype).
``accuracy()`` predicts in blocks of 512 rows, so evaluating a whole
training set never makes a cast copy of it or N-row activations.

``SimpleConvNet`` and ``DeepConvNet`` (chapters 7-8) are the reference
convnets (``fastbp.reference.convnets``) built on ``fastbp.layers``, with a
fused ``train_step`` and a compiled ``predict`` (``fastbp._convnet``);
``loss`` and ``gradient`` run through the layers, as in the book.
"""
import numpy as np

from . import _backend, _checks, _convnet
from . import layers as _layers
from . import optimizers as _optimizers
from ._extend_step import ExtendTrainStep
from .reference import convnets as _reference_convnets
from .reference import multi_layer_net_extend as _reference_extend
from .reference import networks as _reference

__all__ = ["TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "DeepConvNet"]


class _Workspace:
    """The compiled step's buffers for batch size n and a dtype, plus the
    arrays train_step hands it: the cast input and gradient arrays (for
    optimizers other than SGD)."""

    def __init__(self, sizes, n, dtype, activation):
        self.key = (n, dtype)
        self.step = _backend.train.MLPStep(sizes, n, dtype, activation)
        self.x = np.empty((n, sizes[0]), dtype)                       # input cast to dtype
        n_affine = len(sizes) - 1
        self.grads = {}
        for i in range(1, n_affine + 1):
            self.grads[f"W{i}"] = np.empty((sizes[i - 1], sizes[i]), dtype)
            self.grads[f"b{i}"] = np.empty(sizes[i], dtype)
        self.weight_keys = [f"W{i}" for i in range(1, n_affine + 1)]
        self.bias_keys = [f"b{i}" for i in range(1, n_affine + 1)]
        self.grad_W = [self.grads[key] for key in self.weight_keys]
        self.grad_b = [self.grads[key] for key in self.bias_keys]


class _FastTrainStep:
    """Mixin: the compiled ``train_step`` over a reference network."""

    layers_module = _layers
    _workspace = None
    # Rows per block when accuracy() predicts: a block's cast input and
    # activations stay in cache instead of making N-row temporaries (fastbp
    # train's evaluation, 10k float32 images into a float64 net: 1.35-1.43x).
    _PREDICT_BLOCK = 512

    def _predicted_classes(self, x):
        predicted_classes, block = super()._predicted_classes, self._PREDICT_BLOCK
        return np.concatenate([predicted_classes(x[i:i + block])
                               for i in range(0, x.shape[0], block)])

    def _get_workspace(self, n):
        ws = self._workspace
        if ws is None or ws.key != (n, self.dtype):
            _checks.check_blas_size(N=n, widest_layer=max(self._sizes))
            ws = _Workspace(self._sizes, n, self.dtype, getattr(self, "activation", "relu"))
            self._workspace = ws
        return ws

    def _checked_batch(self, x, t, optimizer):
        """``(x2d, t)``: the batch as (N, D) and its labels as int64 (N,) or
        one-hot (N, C), after the reference's checks (the optimizer's too)."""
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError(f"optimizer: expected an object with an update(params, grads) "
                            f"method, got {type(optimizer).__name__}")
        W1 = self.params["W1"]
        if isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == W1.shape[0] \
                and x.dtype.kind in "biuf":
            x2d = x                                  # the common case, checked cheaply
        else:
            x2d = _checks.affine_input_2d(x, W1)
        n = x2d.shape[0]
        if n == 0:
            _checks.check_nonempty_batch(x)          # raises
        if n > _checks.BLAS_INT_MAX:                 # before the labels are copied
            _checks.check_blas_size(N=n)             # raises
        return x2d, self._checked_labels(t, n)

    def _step_inputs(self, ws, x2d, t):
        """x and t as the compiled step takes them: x in the net's dtype,
        C-contiguous (cast into the workspace's buffer if need be), one-hot t
        in the net's dtype."""
        if x2d.dtype == self.dtype and x2d.flags.c_contiguous:
            x_in = x2d
        else:
            np.copyto(ws.x, x2d, casting="unsafe")   # uint8/float32 images -> net dtype
            x_in = ws.x
        if t.ndim == 2:
            t = np.ascontiguousarray(t, dtype=self.dtype)
        return x_in, t

    def train_step(self, x, t, optimizer):
        x2d, t = self._checked_batch(x, t, optimizer)
        n = x2d.shape[0]
        if not _backend.COMPILED or self.dtype not in _backend.KERNELS:
            _checks.check_blas_size(N=n, widest_layer=max(self._sizes))
            return super().train_step(x, t, optimizer)
        ws = self._get_workspace(n)
        x_in, t = self._step_inputs(ws, x2d, t)
        params = self.params
        weights = [params[key] for key in ws.weight_keys]
        biases = [params[key] for key in ws.bias_keys]
        lam = self.weight_decay_lambda
        # the loss is at the parameters before the update: weight decay first
        decay_loss = self._weight_decay_loss()
        fused_sgd = _optimizers.is_fusable_sgd(optimizer)
        try:
            if fused_sgd:
                # W = (1 - lr*lam) W - lr x.T dz and b = b - lr sum(dz), in place
                lr = optimizer.lr
                total = ws.step.step(x_in, t, weights, biases, weights, biases,
                                     -lr, 1.0 - lr * lam, 1.0)
            else:
                # gradients dW = x.T dz + lam W and db = sum(dz), then the optimizer
                total = ws.step.step(x_in, t, weights, biases, ws.grad_W, ws.grad_b,
                                     1.0, lam, 0.0)
        except _backend.train.ParamsOverlap:
            # params sharing memory: the reference computes every gradient
            # before it updates anything
            return super().train_step(x, t, optimizer)
        except (TypeError, ValueError):
            # the step checks every param before it writes anything; params it
            # can't take (another dtype, a view, read-only) go the reference way
            if self._params_fit_compiled_step():
                raise
            return super().train_step(x, t, optimizer)
        if not fused_sgd:
            self._apply_optimizer(ws, optimizer)
        return total / n + decay_loss

    def _params_fit_compiled_step(self):
        return all(isinstance(p, np.ndarray) and p.dtype == self.dtype
                   and p.flags.c_contiguous and p.flags.writeable
                   for p in self.params.values())

    def _checked_labels(self, t, n):
        """Labels as int64 (N,) or one-hot (N, C); the same errors as SoftmaxWithLoss."""
        n_classes = self._sizes[-1]
        if isinstance(t, np.ndarray) and t.ndim == 1 and t.dtype.kind in "iu" \
                and t.shape[0] == n and _backend.COMPILED:
            labels = t.astype(np.int64, copy=False)
            if not labels.flags.c_contiguous:
                labels = np.ascontiguousarray(labels)
            if _backend.elementwise.first_label_out_of_range(labels, n_classes) < 0:
                return labels
        logits_shape = np.broadcast_to(np.zeros((), self.dtype), (n, n_classes))
        return _checks.softmax_inputs(logits_shape, t)[1]   # raises if bad

    def _apply_optimizer(self, ws, optimizer):
        _optimizers.apply_step_gradients(optimizer, self.params, ws.grads)


class TwoLayerNet(_FastTrainStep, _reference.TwoLayerNet):
    __doc__ = _reference.TwoLayerNet.__doc__


class MultiLayerNet(_FastTrainStep, _reference.MultiLayerNet):
    __doc__ = _reference.MultiLayerNet.__doc__


class MultiLayerNetExtend(ExtendTrainStep, _FastTrainStep, _reference_extend.MultiLayerNetExtend):
    # fastbp.layers; train_step: one compiled call (fastbp/_extend_step.py)
    __doc__ = _reference_extend.MultiLayerNetExtend.__doc__
    layers_module = _layers


# ---------------------------------------------------------------------------
# Chapters 7-8: the convolutional networks on fastbp.layers, with the compiled
# train_step and predict of fastbp._convnet
# ---------------------------------------------------------------------------
class SimpleConvNet(_convnet.FusedConvNet, _reference_convnets.SimpleConvNet):
    __doc__ = _reference_convnets.SimpleConvNet.__doc__
    layers_module = _layers

    def predict(self, x):
        logits = self._fused_predict(x, False)
        return self._forward(x, False) if logits is None else logits

    predict.__doc__ = _reference_convnets.SimpleConvNet.predict.__doc__

    def _predict_for_loss(self, x):
        return self._forward(x, False)      # through the layers: gradient() backprops them


class DeepConvNet(_convnet.FusedConvNet, _reference_convnets.DeepConvNet):
    __doc__ = _reference_convnets.DeepConvNet.__doc__
    layers_module = _layers
    _dropout_indices = (17, 19)

    def predict(self, x, train_flg=False):
        logits = self._fused_predict(x, train_flg)
        return self._forward(x, train_flg) if logits is None else logits

    predict.__doc__ = _reference_convnets.DeepConvNet.predict.__doc__

    def _predict_for_loss(self, x):
        return self._forward(x, True)       # through the layers: gradient() backprops them
