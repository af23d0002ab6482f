"""The book's networks in plain NumPy: ``TwoLayerNet`` (ch. 5) and ``MultiLayerNet``.

Same attributes and methods as the book (``ch05/two_layer_net.py`` and
``common/multi_layer_net.py``): ``params`` (dict of ndarrays), ``layers``
(OrderedDict), ``lastLayer`` (also reachable as ``last_layer``), ``predict``,
``loss``, ``accuracy``, ``numerical_gradient``, ``gradient``.  Additions:
``loss_and_gradient``, ``train_step(x, t, optimizer)``, ``save``/``load``,
a ``dtype`` (float32 or float64) and a ``seed`` (weights come from
``np.random.default_rng(seed)`` instead of the global ``np.random``).

Subclassing (how ``fastbp.networks`` gets compiled layers): every layer is
built from the class attribute ``layers_module``, so

    class TwoLayerNet(fastbp.reference.networks.TwoLayerNet):
        layers_module = fastbp.layers

is the same network with compiled layers.  A subclass with a fused fast
path overrides ``loss_and_gradient`` (used by ``gradient``) and/or
``train_step``; the results must equal the ones here.
"""
import math
import numbers
import os
import zipfile
from collections import OrderedDict

import numpy as np

from .. import _checks, _files
from .._state import StatefulNetwork
from . import layers as _reference_layers
from .gradient import numerical_gradient as _numerical_gradient

__all__ = ["TwoLayerNet", "MultiLayerNet", "BaseNet"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_SETTING_VALUES = 4096   # a setting entry is a scalar, a string or the layer sizes


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dtype!r} "
                        "(not a NumPy dtype)") from None
    if dt not in _DTYPES:
        raise ValueError(f"dtype: expected np.float32 or np.float64, got {dt}")
    return dt


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_loss_inputs(x, t, n_classes):
    """What ``loss(x, t)`` checks before any forward pass: a non-empty batch,
    and labels for its samples as ``SoftmaxWithLoss`` takes them (so bad
    labels fail before dropout draws masks or batch norm moves its running
    statistics, and the error names the caller's x)."""
    _checks.check_nonempty_batch(x)
    shape = np.shape(x)
    if len(shape) >= 2:         # (not a batch: predict's own check names x)
        _checks.class_labels("t", t, shape[0], n_classes, "x", shape)


def accuracy_labels(t, x_shape, n_classes):
    """The labels of ``accuracy(x, t)`` as a vector (N,) to compare with the
    predicted classes, checked exactly as ``loss`` checks them: integer
    labels (N,) or (N, 1) in [0, n_classes), or one-hot (N, n_classes)
    (through argmax).  TypeError/ValueError naming ``t`` for anything else."""
    labels, one_hot = _checks.class_labels("t", t, x_shape[0], n_classes, "x", x_shape)
    return np.argmax(labels, axis=1) if one_hot else labels


def gradient_step(net, x, t, optimizer):
    """``net.loss_and_gradient(x, t)``, then ``optimizer.update(net.params,
    grads)``; returns the loss.  TypeError if ``optimizer`` has no ``update``."""
    if not callable(getattr(optimizer, "update", None)):
        raise TypeError(f"optimizer: expected an object with an update(params, grads) "
                        f"method, got {type(optimizer).__name__}")
    loss, grads = net.loss_and_gradient(x, t)
    optimizer.update(net.params, grads)
    return loss


class BaseNet(StatefulNetwork):
    """Logic shared by the networks: a stack of Affine/activation layers
    followed by ``SoftmaxWithLoss``, with optional L2 weight decay.

    Subclasses build ``self.params`` (``W1, b1, ..., W{L}, b{L}``) and
    ``self.layers`` (whose ``'Affine{i}'`` layers hold the very arrays
    ``W{i}``, ``b{i}``) and set ``self.lastLayer``, ``self.dtype``,
    ``self.weight_decay_lambda`` and ``self._sizes`` (the layer widths).
    """

    #: module the layer classes come from (Affine, Relu, Sigmoid, SoftmaxWithLoss)
    layers_module = _reference_layers

    # -- construction helpers ---------------------------------------------------
    def _build(self, sizes, scales, activation_name, dtype, seed):
        """Create params and layers for widths ``sizes`` (input, hidden..., output).

        ``scales[i]`` multiplies the standard-normal weights of layer i + 1.
        Weights are drawn in float64 from ``np.random.default_rng(seed)``, in
        order W1, W2, ..., then cast to ``dtype``; biases are zeros.
        """
        self._init_weights(sizes, scales, dtype, np.random.default_rng(seed).standard_normal)
        n_affine = self.n_affine
        mod = self.layers_module
        activation = {"relu": mod.Relu, "sigmoid": mod.Sigmoid}[activation_name]
        self.layers = OrderedDict()
        for i in range(1, n_affine + 1):
            self.layers[f"Affine{i}"] = mod.Affine(self.params[f"W{i}"], self.params[f"b{i}"])
            if i < n_affine:
                self.layers[self._activation_layer_name(i)] = activation()
        self.lastLayer = mod.SoftmaxWithLoss()

    def _init_weights(self, sizes, scales, dtype, standard_normal):
        """Set ``dtype``, ``_sizes`` and ``params`` W1, b1, ..., W{L}, b{L}.

        W{i} is ``scales[i-1] * standard_normal((sizes[i-1], sizes[i]))``,
        drawn in float64 in order W1, W2, ... and cast to ``dtype``; biases
        are zeros.  ``standard_normal(shape)`` is the random source.
        """
        self.dtype = dtype
        self._sizes = tuple(sizes)
        self.params = {}
        for i in range(1, len(sizes)):
            W = scales[i - 1] * standard_normal((sizes[i - 1], sizes[i]))
            self.params[f"W{i}"] = W.astype(dtype)
            self.params[f"b{i}"] = np.zeros(sizes[i], dtype=dtype)

    def _activation_layer_name(self, i):
        raise NotImplementedError

    @property
    def last_layer(self):
        """The ``SoftmaxWithLoss`` layer (the book's ``MultiLayerNet`` name)."""
        return self.lastLayer

    @property
    def n_affine(self):
        """Number of Affine layers (L): params are W1, b1, ..., W{L}, b{L}."""
        return len(self._sizes) - 1

    # -- forward -----------------------------------------------------------------
    def predict(self, x):
        """Logits (N, output_size) for a batch x (N, input_size) or (N, d1, d2, ...).

        x may be any real dtype; the result has the dtype of x @ W.
        """
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def _weight_decay_loss(self):
        lam = self.weight_decay_lambda
        if lam == 0:
            return 0.0
        total = 0.0
        for i in range(1, self.n_affine + 1):
            W = self.params[f"W{i}"]
            total += 0.5 * lam * float(np.sum(W * W, dtype=np.float64))
        return total

    def loss(self, x, t):
        """Mean cross-entropy of softmax(predict(x)) against t, plus the L2
        weight decay 0.5 * lambda * sum(W**2) over all W (if lambda > 0).

        t: integer labels (N,) or one-hot (N, output_size).  Returns a float.
        """
        check_loss_inputs(x, t, self._sizes[-1])
        y = self.predict(x)
        return float(self.lastLayer.forward(y, t)) + self._weight_decay_loss()

    def accuracy(self, x, t):
        """Fraction (float) of samples whose argmax logit equals the label.

        x: (N, input_size) or (N, d1, d2, ...); t: labels (N,) or (N, 1), or
        one-hot (N, C).
        """
        x = _checks.as_numeric_array("x", x)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"x: expected a non-empty batch, got shape {x.shape}")
        t = accuracy_labels(t, x.shape, self._sizes[-1])
        y = self._predicted_classes(x)
        return float(np.sum(y == t)) / float(x.shape[0])

    def _predicted_classes(self, x):
        """The class each sample of x is predicted as: argmax of its logits, (N,)."""
        return np.argmax(self.predict(x), axis=1)

    # -- gradients ---------------------------------------------------------------
    def numerical_gradient(self, x, t):
        """Central-difference gradient of ``loss(x, t)`` for every parameter.

        Returns a dict with the keys of ``params`` (W1, b1, ...), each an array
        of the param's shape and dtype.  Slow: two forward passes per entry.
        """
        loss_W = lambda W: self.loss(x, t)  # noqa: E731 - the book's idiom
        return {key: _numerical_gradient(loss_W, param) for key, param in self.params.items()}

    def loss_and_gradient(self, x, t):
        """Backprop: ``(loss, grads)`` from one forward and one backward pass.

        loss is ``loss(x, t)`` as a float (weight decay included); grads is a
        dict W1, b1, ..., of fresh arrays with the params' shapes and dtypes
        (``dW + lambda * W`` when weight decay is on; cast to the param dtype
        if x had a wider dtype).
        """
        loss = self._training_loss(x, t)
        dout = self.lastLayer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        lam = self.weight_decay_lambda
        grads = {}
        for i in range(1, self.n_affine + 1):
            affine = self.layers[f"Affine{i}"]
            W = self.params[f"W{i}"]
            dW = np.asarray(affine.dW)
            if lam != 0:
                grads[f"W{i}"] = (dW + lam * W).astype(W.dtype, copy=False)
            else:
                grads[f"W{i}"] = np.array(dW, dtype=W.dtype, copy=True)
            grads[f"b{i}"] = np.array(affine.db, dtype=W.dtype, copy=True)
        return loss, grads

    def _training_loss(self, x, t):
        """``loss(x, t)`` of the forward pass that backprop follows (a network
        with train/test modes runs it in training mode)."""
        return self.loss(x, t)

    def gradient(self, x, t):
        """Backprop gradients of ``loss(x, t)``: dict W1, b1, ... of fresh arrays."""
        return self.loss_and_gradient(x, t)[1]

    def train_step(self, x, t, optimizer):
        """One training step: gradients by backprop, then ``optimizer.update``.

        Equivalent to ``grads = self.gradient(x, t); optimizer.update(self.params,
        grads)``; returns the loss (float, weight decay included) of that
        forward pass, i.e. at the parameters before the update.
        """
        return gradient_step(self, x, t, optimizer)

    # -- persistence -------------------------------------------------------------
    def _saved_settings(self):
        """What makes this network what it is besides its parameters:
        ``{name: value}``, written by ``save`` as the entry ``__name__`` and
        compared by ``load`` with the network it loads into."""
        return {"class": type(self).__name__, "sizes": [int(s) for s in self._sizes],
                "dtype": self.dtype.name, "activation": getattr(self, "activation", "relu"),
                "weight_decay_lambda": float(self.weight_decay_lambda)}

    def _metadata(self):
        """The non-parameter entries ``save`` writes: the settings, and
        whatever state ``_state_entries`` names (added by subclasses)."""
        return {f"__{name}__": np.asarray(value)
                for name, value in self._saved_settings().items()}

    def _state_entries(self):
        """``{entry: (what, shape)}`` of the state ``_metadata`` may write
        besides the settings (``load`` checks each shape before reading it;
        ``what`` names it in the error, e.g. 'BatchNorm1.running_mean')."""
        return {}

    def save(self, path):
        """Write the parameters and the network's settings (class, sizes,
        dtype, activation, weight decay) to an ``.npz`` file.

        ``.npz`` is appended to a path without it; the path written is
        returned.  The file is written beside ``path`` under a temporary name
        and renamed over it once complete: a save that fails part-way
        (disk full, Ctrl-C) leaves any previous file at ``path`` as it was.
        ``load`` restores the exact values.
        """
        arrays = dict(self.params)
        arrays.update(self._metadata())
        if not isinstance(path, (str, os.PathLike)):
            np.savez(path, **arrays)            # an open file: written in place
            return path
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        return _files.atomic_write(path, lambda f: np.savez(f, **arrays))

    def load(self, path):
        """Copy the parameters saved by ``save`` into this net's arrays.

        Before any array is read, the file's index (each entry's name, shape
        and dtype, from its header) and the settings it records are checked
        against this network: every parameter key with this net's shape and
        dtype and no other parameter, the same class, sizes, dtype,
        activation and weight decay (files written before a setting was
        recorded are not checked for it).  Anything else is a ValueError
        naming the file, the key or setting, the expected and the stored
        value, and nothing is changed.  Entries this network doesn't know are
        never read.  Values are copied INTO the existing arrays, so the
        layers keep using them.  Returns self.
        """
        if isinstance(path, (str, os.PathLike)):
            path = os.fspath(path)
            if not os.path.exists(path) and os.path.exists(path + ".npz"):
                path += ".npz"
        try:
            data = np.load(path, allow_pickle=False)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: expected an .npz archive written by save(), got a "
                             f"single .npy array")
        with data:
            index = _files.npz_index(data, path)
            self._check_parameter_entries(index, path)
            self._check_settings(data, index, path)
            state_entries = {name: spec for name, spec in self._state_entries().items()
                             if name in index}
            for name, (what, shape) in state_entries.items():
                if index[name].shape != shape:
                    raise ValueError(f"{what}: expected shape {shape}, got "
                                     f"{index[name].shape} in {path}")
            stored = {key: data[key] for key in [*self.params, *state_entries]}
        self._load_state(stored, path)
        for key, param in self.params.items():
            np.copyto(param, stored[key])
        return self

    def _check_parameter_entries(self, index, path):
        extra = [k for k in index if not k.startswith("__") and k not in self.params]
        if extra:
            raise ValueError(f"{path}: expected the parameters {list(self.params)}, "
                             f"the file also holds {extra}")
        missing = [k for k in self.params if k not in index]
        if missing:
            expected = {k: self.params[k].shape for k in missing}
            raise ValueError(f"{path}: expected the parameters {list(self.params)}, "
                             f"missing {missing} (shapes {expected})")
        for key, param in self.params.items():
            entry = index[key]
            if entry.shape != param.shape:
                raise ValueError(f"{key}: expected shape {param.shape}, got {entry.shape} "
                                 f"in {path}")
            if entry.dtype != param.dtype:
                raise ValueError(f"{key}: expected dtype {param.dtype}, got {entry.dtype} "
                                 f"in {path}")

    def _check_settings(self, data, index, path):
        """ValueError listing every setting the file records differently."""
        differences = []
        for name, value in self._saved_settings().items():
            entry = index.get(f"__{name}__")
            if entry is None:
                continue                 # a file from before this setting was saved
            if math.prod(entry.shape) > _MAX_SETTING_VALUES or entry.dtype.kind not in "biufU":
                raise ValueError(f"{path}: entry '__{name}__' is not a network setting "
                                 f"(shape {entry.shape}, dtype {entry.dtype})")
            stored = data[f"__{name}__"].tolist()
            if stored != value:
                differences.append(f"{name} {stored!r} (this network: {value!r})")
        if differences:
            raise ValueError(f"{path}: saved by another kind of network: "
                             f"{'; '.join(differences)}; build the network with the file's "
                             "settings to load it")

    def _load_state(self, stored, path):
        """Restore state other than ``params`` from the arrays ``stored`` in the
        file ``path`` (the entries of ``_state_entries`` the file has, shapes
        checked).  Called by ``load`` once the parameters are checked: check
        everything before changing anything."""


class TwoLayerNet(BaseNet):
    """The book's chapter-5 two-layer network: Affine -> Relu -> Affine -> SoftmaxWithLoss.

    input_size, hidden_size, output_size: positive ints.
    weight_init_std: weights are weight_init_std * standard normal (float64
    draws from ``np.random.default_rng(seed)``, W1 then W2, cast to dtype).
    dtype: np.float32 or np.float64, the dtype of every parameter and gradient.

    ``params``: W1 (input, hidden), b1 (hidden,), W2 (hidden, output), b2 (output,).
    ``layers``: OrderedDict 'Affine1', 'Relu1', 'Affine2'; ``lastLayer``.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *,
                 dtype=np.float64, seed=None):
        input_size = _check_positive_int("input_size", input_size)
        hidden_size = _check_positive_int("hidden_size", hidden_size)
        output_size = _check_positive_int("output_size", output_size)
        std = _checks.check_positive_number("weight_init_std", weight_init_std)
        dtype = _check_dtype(dtype)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.weight_init_std = std
        self.weight_decay_lambda = 0
        self._build((input_size, hidden_size, output_size), (std, std), "relu", dtype, seed)

    def _activation_layer_name(self, i):
        return f"Relu{i}"

    def __repr__(self):
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"{self.output_size}, dtype={self.dtype.name})")


class MultiLayerNet(BaseNet):
    """The book's fully connected network (``common/multi_layer_net.py``).

    input_size, output_size: positive ints; hidden_size_list: list of
    positive ints (may be empty: softmax regression).
    activation: 'relu' or 'sigmoid'.
    weight_init_std: 'relu'/'he' -> sqrt(2 / n_prev), 'sigmoid'/'xavier' ->
    sqrt(1 / n_prev) (n_prev: the width of the previous layer), or a number.
    weight_decay_lambda: L2 strength; adds 0.5 * lambda * sum(W**2) to the
    loss and lambda * W to each dW.
    dtype: np.float32 or np.float64; seed: for ``np.random.default_rng``.

    ``params``: W1, b1, ..., W{L}, b{L} with L = len(hidden_size_list) + 1.
    ``layers``: 'Affine1', 'Activation_function1', ..., 'Affine{L}'.
    """

    _activations = ("relu", "sigmoid")

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0, *, dtype=np.float64,
                 seed=None):
        input_size = _check_positive_int("input_size", input_size)
        output_size = _check_positive_int("output_size", output_size)
        if isinstance(hidden_size_list, (str, bytes)) or not hasattr(hidden_size_list, "__iter__"):
            raise ValueError(f"hidden_size_list: expected a list of positive integers, "
                             f"got {hidden_size_list!r}")
        hidden = [_check_positive_int(f"hidden_size_list[{i}]", h)
                  for i, h in enumerate(hidden_size_list)]
        if not isinstance(activation, str) or activation.lower() not in self._activations:
            raise ValueError(f"activation: expected 'relu' or 'sigmoid', got {activation!r}")
        activation = activation.lower()
        sizes = [input_size] + hidden + [output_size]
        if isinstance(weight_init_std, str):
            kind = weight_init_std.lower()
            if kind in ("relu", "he"):
                scales = [np.sqrt(2.0 / n) for n in sizes[:-1]]
            elif kind in ("sigmoid", "xavier"):
                scales = [np.sqrt(1.0 / n) for n in sizes[:-1]]
            else:
                raise ValueError("weight_init_std: expected 'relu', 'he', 'sigmoid', "
                                 f"'xavier' or a number, got {weight_init_std!r}")
        else:
            std = _checks.check_positive_number("weight_init_std", weight_init_std)
            scales = [std] * (len(sizes) - 1)
        lam = _checks.check_positive_number("weight_decay_lambda", weight_decay_lambda)
        dtype = _check_dtype(dtype)
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden
        self.hidden_layer_num = len(hidden)
        self.activation = activation
        self.weight_init_std = weight_init_std
        self.weight_decay_lambda = lam
        self._build(sizes, scales, activation, dtype, seed)

    def _activation_layer_name(self, i):
        return f"Activation_function{i}"

    def __repr__(self):
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size_list}, "
                f"{self.output_size}, activation={self.activation!r}, "
                f"weight_decay_lambda={self.weight_decay_lambda}, dtype={self.dtype.name})")
