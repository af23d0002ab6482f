"""One training step, ``net.train_step(x, t, optimizer)``: forward, backward
and the parameter update, on MNIST-shaped random data.

* ``TwoLayerNet``: 784-width-10 (Affine, Relu, Affine, SoftmaxWithLoss).
* ``MultiLayerNet``: 784-[width, width]-10 with Relu and He initialisation.

``optimizer``: "sgd" (the book's; fastbp fuses it into the weight-gradient
GEMM) or "adam" (a separate fused update kernel).
``TrainStepPeakMemory`` records the peak resident memory of a process
running one SGD step; ``TrainStepSpeedup`` reports reference time / fast
time ("x") measured in the same process.  ``Accuracy`` times the per-epoch
evaluation, ``net.accuracy`` over 10,000 images.

The data here is made in ``setup``, not ``setup_cache``: it is cheap, and
peakmem would otherwise also count the whole cache.
"""
import fastbp

from .common import (BATCHES, DTYPES, IMPLS, WIDTHS, Benchmark, make_batch, make_network,
                     make_optimizer, speedup)

TRAIN_OPTIMIZERS = ["sgd", "adam"]


class _TrainStep(Benchmark):
    params = [IMPLS, DTYPES, BATCHES, WIDTHS, TRAIN_OPTIMIZERS]
    param_names = ["impl", "dtype", "batch", "width", "optimizer"]
    net = None

    def setup(self, impl, dtype, batch, width, optimizer):
        self.limit_threads()
        self._args = (impl, dtype, width, optimizer)
        self.x, self.t = make_batch(batch, dtype)
        self.network = make_network(self.net, impl, dtype, width)
        self.optimizer = make_optimizer(impl, optimizer)

    def time_train_step(self, impl, dtype, batch, width, optimizer):
        self.network.train_step(self.x, self.t, self.optimizer)

    def result(self):
        """Loss and parameters after two steps of a fresh network and optimizer."""
        impl, dtype, width, optimizer = self._args
        network = make_network(self.net, impl, dtype, width)
        opt = make_optimizer(impl, optimizer)
        losses = [network.train_step(self.x, self.t, opt) for _ in range(2)]
        out = {f"loss{i}": loss for i, loss in enumerate(losses)}
        out.update(network.params)
        return out


class TwoLayerNetTrainStep(_TrainStep):
    net = "TwoLayerNet"


class MultiLayerNetTrainStep(_TrainStep):
    net = "MultiLayerNet"


class TrainStepPeakMemory(Benchmark):
    """Peak resident memory of a process that builds the network and runs
    one SGD step (the baseline, ~60 MB of interpreter, NumPy and SciPy, is
    included).  Memory is deterministic enough for one process."""

    params = [["TwoLayerNet", "MultiLayerNet"], IMPLS, DTYPES, BATCHES, WIDTHS]
    param_names = ["net", "impl", "dtype", "batch", "width"]
    processes = 1

    def setup(self, net, impl, dtype, batch, width):
        self.limit_threads()
        self.x, self.t = make_batch(batch, dtype)
        self.network = make_network(net, impl, dtype, width)
        self.optimizer = make_optimizer(impl, "sgd")

    def peakmem_train_step(self, net, impl, dtype, batch, width):
        self.network.train_step(self.x, self.t, self.optimizer)


class TrainStepSpeedup(Benchmark):
    """Speedup of fastbp's ``train_step`` over the reference's, as a ratio.

    Both networks start from the same weights and train on the same batch;
    see ``common.speedup`` for how the two are timed (interleaved blocks,
    up to 300 calls each, best block).  Skipped without the compiled core,
    where "fast" is the reference.
    """

    params = [DTYPES, BATCHES, WIDTHS, TRAIN_OPTIMIZERS]
    param_names = ["dtype", "batch", "width", "optimizer"]
    unit = "x"
    processes = 1           # the method repeats and interleaves its own timings

    def setup(self, dtype, batch, width, optimizer):
        if not fastbp.COMPILED:
            raise NotImplementedError("no compiled core: fast and reference are the same code")
        self.limit_threads()
        self.x, self.t = make_batch(batch, dtype)

    def _speedup(self, net, dtype, width, optimizer):
        x, t = self.x, self.t
        fast_net = make_network(net, "fast", dtype, width)
        fast_opt = make_optimizer("fast", optimizer)
        ref_net = make_network(net, "reference", dtype, width)
        ref_opt = make_optimizer("reference", optimizer)
        return speedup(lambda: fast_net.train_step(x, t, fast_opt),
                       lambda: ref_net.train_step(x, t, ref_opt))

    def track_two_layer_net(self, dtype, batch, width, optimizer):
        return self._speedup("TwoLayerNet", dtype, width, optimizer)

    def track_multi_layer_net(self, dtype, batch, width, optimizer):
        return self._speedup("MultiLayerNet", dtype, width, optimizer)


class Accuracy(Benchmark):
    """``net.accuracy(x, t)`` of a TwoLayerNet 784-50-10 over 10,000 float32
    images (the book's MNIST images are float32, its weights ``dtype``): the
    per-epoch evaluation of ``fastbp train``.  fastbp predicts in row blocks;
    the reference in one pass, as the book does."""

    params = [IMPLS, DTYPES]
    param_names = ["impl", "dtype"]
    n_images = 10000

    def setup(self, impl, dtype):
        self.limit_threads()
        self.x, self.t = make_batch(self.n_images, "float32")
        self.network = make_network("TwoLayerNet", impl, dtype, 50)

    def time_accuracy(self, impl, dtype):
        self.network.accuracy(self.x, self.t)
