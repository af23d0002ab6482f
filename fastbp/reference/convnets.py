"""The book's convolutional networks in plain NumPy: ``SimpleConvNet``
(``ch07/simple_convnet.py``) and ``DeepConvNet`` (``ch08/deep_convnet.py``).

Same constructor arguments, attributes and methods as the book: ``params``
(``W1``, ``b1``, ...), ``layers`` (an OrderedDict for SimpleConvNet, a list
for DeepConvNet, in the book's order), ``last_layer``, ``predict``, ``loss``,
``accuracy(x, t, batch_size=100)``, ``gradient``, ``numerical_gradient``
(SimpleConvNet), ``save_params``/``load_params`` in the book's pickle format
(``ch07/params.pkl`` and ``ch08/deep_convnet_params.pkl`` load as they are).
Additions: ``dtype`` (float32 or float64), ``seed``, ``loss_and_gradient``
and ``train_step(x, t, optimizer)``.

Differences from the book:
  * weights are drawn from ``np.random.default_rng(seed)`` (float64 draws in
    the order W1, W2, ..., cast to dtype), not the global ``np.random``;
  * layer sizes are computed from the arguments (the book's SimpleConvNet
    assumes square inputs and an even convolution output, its DeepConvNet
    hard-codes 28x28 inputs in W7's shape and the He scales);
  * ``accuracy`` counts the last, partial batch (the book drops it and
    counts those samples as wrong) and returns a Python float;
  * ``gradient`` returns fresh arrays in the params' dtype;
  * ``load_params`` reads the file through a restricted unpickler (only a
    dict of NumPy arrays, nothing in it is executed), requires exactly this
    network's keys and shapes, and copies the values into the existing
    parameter arrays (cast to the network's dtype); on any error nothing
    changes.

Subclassing (how ``fastbp.networks`` gets compiled layers): every layer is
built from the class attribute ``layers_module`` (``Convolution``, ``Relu``,
``Pooling``, ``Affine``, ``Dropout``, ``SoftmaxWithLoss``) in ``_build_layers``.
"""
import math
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .. import _checks
from .. import _conv_checks as _conv
from .._state import StatefulNetwork
from .._param_pickle import load_array_dict, save_array_dict
from . import layers as _reference_layers
from .gradient import numerical_gradient as _numerical_gradient
from .networks import (_check_dtype, _check_positive_int, accuracy_labels,
                       check_loss_inputs, gradient_step)
from .util import conv_output_size

__all__ = ["SimpleConvNet", "DeepConvNet", "ConvNetBase"]

_CONV_PARAM_KEYS = ("filter_num", "filter_size", "pad", "stride")
_PICKLE_OVERHEAD = 1 << 16    # the dict, keys and array headers of a parameter pickle


def _conv_param(name, given, default):
    """``given`` (a mapping with some of filter_num, filter_size, pad, stride)
    completed from ``default`` and checked; a new dict."""
    if not isinstance(given, Mapping):
        raise TypeError(f"{name}: expected a dict with keys {list(_CONV_PARAM_KEYS)}, "
                        f"got {type(given).__name__}")
    unknown = [key for key in given if key not in _CONV_PARAM_KEYS]
    if unknown:
        raise ValueError(f"{name}: expected keys among {list(_CONV_PARAM_KEYS)}, "
                         f"got {unknown}")
    param = {**default, **given}
    param["filter_num"] = _conv.positive_int(f"{name}['filter_num']", param["filter_num"])
    param["filter_size"] = _conv.positive_int(f"{name}['filter_size']", param["filter_size"])
    param["pad"] = _conv.non_negative_int(f"{name}['pad']", param["pad"])
    param["stride"] = _conv.positive_int(f"{name}['stride']", param["stride"])
    return param


def _input_dim(input_dim):
    """``input_dim`` as a tuple of three positive ints (C, H, W)."""
    if isinstance(input_dim, (str, bytes)) or not hasattr(input_dim, "__len__") \
            or len(input_dim) != 3:
        raise ValueError(f"input_dim: expected (channels, height, width), got {input_dim!r}")
    return tuple(_conv.positive_int(f"input_dim[{i}]", d) for i, d in enumerate(input_dim))


def _conv_output(name, size, param):
    """(height, width) after a convolution with ``param`` on ``size``."""
    f, s, p = param["filter_size"], param["stride"], param["pad"]
    if f > min(size) + 2 * p:
        raise ValueError(f"{name}: expected filter_size at most {min(size) + 2 * p} for an "
                         f"input of {size[0]} x {size[1]} padded by {p}, got {f}")
    return tuple(conv_output_size(d, f, s, p) for d in size)


def _pool_output(name, size):
    """(height, width) after the networks' 2x2 stride-2 max pooling."""
    if min(size) < 2:
        raise ValueError(f"{name}: the 2 x 2 pooling needs an input of at least 2 x 2, "
                         f"got {size[0]} x {size[1]} from the layers before it")
    return tuple(conv_output_size(d, 2, 2, 0) for d in size)


class ConvNetBase(StatefulNetwork):
    """What the two convolutional networks share: forward through
    ``layers``, the loss, accuracy in batches, backprop, a training step and
    the book's parameter files.

    Subclasses set ``params``, ``layers``, ``last_layer``, ``dtype``,
    ``output_size`` and ``_param_layers`` (the layer holding W{i}, b{i} at
    position i - 1) and implement ``predict`` (test mode by default, as
    ``accuracy`` calls it) and ``_predict_for_loss`` (what ``loss`` calls:
    DeepConvNet's has dropout on).
    """

    #: module the layer classes come from
    layers_module = _reference_layers

    # -- forward -----------------------------------------------------------------
    def _layer_sequence(self):
        return self.layers.values() if isinstance(self.layers, Mapping) else self.layers

    def _forward(self, x, train_flg):
        """Run ``x`` through every layer; Dropout layers get ``train_flg``."""
        for layer in self._layer_sequence():
            if isinstance(layer, _reference_layers.Dropout):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t):
        """Mean cross-entropy of softmax(predict(x)) against the labels t.

        x: (N, C, H, W) images; t: integer labels (N,) or (N, 1), or one-hot
        (N, output_size).  Returns a Python float.
        """
        check_loss_inputs(x, t, self.output_size)
        y = self._predict_for_loss(x)
        return float(self.last_layer.forward(y, t))

    def accuracy(self, x, t, batch_size=100):
        """Fraction (float) of the samples whose largest logit is their label.

        x: (N, C, H, W); t: labels (N,) or (N, 1), or one-hot (N, output_size).
        Predicts ``batch_size`` samples at a time (in test mode), the last
        batch holding the remainder.
        """
        x = _conv.batch_4d("x", x)
        if x.shape[0] == 0:
            raise ValueError(f"x: expected a non-empty batch, got shape {x.shape}")
        batch_size = _conv.positive_int("batch_size", batch_size)
        t = accuracy_labels(t, x.shape, self.output_size)
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            y = self.predict(x[start:start + batch_size])
            correct += int(np.sum(np.argmax(y, axis=1) == t[start:start + batch_size]))
        return correct / x.shape[0]

    # -- gradients ---------------------------------------------------------------
    def loss_and_gradient(self, x, t):
        """Backprop: ``(loss, grads)`` from one forward and one backward pass.

        grads: dict W1, b1, ... of fresh arrays with the params' shapes and
        dtypes (cast to the param's dtype if x had a wider one).
        """
        loss = self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self._layer_sequence())):
            dout = layer.backward(dout)
        grads = {}
        for i, layer in enumerate(self._param_layers, start=1):
            grads[f"W{i}"] = np.array(layer.dW, dtype=self.params[f"W{i}"].dtype, copy=True)
            grads[f"b{i}"] = np.array(layer.db, dtype=self.params[f"b{i}"].dtype, copy=True)
        return loss, grads

    def gradient(self, x, t):
        """Backprop gradients of ``loss(x, t)``: dict W1, b1, ... of fresh arrays."""
        return self.loss_and_gradient(x, t)[1]

    def train_step(self, x, t, optimizer):
        """One training step: ``grads = gradient(x, t)``, then
        ``optimizer.update(params, grads)``.  Returns the loss (float) of that
        forward pass, at the parameters before the update."""
        return gradient_step(self, x, t, optimizer)

    # -- the book's parameter files ------------------------------------------------
    def save_params(self, file_name="params.pkl"):
        """Pickle the parameters as the book does: a dict {'W1': ndarray, ...}.

        Written beside ``file_name`` under a temporary name and renamed over
        it once complete: a failed save leaves a previous file intact."""
        save_array_dict(self.params, file_name)

    def load_params(self, file_name="params.pkl"):
        """Load parameters saved by ``save_params`` (or the book's files).

        The file is read through a restricted unpickler: it must hold a dict
        of NumPy arrays and nothing else (a file that would run code or build
        any other object raises ``pickle.UnpicklingError`` before anything is
        called).  It must have exactly this network's keys, each with this
        network's shape (else ValueError naming the key, expected and got),
        and be no larger than those parameters in float64 can take (checked
        before anything is read).
        The values are copied into the parameter arrays, cast to the
        network's dtype, and every layer is pointed at ``params`` again (as
        the book's ``load_params`` does).  On any error nothing changes.
        Returns self.
        """
        expected = {key: np.shape(value) for key, value in self.params.items()}
        # at most float64 values (the book's files) plus the pickle's framing
        values = sum(math.prod(shape) for shape in expected.values())
        stored = load_array_dict(file_name, max_bytes=8 * values + _PICKLE_OVERHEAD)
        extra = [key for key in stored if key not in expected]
        missing = [key for key in expected if key not in stored]
        if extra or missing:
            raise ValueError(f"{file_name}: expected the parameters {list(expected)}, got "
                             f"{list(stored)}" + (f" (unknown: {extra})" if extra else "")
                             + (f" (missing: {missing})" if missing else ""))
        for key, shape in expected.items():
            if stored[key].shape != shape:
                raise ValueError(f"{key}: expected shape {shape}, got {stored[key].shape} "
                                 f"in {file_name}")
        for key, value in stored.items():
            param = self.params[key]
            if isinstance(param, np.ndarray) and param.dtype == self.dtype \
                    and param.flags.writeable:
                np.copyto(param, value, casting="same_kind")
            else:       # replaced by the caller with something we can't write into
                self.params[key] = value.astype(self.dtype)
        for i, layer in enumerate(self._param_layers, start=1):
            layer.W = self.params[f"W{i}"]
            layer.b = self.params[f"b{i}"]
        return self

    # -- construction ---------------------------------------------------------------
    def _init_params(self, shapes, scales, dtype, rng):
        """W{i} = scales[i-1] * standard normal of shapes[i-1] (float64 draws
        from ``rng`` in order, cast to dtype), b{i} = zeros of W's first (conv)
        or last (affine) dimension."""
        self.params = {}
        for i, (shape, scale) in enumerate(zip(shapes, scales), start=1):
            self.params[f"W{i}"] = (scale * rng.standard_normal(shape)).astype(dtype)
            width = shape[0] if len(shape) == 4 else shape[-1]
            self.params[f"b{i}"] = np.zeros(width, dtype=dtype)

    def _conv_layer(self, i, param):
        return self.layers_module.Convolution(self.params[f"W{i}"], self.params[f"b{i}"],
                                              param["stride"], param["pad"])

    def _affine_layer(self, i):
        return self.layers_module.Affine(self.params[f"W{i}"], self.params[f"b{i}"])


class SimpleConvNet(ConvNetBase):
    """The book's simple convnet (``ch07/simple_convnet.py``):
    conv - relu - pool - affine - relu - affine - softmax.

    input_dim: (C, H, W) of the images.
    conv_param: dict with filter_num, filter_size, pad, stride (missing keys
    take the defaults shown).  hidden_size, output_size: positive ints.
    weight_init_std: every weight is weight_init_std * standard normal.
    dtype: np.float32 or np.float64; seed: for ``np.random.default_rng``.

    ``params``: W1 (filter_num, C, filter_size, filter_size), b1 (filter_num,),
    W2 (filter_num * PH * PW, hidden_size), b2, W3 (hidden_size, output_size),
    b3, with PH x PW the pooling output.  ``layers``: OrderedDict 'Conv1',
    'Relu1', 'Pool1' (2x2, stride 2), 'Affine1', 'Relu2', 'Affine2';
    ``last_layer``: SoftmaxWithLoss.
    """

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                 hidden_size=100, output_size=10, weight_init_std=0.01, *,
                 dtype=np.float64, seed=None):
        self.input_dim = _input_dim(input_dim)
        self.conv_param = _conv_param("conv_param", conv_param,
                                      {"filter_num": 30, "filter_size": 5, "pad": 0,
                                       "stride": 1})
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        self.output_size = _check_positive_int("output_size", output_size)
        self.weight_init_std = _checks.check_positive_number("weight_init_std",
                                                             weight_init_std)
        self.dtype = _check_dtype(dtype)
        channels = self.input_dim[0]
        filters, size = self.conv_param["filter_num"], self.conv_param["filter_size"]
        pooled = _pool_output("input_dim", _conv_output("conv_param", self.input_dim[1:],
                                                        self.conv_param))
        shapes = [(filters, channels, size, size),
                  (filters * pooled[0] * pooled[1], self.hidden_size),
                  (self.hidden_size, self.output_size)]
        rng = np.random.default_rng(seed)
        self._init_params(shapes, [self.weight_init_std] * 3, self.dtype, rng)
        self._build_layers()

    def _build_layers(self):
        mod = self.layers_module
        self.layers = OrderedDict()
        self.layers["Conv1"] = self._conv_layer(1, self.conv_param)
        self.layers["Relu1"] = mod.Relu()
        self.layers["Pool1"] = mod.Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = self._affine_layer(2)
        self.layers["Relu2"] = mod.Relu()
        self.layers["Affine2"] = self._affine_layer(3)
        self.last_layer = mod.SoftmaxWithLoss()
        self._param_layers = [self.layers["Conv1"], self.layers["Affine1"],
                              self.layers["Affine2"]]

    def predict(self, x):
        """Logits (N, output_size) of images x (N, C, H, W)."""
        return self._forward(x, False)

    def _predict_for_loss(self, x):
        return self.predict(x)

    def numerical_gradient(self, x, t):
        """Central-difference gradient of ``loss(x, t)`` for every parameter:
        dict W1, b1, ..., each of the param's shape and dtype.  Slow: two
        forward passes per parameter entry."""
        loss_w = lambda w: self.loss(x, t)  # noqa: E731 - the book's idiom
        return {key: _numerical_gradient(loss_w, param) for key, param in self.params.items()}

    def __repr__(self):
        return (f"{type(self).__name__}(input_dim={self.input_dim}, "
                f"conv_param={self.conv_param}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, dtype={self.dtype.name})")


_DEEP_DEFAULTS = (
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(ConvNetBase):
    """The book's deep convnet (``ch08/deep_convnet.py``, over 99 % on MNIST):
    (conv - relu - conv - relu - pool) x 3 - affine - relu - dropout -
    affine - dropout - softmax.

    input_dim: (C, H, W).  conv_param_1 ... conv_param_6: dicts with
    filter_num, filter_size, pad, stride (missing keys take the defaults
    shown).  hidden_size, output_size: positive ints.
    dtype: np.float32 or np.float64.  seed: weights come from
    ``np.random.default_rng(seed)``, He-initialised (standard deviation
    sqrt(2 / fan-in)); with a seed, the dropout masks come from that
    generator too (after the weights), so a seeded net trains
    reproducibly; without one they come from NumPy's global generator, as in
    the book (``np.random.seed`` reproduces the book's masks).

    ``params``: W1 ... W6 (filters), W7 (64 * 4 * 4 for 28x28 inputs,
    hidden_size), W8 (hidden_size, output_size) and their biases.
    ``layers``: a list in the book's order (the parameters sit in layers 0,
    2, 5, 7, 10, 12, 15, 18); ``last_layer``: SoftmaxWithLoss.
    ``predict(x, train_flg=False)``; ``loss`` predicts with train_flg=True
    (dropout on), as in the book.
    """

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param_1={"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
                 conv_param_2={"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
                 conv_param_3={"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
                 conv_param_4={"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
                 conv_param_5={"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
                 conv_param_6={"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
                 hidden_size=50, output_size=10, *, dtype=np.float64, seed=None):
        self.input_dim = _input_dim(input_dim)
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5,
                 conv_param_6)
        self.conv_params = [_conv_param(f"conv_param_{i}", param, default)
                            for i, (param, default) in enumerate(zip(given, _DEEP_DEFAULTS),
                                                                 start=1)]
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        self.output_size = _check_positive_int("output_size", output_size)
        self.dtype = _check_dtype(dtype)
        shapes, fan_ins = [], []
        channels, size = self.input_dim[0], self.input_dim[1:]
        for i, param in enumerate(self.conv_params, start=1):
            shapes.append((param["filter_num"], channels, param["filter_size"],
                           param["filter_size"]))
            fan_ins.append(channels * param["filter_size"] ** 2)
            size = _conv_output(f"conv_param_{i}", size, param)
            if i % 2 == 0:
                size = _pool_output("input_dim", size)
            channels = param["filter_num"]
        flat = channels * size[0] * size[1]
        shapes += [(flat, self.hidden_size), (self.hidden_size, self.output_size)]
        fan_ins += [flat, self.hidden_size]
        rng = np.random.default_rng(seed)
        self._init_params(shapes, [np.sqrt(2.0 / n) for n in fan_ins], self.dtype, rng)
        self._dropout_rng = None if seed is None else rng
        self._build_layers()

    def _build_layers(self):
        mod = self.layers_module
        dropout = lambda: mod.Dropout(0.5, rng=self._dropout_rng)  # noqa: E731
        self.layers = []
        for pair in range(3):          # (conv - relu - conv - relu - pool) x 3
            for i in (2 * pair + 1, 2 * pair + 2):
                self.layers.append(self._conv_layer(i, self.conv_params[i - 1]))
                self.layers.append(mod.Relu())
            self.layers.append(mod.Pooling(pool_h=2, pool_w=2, stride=2))
        self.layers += [self._affine_layer(7), mod.Relu(), dropout(),
                        self._affine_layer(8), dropout()]
        self.last_layer = mod.SoftmaxWithLoss()
        self._param_layers = [self.layers[i] for i in (0, 2, 5, 7, 10, 12, 15, 18)]

    def predict(self, x, train_flg=False):
        """Logits (N, output_size) of images x (N, C, H, W); ``train_flg``
        switches dropout to training mode (random masks)."""
        return self._forward(x, train_flg)

    def _predict_for_loss(self, x):
        return self.predict(x, train_flg=True)

    def __repr__(self):
        return (f"{type(self).__name__}(input_dim={self.input_dim}, "
                f"hidden_size={self.hidden_size}, output_size={self.output_size}, "
                f"dtype={self.dtype.name})")
