"""Chapter 6: Dropout, BatchNormalization and MultiLayerNetExtend, fast vs
reference.

* ``BatchNormalization``: training-mode forward + backward, and test-mode
  forward, on a (batch, features) activation: the book's (100, 100) hidden
  layer and a convnet-sized (100, 17280).
* ``Dropout``: training-mode forward + backward on the same shapes, masks
  from the book's stream (``np.random.rand``, the global generator) or a
  Generator (``rng=``).
* ``ExtendTrainStep``: ``MultiLayerNetExtend.train_step`` of the book's
  784-100x5-10 with batch norm (and dropout), batch 100;
  ``ExtendTrainStepSpeedup`` reports reference time / fast time ("x").

``result()`` (not a benchmark) returns what a benchmark computes; the test
suite compares it between ``impl="fast"`` and ``impl="reference"``.
"""
import numpy as np

import fastbp
import fastbp.networks
import fastbp.reference.multi_layer_net_extend

from .common import DTYPES, IMPL, IMPLS, SEED, Benchmark, make_batch, make_optimizer, speedup

EXTEND = {"fast": fastbp.networks.MultiLayerNetExtend,
          "reference": fastbp.reference.multi_layer_net_extend.MultiLayerNetExtend}

SHAPES = ["100x100", "100x17280"]
EXTEND_HIDDEN = [100] * 5


def _shape(text):
    return tuple(int(s) for s in text.split("x"))


def _activations(shape, dtype):
    rng = np.random.default_rng(SEED)
    x = (1 + 2 * rng.standard_normal(shape)).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    return x, dout


class BatchNormalization(Benchmark):
    params = [IMPLS, DTYPES, SHAPES]
    param_names = ["impl", "dtype", "shape"]

    def setup(self, impl, dtype, shape):
        self.limit_threads()
        self.x, self.dout = _activations(_shape(shape), dtype)
        features = self.x.shape[1]
        self.layer = IMPL[impl].layers.BatchNormalization(np.ones(features, dtype),
                                                          np.zeros(features, dtype))
        self.layer.forward(self.x)           # running statistics for test mode

    def time_forward_backward(self, impl, dtype, shape):
        self.layer.forward(self.x)
        self.layer.backward(self.dout)

    def time_forward_test(self, impl, dtype, shape):
        self.layer.forward(self.x, train_flg=False)

    def result(self):
        out = self.layer.forward(self.x)
        dx = self.layer.backward(self.dout)
        return {"out": out, "dx": dx, "dgamma": self.layer.dgamma, "dbeta": self.layer.dbeta,
                "running_var": self.layer.running_var,
                "test_out": self.layer.forward(self.x, train_flg=False)}


class Dropout(Benchmark):
    """Dropout(0.5); stream "book": np.random.rand's masks, "rng": a Generator's."""

    params = [IMPLS, DTYPES, SHAPES, ["book", "rng"]]
    param_names = ["impl", "dtype", "shape", "stream"]

    def setup(self, impl, dtype, shape, stream):
        self.limit_threads()
        self.x, self.dout = _activations(_shape(shape), dtype)
        self.stream = stream
        self.layer = self._layer(impl)
        self._impl = impl

    def _layer(self, impl):
        layers = IMPL[impl].layers
        return layers.Dropout(0.5) if self.stream == "book" else layers.Dropout(0.5, rng=SEED)

    def time_forward_backward(self, impl, dtype, shape, stream):
        self.layer.forward(self.x)
        self.layer.backward(self.dout)

    def result(self):
        layer = self._layer(self._impl)           # a fresh stream: the same masks for both
        np.random.seed(SEED)
        out = layer.forward(self.x)
        return {"out": out, "dx": layer.backward(self.dout),
                "next_draw": np.random.rand(3)}   # the global generator moved alike


def _extend_net(impl, dtype, dropout):
    return EXTEND[impl](
        784, EXTEND_HIDDEN, 10, use_batchnorm=True, use_dropout=dropout, dropout_ration=0.2,
        dtype=dtype, seed=SEED)


class ExtendTrainStep(Benchmark):
    """MultiLayerNetExtend 784-100x5-10 with batch norm (and dropout), batch 100."""

    params = [IMPLS, DTYPES, ["sgd", "adam"], [False, True]]
    param_names = ["impl", "dtype", "optimizer", "dropout"]

    def setup(self, impl, dtype, optimizer, dropout):
        self.limit_threads()
        self._args = (impl, dtype, optimizer, dropout)
        self.x, self.t = make_batch(100, dtype)
        self.network = _extend_net(impl, dtype, dropout)
        self.optimizer = make_optimizer(impl, optimizer)

    def time_train_step(self, impl, dtype, optimizer, dropout):
        self.network.train_step(self.x, self.t, self.optimizer)

    def result(self):
        """Loss and parameters after two steps of a fresh network and optimizer."""
        impl, dtype, optimizer, dropout = self._args
        network = _extend_net(impl, dtype, dropout)
        opt = make_optimizer(impl, optimizer)
        losses = [network.train_step(self.x, self.t, opt) for _ in range(2)]
        out = {f"loss{i}": loss for i, loss in enumerate(losses)}
        out.update(network.params)
        return out


class ExtendTrainStepSpeedup(Benchmark):
    """Speedup of fastbp's MultiLayerNetExtend.train_step over the
    reference's (SGD, batch norm, batch 100), as a ratio; see
    ``common.speedup``.  Skipped without the compiled core."""

    params = [DTYPES, [False, True]]
    param_names = ["dtype", "dropout"]
    unit = "x"
    processes = 1

    def setup(self, dtype, dropout):
        if not fastbp.COMPILED:
            raise NotImplementedError("no compiled core: fast and reference are the same code")
        self.limit_threads()
        self.x, self.t = make_batch(100, dtype)

    def track_speedup(self, dtype, dropout):
        fast_net, ref_net = (_extend_net(impl, dtype, dropout) for impl in IMPLS)
        fast_opt, ref_opt = make_optimizer("fast", "sgd"), make_optimizer("reference", "sgd")
        x, t = self.x, self.t
        return speedup(lambda: fast_net.train_step(x, t, fast_opt),
                       lambda: ref_net.train_step(x, t, ref_opt))
