"""Forward and backward of the chapter-5 layers, fast vs reference.

Relu and Sigmoid run on a (batch, width) activation; Affine maps a
(batch, 784) input to (batch, width).  ``setup`` runs one forward pass, so
``time_backward`` measures backward alone.  ``result()`` (not a benchmark)
runs forward and backward once more and returns what they computed; the
test suite compares it between ``impl="fast"`` and ``impl="reference"``.
"""
from .common import (BATCHES, DTYPES, IMPL, IMPLS, INPUT_SIZE, WIDTHS, CachedData,
                     take)


class _Layer(CachedData):
    """Times ``self.layer`` on ``self.x`` / ``self.dout``, set by ``setup``."""

    params = [IMPLS, DTYPES, BATCHES, WIDTHS]
    param_names = ["impl", "dtype", "batch", "width"]

    def time_forward(self, cache, impl, dtype, batch, width):
        self.layer.forward(self.x)

    def time_backward(self, cache, impl, dtype, batch, width):
        self.layer.backward(self.dout)

    def result(self):
        out = self.layer.forward(self.x)
        dx = self.layer.backward(self.dout)
        return {"out": out, "dx": dx}


class _Activation(_Layer):
    layer_name = None

    def setup(self, cache, impl, dtype, batch, width):
        self.limit_threads()
        self.layer = getattr(IMPL[impl].layers, self.layer_name)()
        self.x = take(cache["act"], (batch, width), dtype)
        self.dout = take(cache["dact"], (batch, width), dtype)
        self.layer.forward(self.x)


class Relu(_Activation):
    layer_name = "Relu"


class Sigmoid(_Activation):
    layer_name = "Sigmoid"


class Affine(_Layer):
    """x (batch, 784) @ W (784, width) + b; backward gives dx, dW and db."""

    def setup(self, cache, impl, dtype, batch, width):
        self.limit_threads()
        W = take(cache["W"], (INPUT_SIZE, width), dtype)
        b = take(cache["b"], (width,), dtype)
        self.layer = IMPL[impl].layers.Affine(W, b)
        self.x = take(cache["images"], (batch, INPUT_SIZE), dtype)
        self.dout = take(cache["dact"], (batch, width), dtype)
        self.layer.forward(self.x)

    def result(self):
        return dict(super().result(), dW=self.layer.dW, db=self.layer.db)
