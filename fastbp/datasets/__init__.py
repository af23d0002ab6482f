"""Data sets for fastbp: MNIST, as in the book's ``dataset/mnist.py``.

>>> from fastbp.datasets import load_mnist_mini
>>> (x_train, t_train), (x_test, t_test) = load_mnist_mini()
>>> x_train.shape, x_train.dtype, t_train.shape, t_train.dtype
((10000, 784), dtype('float32'), (10000,), dtype('uint8'))

* :func:`load_mnist` — the full 60,000 / 10,000 MNIST files from a directory
  (``path=``, ``$FASTBP_DATA`` or ``~/.fastbp/mnist``), downloaded from a
  mirror when missing (``download=False`` to forbid it).
* :func:`load_mnist_mini` — the first 10,000 training / 2,000 test images,
  shipped inside the package; works offline.

The package: ``mnist`` (the loaders and the embedded subset), ``_idx``
(the IDX format, raw or gzipped), ``_download`` (the directory of the full
files and their download).

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, and is
distributed under CC BY-SA 3.0.
"""
from ._download import (
    DEFAULT_MIRRORS,
    MNIST_FILES,
    MNIST_SHA256,
    MnistUnavailableError,
    download_mnist,
    mnist_dir_default,
    mnist_mirrors,
)
from ._idx import read_idx_images, read_idx_labels
from .mnist import MNIST_MINI_SHA256, load_mnist, load_mnist_mini

__all__ = [
    "DEFAULT_MIRRORS",
    "MNIST_FILES",
    "MNIST_MINI_SHA256",
    "MNIST_SHA256",
    "MnistUnavailableError",
    "download_mnist",
    "load_mnist",
    "load_mnist_mini",
    "mnist_dir_default",
    "mnist_mirrors",
    "read_idx_images",
    "read_idx_labels",
]
