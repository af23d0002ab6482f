"""The book's ``MultiLayerNetExtend`` (``common/multi_layer_net_extend.py``) in plain NumPy.

A ``MultiLayerNet`` with batch normalisation and dropout: per hidden layer
i, ``Affine{i}`` -> ``BatchNorm{i}`` (``use_batchnorm``) ->
``Activation_function{i}`` -> ``Dropout{i}`` (``use_dropout``), then
``Affine{L}`` and ``SoftmaxWithLoss``; L2 weight decay as in ``MultiLayerNet``.
Built like the other reference networks (``layers_module``, ``dtype``,
``seed``, ``train_step``, ``save``/``load``); ``fastbp.networks`` has its
twin on ``fastbp.layers``.
"""
from collections import OrderedDict

import numpy as np

from .. import _checks
from .gradient import numerical_gradient as _numerical_gradient
from .networks import MultiLayerNet, check_loss_inputs

__all__ = ["MultiLayerNetExtend"]


class MultiLayerNetExtend(MultiLayerNet):
    """The book's extended fully connected network: weight decay, dropout, batch norm.

    input_size, hidden_size_list, output_size, activation ('relu' or
    'sigmoid'), weight_init_std ('relu'/'he', 'sigmoid'/'xavier' or a
    number), weight_decay_lambda: as ``MultiLayerNet``.
    use_dropout: a ``Dropout(dropout_ration)`` after every hidden activation
    (``dropout_ration``, the book's spelling: the fraction dropped, in [0, 1)).
    use_batchnorm: a ``BatchNormalization`` before every hidden activation,
    with parameters gamma{i} (ones) and beta{i} (zeros) in ``params``.
    dtype: np.float32 or np.float64, the dtype of every parameter.

    seed (keyword) chooses the random streams:
      * None (default): the book's.  Weights are
        ``scale * np.random.randn(n_prev, n)`` on NumPy's global generator,
        W1, W2, ... in order (float64, then cast to dtype), and the dropout
        masks come from the global generator too (``Dropout``'s default), so
        after ``np.random.seed(s)`` this net starts from the book's weights
        and draws the book's masks.
      * an int (or SeedSequence): one ``np.random.default_rng(seed)`` draws
        the weights, W1, W2, ... as above, and then drives every Dropout
        layer (``Dropout(ratio, rng=that generator)``: float32 uniforms, in
        layer order at each training forward).  The global generator is not
        touched: the run is reproducible on its own.

    ``params``: W1, b1, ..., W{L}, b{L}, then gamma1, beta1, ..., gamma{L-1},
    beta{L-1} (the book's order).  ``predict(x, train_flg=False)`` and
    ``loss(x, t, train_flg=False)`` run Dropout and BatchNorm in training
    mode only when asked; ``gradient``, ``numerical_gradient`` and
    ``train_step`` use training mode (every call draws new dropout masks and
    moves the running statistics, as in the book); ``accuracy`` uses test
    mode.  ``save`` also writes the batch-norm running statistics, which
    ``load`` restores.
    """

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0, use_dropout=False,
                 dropout_ration=0.5, use_batchnorm=False, *, dtype=np.float64, seed=None):
        # set before MultiLayerNet.__init__, which validates the rest and calls _build
        self.use_dropout = bool(use_dropout)
        self.dropout_ration = _checks.check_unit_interval("dropout_ration", dropout_ration,
                                                          include_one=False)
        self.use_batchnorm = bool(use_batchnorm)
        super().__init__(input_size, hidden_size_list, output_size, activation=activation,
                         weight_init_std=weight_init_std,
                         weight_decay_lambda=weight_decay_lambda, dtype=dtype, seed=seed)

    def _build(self, sizes, scales, activation_name, dtype, seed):
        if seed is None:
            rng = None
            self._init_weights(sizes, scales, dtype, np.random.standard_normal)  # = randn
        else:
            rng = np.random.default_rng(seed)
            self._init_weights(sizes, scales, dtype, rng.standard_normal)
        mod = self.layers_module
        activation = {"relu": mod.Relu, "sigmoid": mod.Sigmoid}[activation_name]
        n_affine = self.n_affine
        self.layers = OrderedDict()
        for i in range(1, n_affine):
            self.layers[f"Affine{i}"] = mod.Affine(self.params[f"W{i}"], self.params[f"b{i}"])
            if self.use_batchnorm:
                gamma = self.params[f"gamma{i}"] = np.ones(sizes[i], dtype=dtype)
                beta = self.params[f"beta{i}"] = np.zeros(sizes[i], dtype=dtype)
                self.layers[f"BatchNorm{i}"] = mod.BatchNormalization(gamma, beta)
            self.layers[f"Activation_function{i}"] = activation()
            if self.use_dropout:
                self.layers[f"Dropout{i}"] = mod.Dropout(self.dropout_ration, rng=rng)
        self.layers[f"Affine{n_affine}"] = mod.Affine(self.params[f"W{n_affine}"],
                                                      self.params[f"b{n_affine}"])
        self.lastLayer = mod.SoftmaxWithLoss()

    def _batchnorm_layers(self):
        """(i, layer) for every BatchNorm{i} layer, in order."""
        return [(i, self.layers[f"BatchNorm{i}"]) for i in range(1, self.n_affine)
                if self.use_batchnorm]

    # -- forward -----------------------------------------------------------------
    def predict(self, x, train_flg=False):
        """Logits (N, output_size) for a batch x (N, input_size) or (N, d1, d2, ...).

        train_flg: run Dropout and BatchNorm in training mode (new masks,
        batch statistics, running statistics updated) instead of test mode.
        """
        for key, layer in self.layers.items():
            if key.startswith(("Dropout", "BatchNorm")):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        """Mean cross-entropy of softmax(predict(x, train_flg)) against t, plus
        0.5 * lambda * sum(W**2) over all W.  Returns a float."""
        check_loss_inputs(x, t, self._sizes[-1])
        y = self.predict(x, train_flg)
        return float(self.lastLayer.forward(y, t)) + self._weight_decay_loss()

    # -- gradients ---------------------------------------------------------------
    def _grad_keys(self):
        """The keys of a gradient dict, in the book's order: W1, b1, gamma1, beta1, W2, ..."""
        keys = []
        for i in range(1, self.n_affine + 1):
            keys += [f"W{i}", f"b{i}"]
            if self.use_batchnorm and i < self.n_affine:
                keys += [f"gamma{i}", f"beta{i}"]
        return keys

    def numerical_gradient(self, x, t):
        """Central-difference gradient of ``loss(x, t, train_flg=True)``.

        Returns a dict W1, b1, gamma1, beta1, W2, ... (the book's order, which
        is also the order the entries are evaluated in).  With dropout every
        loss evaluation draws new masks, as in the book.
        """
        loss_W = lambda W: self.loss(x, t, train_flg=True)  # noqa: E731 - the book's idiom
        return {key: _numerical_gradient(loss_W, self.params[key]) for key in self._grad_keys()}

    def _training_loss(self, x, t):
        return self.loss(x, t, train_flg=True)

    def loss_and_gradient(self, x, t):
        """Backprop in training mode: ``(loss, grads)``, loss as ``loss(x, t,
        train_flg=True)``, grads a dict W1, b1, gamma1, beta1, W2, ... of fresh
        arrays with the params' shapes and dtypes (dW + lambda * W for W)."""
        loss, grads = super().loss_and_gradient(x, t)
        for i, layer in self._batchnorm_layers():
            for key, value in ((f"gamma{i}", layer.dgamma), (f"beta{i}", layer.dbeta)):
                grads[key] = np.array(value, dtype=self.params[key].dtype, copy=True)
        return loss, {key: grads[key] for key in self._grad_keys()}

    # -- persistence -------------------------------------------------------------
    def _saved_settings(self):
        settings = super()._saved_settings()
        settings.update(use_dropout=self.use_dropout, dropout_ration=self.dropout_ration,
                        use_batchnorm=self.use_batchnorm)
        return settings

    def _state_entries(self):
        return {f"__{name}{i}__": (f"BatchNorm{i}.{name}", (self._sizes[i],))
                for i, _ in self._batchnorm_layers() for name in ("running_mean", "running_var")}

    def _metadata(self):
        arrays = super()._metadata()
        for i, layer in self._batchnorm_layers():
            for name in ("running_mean", "running_var"):
                value = getattr(layer, name)
                if value is not None:
                    arrays[f"__{name}{i}__"] = np.asarray(value)
        return arrays

    def _load_state(self, stored, path):
        """The batch-norm running statistics: from the file, or None if it has none."""
        state = []
        for i, layer in self._batchnorm_layers():
            width = self._sizes[i]
            for name in ("running_mean", "running_var"):
                value = stored.get(f"__{name}{i}__")
                if value is not None and value.shape != (width,):
                    raise ValueError(f"BatchNorm{i}.{name}: expected shape ({width},), got "
                                     f"{value.shape} in {path}")
                state.append((layer, name, value))
        for layer, name, value in state:
            setattr(layer, name, value)

    def __repr__(self):
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size_list}, "
                f"{self.output_size}, activation={self.activation!r}, "
                f"weight_decay_lambda={self.weight_decay_lambda}, "
                f"use_dropout={self.use_dropout}, dropout_ration={self.dropout_ration}, "
                f"use_batchnorm={self.use_batchnorm}, dtype={self.dtype.name})")
