"""SoftmaxWithLoss (C = 10 classes) forward and backward, fast vs reference.

Labels given as integer class indices (the usual case) or one-hot rows of
the logits' dtype (the book's MNIST loader with ``one_hot_label=True``).
"""
import numpy as np

from .common import BATCHES, DTYPES, IMPL, IMPLS, N_CLASSES, CachedData, take


class SoftmaxWithLoss(CachedData):
    params = [IMPLS, DTYPES, BATCHES, ["index", "one-hot"]]
    param_names = ["impl", "dtype", "batch", "labels"]

    def setup(self, cache, impl, dtype, batch, labels):
        self.limit_threads()
        self.layer = IMPL[impl].layers.SoftmaxWithLoss()
        self.x = take(cache["logits"], (batch, N_CLASSES), dtype)
        t = np.array(cache["labels"][:batch], dtype=np.int64)
        if labels == "one-hot":
            t = np.eye(N_CLASSES, dtype=dtype)[t]
        self.t = t
        self.layer.forward(self.x, self.t)

    def time_forward(self, cache, impl, dtype, batch, labels):
        self.layer.forward(self.x, self.t)

    def time_backward(self, cache, impl, dtype, batch, labels):
        self.layer.backward()

    def result(self):
        loss = self.layer.forward(self.x, self.t)
        dx = self.layer.backward()
        return {"loss": loss, "y": self.layer.y, "dx": dx}
