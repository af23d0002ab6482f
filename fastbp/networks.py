"""The book's networks on compiled layers, with a fused ``train_step``.

``TwoLayerNet`` and ``MultiLayerNet`` are the reference classes
(``fastbp.reference.networks``) built on ``fastbp.layers``; everything the
book does with them (``predict``, ``loss``, ``gradient``, the params dict
updated in place) works unchanged.  ``train_step(x, t, optimizer)`` is the
fast path: forward, backward and the update in buffers allocated once per
batch shape, no input gradient for the first layer, and with SGD the update
fused into the weight-gradient GEMM (W = (1 - lr*lambda) * W - lr * x.T @ dz).
After ``train_step`` the layers' cached attributes (``.x``, ``.dW``, ...)
are not refreshed; ``gradient()`` still returns fresh arrays.
The batch is cast to the net's dtype first (uint8 or float32 images into a
float64 net; float64 images into a float32 net compute in float32, where
``gradient()`` would follow NumPy's result dtype).
"""
import numpy as np

from . import _backend, _checks
from . import layers as _layers
from . import optimizers as _optimizers
from .reference import networks as _reference
from .reference import optimizers as _reference_optimizers

__all__ = ["TwoLayerNet", "MultiLayerNet"]


class _Workspace:
    """Every array one training step writes, for batch size n and a dtype."""

    def __init__(self, sizes, n, dtype, activation):
        n_affine = len(sizes) - 1
        self.key = (n, dtype)
        self.x = np.empty((n, sizes[0]), dtype)                       # input cast to dtype
        self.z = [np.empty((n, m), dtype) for m in sizes[1:]]        # affine outputs
        self.h = [np.empty((n, m), dtype) for m in sizes[1:-1]]      # activations
        self.dh = [np.empty((n, m), dtype) for m in sizes[1:-1]]     # d loss / d h
        self.dz = [np.empty((n, m), dtype) for m in sizes[1:]]       # d loss / d z
        self.y = np.empty((n, sizes[-1]), dtype)
        self.per_sample_loss = np.empty(n, dtype)
        self.no_dx = np.empty((0, 0), dtype)                          # first layer: no dx
        self.grads = {}
        for i in range(1, n_affine + 1):
            self.grads[f"W{i}"] = np.empty((sizes[i - 1], sizes[i]), dtype)
            self.grads[f"b{i}"] = np.empty(sizes[i], dtype)
        # flat views, made once: the kernels take 1-D memoryviews
        self.h_flat = [h.reshape(-1) for h in self.h]
        self.dh_flat = [d.reshape(-1) for d in self.dh]
        self.z_flat = [z.reshape(-1) for z in self.z[:-1]]
        self.dz_flat = [d.reshape(-1) for d in self.dz[:-1]]
        self.relu = activation == "relu"
        self.mask = [np.empty(h.size, np.uint8) for h in self.h] if self.relu else []


class _FastTrainStep:
    """Mixin: the fused compiled ``train_step`` over a reference network."""

    layers_module = _layers
    _workspace = None

    def _fast_path_ok(self):
        if not _backend.COMPILED or self.dtype not in (np.float32, np.float64):
            return False
        return all(p.dtype == self.dtype and p.flags.c_contiguous and p.flags.writeable
                   for p in self.params.values())

    def _get_workspace(self, n):
        ws = self._workspace
        if ws is None or ws.key != (n, self.dtype):
            ws = _Workspace(self._sizes, n, self.dtype, getattr(self, "activation", "relu"))
            self._workspace = ws
        return ws

    def train_step(self, x, t, optimizer):
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
        _checks.check_nonempty_batch(x2d if x2d is x else x)
        _checks.check_blas_size(N=n, widest_layer=max(self._sizes))
        t = self._checked_labels(t, n)
        if not self._fast_path_ok():
            return super().train_step(x, t, optimizer)
        ws = self._get_workspace(n)
        if x2d.dtype == self.dtype and x2d.flags.c_contiguous:
            x_in = x2d
        else:
            np.copyto(ws.x, x2d, casting="unsafe")   # uint8/float32 images -> net dtype
            x_in = ws.x
        loss = self._forward_loss(ws, x_in, t) + self._weight_decay_loss()
        self._backward_update(ws, x_in, t, optimizer)
        return loss

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

    def _forward_loss(self, ws, x_in, t):
        affine, elementwise = _backend.affine, _backend.elementwise
        n_affine = len(self._sizes) - 1
        h = x_in
        for i in range(1, n_affine + 1):
            z = ws.z[i - 1]
            affine.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"], z)
            if i < n_affine:
                if ws.relu:
                    elementwise.relu_forward(ws.z_flat[i - 1], ws.h_flat[i - 1], ws.mask[i - 1])
                else:
                    elementwise.sigmoid_forward(ws.z_flat[i - 1], ws.h_flat[i - 1])
                h = ws.h[i - 1]
        logits = ws.z[-1]
        if t.ndim == 2:
            t_kernel = np.ascontiguousarray(t, dtype=self.dtype)
            total = elementwise.softmax_xent_onehot(logits, t_kernel, ws.y, ws.per_sample_loss)
            elementwise.softmax_xent_backward_onehot(ws.y.reshape(-1), t_kernel.reshape(-1),
                                                     ws.dz[-1].reshape(-1), 1.0 / len(t))
        else:
            labels = t
            total = elementwise.softmax_xent_labels(logits, labels, ws.y, ws.per_sample_loss)
            elementwise.softmax_xent_backward_labels(ws.y, labels, ws.dz[-1], 1.0 / len(t))
        return total / len(t)

    def _backward_update(self, ws, x_in, t, optimizer):
        affine, elementwise = _backend.affine, _backend.elementwise
        n_affine = len(self._sizes) - 1
        lam = self.weight_decay_lambda
        fused_sgd = type(optimizer) in (_optimizers.SGD, _reference_optimizers.SGD)
        if fused_sgd:
            lr = optimizer.lr
        for i in range(n_affine, 0, -1):
            W, b = self.params[f"W{i}"], self.params[f"b{i}"]
            h_in = x_in if i == 1 else ws.h[i - 2]
            dx = ws.dh[i - 2] if i > 1 else ws.no_dx
            if fused_sgd:   # W = (1 - lr*lam) W - lr x.T dz; b = b - lr sum(dz)
                affine.affine_backward(ws.dz[i - 1], h_in.T, W.T, dx, W, b,
                                       -lr, 1.0 - lr * lam, i > 1, 1.0)
            else:
                dW, db = ws.grads[f"W{i}"], ws.grads[f"b{i}"]
                if lam:
                    np.copyto(dW, W)                  # dW = x.T dz + lam * W
                affine.affine_backward(ws.dz[i - 1], h_in.T, W.T, dx, dW, db,
                                       1.0, lam, i > 1, 0.0)
            if i > 1:
                if ws.relu:
                    elementwise.relu_backward(ws.dh_flat[i - 2], ws.mask[i - 2], ws.dz_flat[i - 2])
                else:
                    elementwise.sigmoid_backward(ws.dh_flat[i - 2], ws.h_flat[i - 2],
                                                 ws.dz_flat[i - 2])
        if not fused_sgd:
            self._apply_optimizer(ws, optimizer)

    def _apply_optimizer(self, ws, optimizer):
        if isinstance(optimizer, _reference_optimizers.Optimizer):
            # our optimizers: validated shapes are known, call the per-array update
            optimizer._begin_step()
            for key, param in self.params.items():
                optimizer._update_one(key, param, ws.grads[key])
        else:
            # a foreign optimizer may keep the arrays it is given: hand it copies
            optimizer.update(self.params, {k: g.copy() for k, g in ws.grads.items()})


class TwoLayerNet(_FastTrainStep, _reference.TwoLayerNet):
    __doc__ = _reference.TwoLayerNet.__doc__


class MultiLayerNet(_FastTrainStep, _reference.MultiLayerNet):
    __doc__ = _reference.MultiLayerNet.__doc__
