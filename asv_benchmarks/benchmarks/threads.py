"""The one multi-threaded benchmark: fastbp's Relu and Sigmoid forward +
backward on 10**7 elements with 1 and 2 OpenMP threads.

BLAS and OpenMP are limited to ``threads`` (threadpoolctl) and
``fastbp.set_num_threads(threads)`` sets the elementwise kernels' team.
Skipped when the machine has fewer cores than ``threads``, when fastbp
was built without OpenMP (threads > 1), or without the compiled core.
"""
import numpy as np

import fastbp
import fastbp.layers

from .common import DTYPES, SEED, Benchmark, cpu_count, openmp_enabled


class ElementwiseThreads(Benchmark):
    params = [[1, 2], DTYPES]
    param_names = ["threads", "dtype"]
    size = 10**7
    repeat = (3, 10, 10.0)

    def setup(self, threads, dtype):
        if not fastbp.COMPILED:
            raise NotImplementedError("no compiled core: nothing runs threaded")
        if threads > 1 and not openmp_enabled():
            raise NotImplementedError("fastbp built without OpenMP")
        if threads > cpu_count():
            raise NotImplementedError(f"{threads} threads on {cpu_count()} cores")
        self.limit_threads(threads)
        rng = np.random.default_rng(SEED)
        self.x = rng.standard_normal(self.size, dtype=dtype)
        self.dout = rng.standard_normal(self.size, dtype=dtype)
        self.relu = fastbp.layers.Relu()
        self.sigmoid = fastbp.layers.Sigmoid()

    def time_relu_forward_backward(self, threads, dtype):
        self.relu.forward(self.x)
        self.relu.backward(self.dout)

    def time_sigmoid_forward_backward(self, threads, dtype):
        self.sigmoid.forward(self.x)
        self.sigmoid.backward(self.dout)

    def result(self):
        return {"relu_out": self.relu.forward(self.x), "relu_dx": self.relu.backward(self.dout),
                "sigmoid_out": self.sigmoid.forward(self.x),
                "sigmoid_dx": self.sigmoid.backward(self.dout)}
