"""The convolutional networks' compiled paths: a fused ``train_step`` and
``predict`` for ``fastbp.networks.SimpleConvNet`` and ``DeepConvNet``.

Both run the network as a chain of stages over buffers allocated once per
batch size (a ``_Workspace``), each stage one compiled call:

* activations are channel-major (C, N, H, W) between convolutions, so that
  each convolution is one GEMM per block of output positions spanning
  images (``fastbp._conv``), with the bias and a following ReLU fused into
  its output pass; the last pooling writes (N, C*H*W) rows for the affine
  layer;
* a ReLU before a pooling is fused into the pooling (the maximum of ReLU is
  ReLU of the maximum), and its backward into the pooling's scatter; the
  ReLU between two convolutions is applied in the first one's output pass
  and undone in the second one's dx;
* the first convolution computes no dx;
* the dropout layers are the network's own ``Dropout`` objects, called as the
  layer path calls them, so the same random stream is consumed the same way;
* SGD updates the affine layers inside their weight-gradient GEMMs
  (W = W - lr * x.T @ dz) and the convolutions' W and b with one compiled
  pass each; other optimizers get the gradients (buffers of the workspace)
  and update each parameter in one compiled pass (``fastbp.optimizers``).

The numbers are those of ``gradient()`` + ``optimizer.update`` up to
rounding (the GEMMs run over other blocks).  After ``train_step`` or
``predict`` the layers' cached attributes (``x``, ``col``, ``dW``, ...) are
not refreshed (the dropout layers' masks are); ``loss`` and ``gradient`` go
through the layers as in the book.
"""
import numpy as np

from . import _backend, _checks
from . import _conv_checks as _conv
from . import optimizers as _optimizers
from ._conv_layers import block_buffer_size
from .reference import convnets as _reference_convnets
from .reference import layers as _reference_layers

__all__ = ["FusedConvNet"]


def _cnhw(shape):
    """Element strides (batch, channel) of a (N, C, H, W) batch stored channel-major."""
    n, _, h, w = shape
    return (h * w, n * h * w)


def _nchw(shape):
    """Element strides (batch, channel) of a C-contiguous (N, C, H, W) batch."""
    return (shape[1] * shape[2] * shape[3], shape[2] * shape[3])


_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32),
          np.dtype(np.float64): np.empty(0, np.float64)}


class _Conv:
    """Convolution W{i} (+ b, + ReLU if relu) of a batch in_shape with layout
    in_strides into a channel-major output; backward writes dW, db and, unless
    first, dx (ReLU's backward fused when the input is a fused ReLU's output)."""

    def __init__(self, ws, index, in_shape, in_strides, param, relu, relu_input, first):
        n, c, h, w = in_shape
        f, size = param["filter_num"], param["filter_size"]
        self.stride, self.pad = param["stride"], param["pad"]
        out_h = _conv.window_count(h, size, self.stride, self.pad)
        out_w = _conv.window_count(w, size, self.stride, self.pad)
        self.key_W, self.key_b = f"W{index}", f"b{index}"
        self.size, self.taps = size, c * size * size
        self.in_shape, self.in_strides = in_shape, in_strides
        self.out_shape = (n, f, out_h, out_w)
        self.out_strides = _cnhw(self.out_shape)
        self.out = np.empty(n * f * out_h * out_w, ws.dtype)
        self.dx = None if first else np.empty(n * c * h * w, ws.dtype)
        self.relu, self.relu_input = relu, relu_input
        self.block = block_buffer_size(self.taps, out_w, ws.dtype.itemsize)
        _checks.check_blas_size(positions=n * out_h * out_w, taps=self.taps, filters=f)

    def forward(self, ws, x):
        self.x = x
        W = ws.params[self.key_W]
        ws.kernels.conv_forward(x, self.in_shape, self.in_strides,
                                W.reshape(W.shape[0], self.taps), self.size, self.size,
                                self.stride, self.pad, ws.params[self.key_b], self.out,
                                self.out_strides, ws.block(self.block), self.relu)
        return self.out

    def backward(self, ws, dout):
        W = ws.params[self.key_W]
        dW, db = ws.grads[self.key_W], ws.grads[self.key_b]
        empty = _EMPTY[ws.dtype]
        ws.kernels.conv_backward(
            self.x, self.in_shape, self.in_strides, W.reshape(W.shape[0], self.taps),
            self.size, self.size, self.stride, self.pad, dout, self.out_strides,
            dW.reshape(W.shape[0], self.taps), db, empty if self.dx is None else self.dx,
            self.in_strides, ws.block(self.block), ws.block(self.block, "dcol"),
            self.x if self.relu_input else None, self.in_strides)
        if ws.sgd is not None:              # W -= lr * dW, b -= lr * db: one pass each
            ws.kernels.sgd(W.reshape(-1), dW.reshape(-1), ws.sgd)
            ws.kernels.sgd(ws.params[self.key_b], db, ws.sgd)
        return self.dx


class _Pool:
    """2 x 2 max pooling at stride 2 with the ReLU before it fused, into a
    channel-major output, or (N, C*H*W) rows when flat."""

    def __init__(self, ws, in_shape, in_strides, flat):
        n, c, h, w = in_shape
        self.in_shape, self.in_strides = in_shape, in_strides
        self.out_shape = (n, c, h // 2, w // 2)
        self.out_strides = _nchw(self.out_shape) if flat else _cnhw(self.out_shape)
        size = n * c * (h // 2) * (w // 2)
        self.out = np.empty(size, ws.dtype)
        self.positions = np.empty(size, np.uint8)
        self.dx = np.empty(n * c * h * w, ws.dtype)

    def forward(self, ws, x):
        ws.kernels.maxpool_forward(x, self.in_shape, self.in_strides, 2, 2, 2, 0, self.out,
                                   self.out_strides, self.positions, True)
        return self.out

    def backward(self, ws, dout):
        ws.kernels.maxpool_backward(dout.reshape(-1), self.out_strides, self.positions,
                                    self.in_shape, 2, 2, 2, 0, self.dx, self.in_strides,
                                    self.out)
        return self.dx


class _Affine:
    """Affine W{i} of (N, D) rows, ReLU after it if relu."""

    def __init__(self, ws, index, n, d, m, relu):
        self.key_W, self.key_b = f"W{index}", f"b{index}"
        self.n, self.d = n, d
        self.z = np.empty((n, m), ws.dtype)
        self.relu = relu
        if relu:
            self.h = np.empty((n, m), ws.dtype)
            self.mask = np.empty(n * m, np.uint8)
            self.dz = np.empty((n, m), ws.dtype)
        self.dx = np.empty((n, d), ws.dtype)

    def forward(self, ws, x):
        self.x = np.ascontiguousarray(x, dtype=ws.dtype).reshape(self.n, self.d)
        ws.kernels.affine_forward(self.x, ws.params[self.key_W], ws.params[self.key_b], self.z)
        if not self.relu:
            return self.z
        ws.kernels.relu_forward(self.z.reshape(-1), self.h.reshape(-1), self.mask)
        return self.h

    def backward(self, ws, dout):
        dout = np.ascontiguousarray(dout).reshape(self.z.shape)
        if self.relu:
            ws.kernels.relu_backward(dout.reshape(-1), self.mask, self.dz.reshape(-1))
            dout = self.dz
        W, b = ws.params[self.key_W], ws.params[self.key_b]
        if ws.sgd is not None:       # W = W - lr x.T dz, b = b - lr sum(dz), after dx
            ws.kernels.affine_backward(dout, self.x.T, W.T, self.dx, W, b, -ws.sgd, 1.0, True,
                                       1.0)
        else:
            ws.kernels.affine_backward(dout, self.x.T, W.T, self.dx, ws.grads[self.key_W],
                                       ws.grads[self.key_b])
        return self.dx


class _Dropout:
    """The network's Dropout layer ``layers[index]``, called as the layer path calls it."""

    def __init__(self, index):
        self.index = index

    def forward(self, ws, x):
        return ws.layers[self.index].forward(x, ws.train)

    def backward(self, ws, dout):
        return ws.layers[self.index].backward(dout)


class _Workspace:
    """The stages of a network for batches of n images in a dtype, their
    buffers, the gradient arrays and the block buffers of the convolutions.
    Per call: ``params`` and ``layers`` (the network's), ``train`` (dropout
    in training mode) and ``sgd`` (the learning rate of a fused SGD update,
    or None: gradients only)."""

    def __init__(self, net, n, dtype):
        self.n, self.dtype = n, dtype
        self.kernels = _backend.KERNELS[dtype]
        self.x = np.empty((n,) + net.input_dim, dtype)        # the input cast to dtype
        self.grads = {key: np.empty(p.shape, dtype) for key, p in net.params.items()}
        self.stages = net._fused_stages(self)
        self._blocks = {}
        self.params = self.layers = self.sgd = None
        self.train = False

    def block(self, size, name="col"):
        """The block buffer ``name``, at least ``size`` elements (shared by the stages)."""
        a = self._blocks.get(name)
        if a is None or a.size < size:
            a = self._blocks[name] = np.empty(size, self.dtype)
        return a[:size]             # (its size sets the kernels' block)

    def run(self, net, train, sgd):
        """Set what a call uses: the network's params and layers, dropout's
        mode, the fused SGD learning rate (None: gradients only)."""
        self.params, self.layers, self.train, self.sgd = net.params, net.layers, train, sgd

    def forward(self, x):
        a = x.reshape(-1)
        for stage in self.stages:
            a = stage.forward(self, a)
        return a

    def backward(self, dlogits):
        d = dlogits
        for stage in reversed(self.stages):
            d = stage.backward(self, d)


class FusedConvNet:
    """Mixin: the compiled ``train_step`` and ``predict`` of a reference
    convnet (``fastbp.reference.convnets``) built on ``fastbp.layers``."""

    # Images per block when predicting in test mode: the workspace of a
    # training batch, and memory bounded whatever the batch.
    _PREDICT_BLOCK = 100
    _WORKSPACES = 2      # batch sizes kept (a training batch and a remainder)

    # the compiled stages' buffers: a cache copies leave out (fastbp._state)
    _transient_attributes = ("_workspace", "_fused_workspaces")

    def _workspace(self, n):
        cache = self.__dict__.get("_fused_workspaces")
        if cache is None:
            cache = self._fused_workspaces = {}
        ws = cache.get(n)
        if ws is None or ws.dtype != self.dtype:
            if len(cache) >= self._WORKSPACES:
                cache.pop(next(iter(cache)))
            ws = cache[n] = _Workspace(self, n, self.dtype)
        return ws

    def _fused_ready(self, x, writable):
        """The batch as an array when the compiled path can take it (the
        network's input shape, parameters of the network's dtype and shapes,
        C-contiguous, writable when ``writable``), else None."""
        if not _backend.COMPILED or self.dtype not in _backend.KERNELS:
            return None
        if not (isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[1:] == self.input_dim
                and x.shape[0] > 0 and x.dtype.kind in "biuf"):
            return None
        for key, shape in self._fused_shapes.items():
            p = self.params.get(key)
            if not (isinstance(p, np.ndarray) and p.dtype == self.dtype and p.shape == shape
                    and p.flags.c_contiguous and (p.flags.writeable or not writable)):
                return None
        return x

    @property
    def _fused_shapes(self):
        shapes = self.__dict__.get("_fused_param_shapes")
        if shapes is None:
            shapes = self._fused_param_shapes = {k: v.shape for k, v in self.params.items()}
        return shapes

    def _input(self, ws, x):
        if x.dtype == self.dtype and x.flags.c_contiguous:
            return x
        np.copyto(ws.x, x, casting="unsafe")       # uint8/float32 images -> net dtype
        return ws.x

    def _fused_predict(self, x, train_flg):
        """Logits (N, output_size) through the compiled stages, or None when
        the compiled path can't take x (the layer path then runs)."""
        x = self._fused_ready(x, writable=False)
        if x is None:
            return None
        n = x.shape[0]
        block = n if train_flg else min(n, self._PREDICT_BLOCK)   # one draw order for dropout
        logits = np.empty((n, self.output_size), self.dtype)
        for start in range(0, n, block):
            part = x[start:start + block]
            ws = self._workspace(part.shape[0])
            ws.run(self, train_flg, None)
            logits[start:start + block] = ws.forward(self._input(ws, part)).reshape(
                part.shape[0], self.output_size)
        return logits

    def train_step(self, x, t, optimizer):
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError(f"optimizer: expected an object with an update(params, grads) "
                            f"method, got {type(optimizer).__name__}")
        ready = self._fused_ready(x, writable=True)
        if ready is None or not self._dropouts_are_layers():
            return super().train_step(x, t, optimizer)
        n = ready.shape[0]
        label_check = _backend.elementwise.first_label_out_of_range
        _, labels, one_hot = _checks.softmax_inputs(
            np.broadcast_to(np.zeros((), self.dtype), (n, self.output_size)), t, label_check)
        if one_hot:
            labels = np.ascontiguousarray(labels, dtype=self.dtype)
        ws = self._workspace(n)
        sgd = _optimizers.is_fusable_sgd(optimizer)
        ws.run(self, True, optimizer.lr if sgd else None)
        logits = ws.forward(self._input(ws, ready)).reshape(n, self.output_size)
        logits = np.ascontiguousarray(logits, dtype=self.dtype)
        y = np.empty_like(logits)
        row_losses = np.empty(n, self.dtype)
        dlogits = np.empty_like(logits)
        kernels = ws.kernels
        if one_hot:
            total = kernels.softmax_xent_onehot(logits, labels, y, row_losses)
            kernels.softmax_xent_backward_onehot(y.reshape(-1), labels.reshape(-1),
                                                 dlogits.reshape(-1), 1.0 / n)
        else:
            total = kernels.softmax_xent_labels(logits, labels, y, row_losses)
            kernels.softmax_xent_backward_labels(y, labels, dlogits, 1.0 / n)
        ws.backward(dlogits)
        if not sgd:
            _optimizers.apply_step_gradients(optimizer, self.params, ws.grads)
        return float(total / n)

    def _dropouts_are_layers(self):
        return all(isinstance(self.layers[i], _reference_layers.Dropout)
                   for i in self._dropout_indices)

    _dropout_indices = ()

    def _fused_stages(self, ws):
        """The stages of this network for workspace ``ws`` (see the classes
        above); the layer structure is the book's (SimpleConvNet or DeepConvNet)."""
        n = ws.n
        shape, strides = (n,) + self.input_dim, _nchw((n,) + self.input_dim)
        stages = []
        if isinstance(self, _reference_convnets.SimpleConvNet):
            plan = [("conv", 1, self.conv_param, False), ("pool", True)]
            dense = [(2, True), (3, False)]
        else:
            plan = []
            for i, param in enumerate(self.conv_params, start=1):
                plan.append(("conv", i, param, i % 2 == 1))   # ReLU fused unless pooled
                if i % 2 == 0:
                    plan.append(("pool", i == len(self.conv_params)))
            dense = [(7, True), ("dropout", 17), (8, False), ("dropout", 19)]
        relu_input = False
        for step in plan:
            if step[0] == "conv":
                _, index, param, relu = step
                stage = _Conv(ws, index, shape, strides, param, relu, relu_input,
                              first=not stages)
                relu_input = relu
            else:
                stage = _Pool(ws, shape, strides, flat=step[1])
                relu_input = False
            stages.append(stage)
            shape, strides = stage.out_shape, stage.out_strides
        width = shape[1] * shape[2] * shape[3]
        for step in dense:
            if step[0] == "dropout":
                stages.append(_Dropout(step[1]))
                continue
            index, relu = step
            m = self.params[f"W{index}"].shape[1]
            stages.append(_Affine(ws, index, n, width, m, relu))
            width = m
        return stages
