"""``optimizer.update(params, grads)`` on one layer's parameters, fast vs reference.

weights = {"W1": (784, width), "b1": (width,)}, updated in place; the
gradients stay fixed.  The optimizer's state (velocity, Adam moments) is
created by the first call (asv's warm-up), so the timings are the
steady-state update.
"""
from .common import (DTYPES, IMPLS, INPUT_SIZE, OPTIMIZER_CLASSES, WIDTHS, CachedData,
                     make_optimizer, take)


class OptimizerUpdate(CachedData):
    params = [IMPLS, DTYPES, WIDTHS, list(OPTIMIZER_CLASSES)]
    param_names = ["impl", "dtype", "width", "optimizer"]

    def setup(self, cache, impl, dtype, width, optimizer):
        self.limit_threads()
        self._impl, self._name = impl, optimizer
        self.weights = self._initial_params(cache, dtype, width)
        self.grads = {"W1": take(cache["grad_W"], (INPUT_SIZE, width), dtype),
                      "b1": take(cache["grad_b"], (width,), dtype)}
        self.optimizer = make_optimizer(impl, optimizer)
        self._cache, self._dtype, self._width = cache, dtype, width

    @staticmethod
    def _initial_params(cache, dtype, width):
        return {"W1": take(cache["W"], (INPUT_SIZE, width), dtype),
                "b1": take(cache["b"], (width,), dtype)}

    def time_update(self, cache, impl, dtype, width, optimizer):
        self.optimizer.update(self.weights, self.grads)

    def result(self):
        """Parameters after three updates from the initial values with a
        fresh optimizer (the second and third use the optimizer's state)."""
        weights = self._initial_params(self._cache, self._dtype, self._width)
        optimizer = make_optimizer(self._impl, self._name)
        for _ in range(3):
            optimizer.update(weights, self.grads)
        return weights
