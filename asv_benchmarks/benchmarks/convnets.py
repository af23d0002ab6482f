"""Chapters 7-8: im2col/col2im, Convolution, Pooling and the two convnets.

* ``Im2col``: ``fastbp.util`` against ``fastbp.reference.util`` on a
  DeepConvNet-sized batch (100, 16, 28, 28), 3 x 3 filters, pad 1.
* ``ConvolutionLayer``: forward + backward of SimpleConvNet's first layer
  (100 images 1 x 28 x 28, 30 filters 5 x 5) and of DeepConvNet's second
  (100 x 16 x 28 x 28, 16 filters 3 x 3, pad 1).
* ``PoolingLayer``: 2 x 2 max pooling, stride 2, forward + backward on
  (100, 30, 24, 24) (SimpleConvNet's).
* ``ConvNetTrainStep``: one ``train_step`` (SGD) of SimpleConvNet or
  DeepConvNet on MNIST-shaped images; ``ConvNetPredict`` DeepConvNet's test-
  mode ``predict``; ``ConvNetTrainStepSpeedup`` reference time / fast time
  ("x"); ``ConvNetPeakMemory`` the peak resident memory of a process running
  one DeepConvNet step.

``impl`` "reference" is ``fastbp.reference`` (its layers, util and
``fastbp.reference.convnets``): the book's algorithms in plain NumPy.
"""
import numpy as np

import fastbp
import fastbp.layers
import fastbp.networks
import fastbp.optimizers
import fastbp.reference.convnets
import fastbp.reference.layers
import fastbp.reference.optimizers
import fastbp.reference.util
import fastbp.util

from .common import DTYPES, IMPLS, SEED, Benchmark, speedup

UTIL = {"fast": fastbp.util, "reference": fastbp.reference.util}
LAYERS = {"fast": fastbp.layers, "reference": fastbp.reference.layers}
NETWORKS = {"fast": fastbp.networks, "reference": fastbp.reference.convnets}
OPTIMIZERS = {"fast": fastbp.optimizers, "reference": fastbp.reference.optimizers}
# (batch shape, filters, filter size, pad) of the benchmarked convolutions
CONVOLUTIONS = {"simple-conv1": ((100, 1, 28, 28), 30, 5, 0),
                "deep-conv2": ((100, 16, 28, 28), 16, 3, 1)}
NETS = ["SimpleConvNet", "DeepConvNet"]
IMAGES = [8, 100]
LR = 0.01


def images(n, dtype, shape=(1, 28, 28), seed=SEED):
    """MNIST-like images (n, *shape) in [0, 1) and integer labels."""
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape).astype(dtype), rng.integers(0, 10, n)


class Im2col(Benchmark):
    params = [IMPLS, DTYPES]
    param_names = ["impl", "dtype"]
    shape, size, pad = (100, 16, 28, 28), 3, 1

    def setup(self, impl, dtype):
        self.limit_threads()
        self.util = UTIL[impl]
        self.x = np.random.default_rng(SEED).random(self.shape).astype(dtype)
        self.col = fastbp.reference.util.im2col(self.x, self.size, self.size, 1, self.pad)

    def time_im2col(self, impl, dtype):
        self.util.im2col(self.x, self.size, self.size, 1, self.pad)

    def time_col2im(self, impl, dtype):
        self.util.col2im(self.col, self.shape, self.size, self.size, 1, self.pad)

    def result(self):
        return {"col": self.util.im2col(self.x, self.size, self.size, 1, self.pad),
                "img": self.util.col2im(self.col, self.shape, self.size, self.size, 1,
                                        self.pad)}


class ConvolutionLayer(Benchmark):
    params = [IMPLS, DTYPES, list(CONVOLUTIONS)]
    param_names = ["impl", "dtype", "layer"]

    def setup(self, impl, dtype, layer):
        self.limit_threads()
        shape, filters, size, pad = CONVOLUTIONS[layer]
        rng = np.random.default_rng(SEED)
        self.x = rng.random(shape).astype(dtype)
        W = (rng.standard_normal((filters, shape[1], size, size)) * 0.1).astype(dtype)
        b = (0.1 * rng.standard_normal(filters)).astype(dtype)
        self.layer = LAYERS[impl].Convolution(W, b, 1, pad)
        out_hw = shape[2] + 2 * pad - size + 1
        # gradients of a loss's size: dW sums 57,600 products, whose float32
        # rounding then stays below the suite's absolute tolerance
        self.dout = (0.01 * rng.standard_normal((shape[0], filters, out_hw, out_hw))).astype(dtype)

    def time_forward_backward(self, impl, dtype, layer):
        self.layer.forward(self.x)
        self.layer.backward(self.dout)

    def result(self):
        out = self.layer.forward(self.x)
        dx = self.layer.backward(self.dout)
        return {"out": out, "dx": dx, "dW": self.layer.dW, "db": self.layer.db}


class PoolingLayer(Benchmark):
    params = [IMPLS, DTYPES]
    param_names = ["impl", "dtype"]

    def setup(self, impl, dtype):
        self.limit_threads()
        rng = np.random.default_rng(SEED)
        self.x = rng.standard_normal((100, 30, 24, 24)).astype(dtype)
        self.dout = rng.standard_normal((100, 30, 12, 12)).astype(dtype)
        self.layer = LAYERS[impl].Pooling(2, 2, 2)

    def time_forward_backward(self, impl, dtype):
        self.layer.forward(self.x)
        self.layer.backward(self.dout)

    def result(self):
        return {"out": self.layer.forward(self.x), "dx": self.layer.backward(self.dout)}


def make_convnet(impl, net, dtype):
    return getattr(NETWORKS[impl], net)(dtype=dtype, seed=SEED)


class ConvNetTrainStep(Benchmark):
    params = [IMPLS, DTYPES, NETS, IMAGES]
    param_names = ["impl", "dtype", "net", "images"]

    def setup(self, impl, dtype, net, n):
        self.limit_threads()
        self._args = (impl, dtype, net)
        self.x, self.t = images(n, dtype)
        self.network = make_convnet(impl, net, dtype)
        self.optimizer = OPTIMIZERS[impl].SGD(lr=LR)

    def time_train_step(self, impl, dtype, net, n):
        self.network.train_step(self.x, self.t, self.optimizer)

    def result(self):
        """Loss and parameters after two SGD steps of a fresh network (the
        same dropout masks: NumPy's generator seeded before each step)."""
        impl, dtype, net = self._args
        network = make_convnet(impl, net, dtype)
        opt = OPTIMIZERS[impl].SGD(lr=LR)
        out = {}
        for i in range(2):
            np.random.seed(i)
            out[f"loss{i}"] = network.train_step(self.x, self.t, opt)
        out.update(network.params)
        return out


class ConvNetPredict(Benchmark):
    params = [IMPLS, DTYPES, IMAGES]
    param_names = ["impl", "dtype", "images"]

    def setup(self, impl, dtype, n):
        self.limit_threads()
        self.x, _ = images(n, "float32")           # the book's images are float32
        self.network = make_convnet(impl, "DeepConvNet", dtype)

    def time_predict(self, impl, dtype, n):
        self.network.predict(self.x)

    def result(self):
        return {"logits": self.network.predict(self.x)}


class ConvNetTrainStepSpeedup(Benchmark):
    """Speedup of fastbp's convnet ``train_step`` over the reference's, as a
    ratio (``common.speedup``: interleaved blocks, best block).  Skipped
    without the compiled core."""

    params = [DTYPES, NETS]
    param_names = ["dtype", "net"]
    unit = "x"
    processes = 1
    timeout = 600

    def setup(self, dtype, net):
        if not fastbp.COMPILED:
            raise NotImplementedError("no compiled core: fast and reference are the same code")
        self.limit_threads()
        self.x, self.t = images(100, dtype)

    def track_speedup(self, dtype, net):
        fast, ref = make_convnet("fast", net, dtype), make_convnet("reference", net, dtype)
        fast_opt = fastbp.optimizers.SGD(lr=LR)
        ref_opt = fastbp.reference.optimizers.SGD(lr=LR)
        return speedup(lambda: fast.train_step(self.x, self.t, fast_opt),
                       lambda: ref.train_step(self.x, self.t, ref_opt),
                       max_calls=30, rounds=3, block_time=0.5)


class ConvNetPeakMemory(Benchmark):
    """Peak resident memory of a process that builds DeepConvNet and runs one
    SGD step on 100 images (interpreter, NumPy and SciPy included)."""

    params = [IMPLS, DTYPES]
    param_names = ["impl", "dtype"]
    processes = 1

    def setup(self, impl, dtype):
        self.limit_threads()
        self.x, self.t = images(100, dtype)
        self.network = make_convnet(impl, "DeepConvNet", dtype)
        self.optimizer = OPTIMIZERS[impl].SGD(lr=LR)

    def peakmem_train_step(self, impl, dtype):
        self.network.train_step(self.x, self.t, self.optimizer)
