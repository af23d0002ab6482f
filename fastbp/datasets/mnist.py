"""MNIST loaders: a drop-in for the book's ``dataset/mnist.py``.

Two entry points (the IDX format is read by ``_idx``, the files are found
and downloaded by ``_download``):

* :func:`load_mnist` reads the four standard IDX files of the full MNIST
  database (60,000 training and 10,000 test images) from a directory,
  downloading whatever is missing from a public mirror.
* :func:`load_mnist_mini` reads a subset shipped inside the package (the
  first 10,000 training and first 2,000 test images), so examples, the
  ``fastbp train`` command and tests work offline.

Both return ``((x_train, t_train), (x_test, t_test))`` exactly like the book:

=================  ======================================  ===================
array              shape                                   dtype
=================  ======================================  ===================
``x_*``            ``(N, 784)`` if ``flatten`` else        ``float32`` in
                   ``(N, 1, 28, 28)``                      [0, 1] if
                                                           ``normalize`` else
                                                           ``uint8`` (0..255)
``t_*``            ``(N,)``, or ``(N, 10)`` if             ``uint8`` (0..9), or
                   ``one_hot_label``                       ``float32`` one-hot
=================  ======================================  ===================

(``784 = 28 * 28``; the sizes are taken from the IDX headers.)

Every file is validated: IDX magic numbers, header sizes against the actual
data length (truncated files and trailing bytes are rejected), image and label
counts agreeing, labels in 0..9, and gzip integrity (CRC and length).  Any
problem is a :class:`ValueError` naming the file and what is wrong; a wrong
array is never returned silently.

Missing files: :func:`load_mnist` raises :class:`MnistUnavailableError`
(a subclass of :class:`OSError`) when files are missing and cannot be
downloaded (``download=False``, no network, every mirror failed).  Its message
names the directory and the four file names and says how to provide them.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, and is
distributed under CC BY-SA 3.0.
"""
import functools
import hashlib
import importlib.resources
from pathlib import Path

import numpy as np

from ._download import (DEFAULT_TIMEOUT, MNIST_FILES, MnistUnavailableError, download_mnist,
                        find_file, how_to_provide, missing_files, mnist_dir_default)
from ._idx import (NUM_CLASSES, gunzip, parse_images, parse_labels, read_idx_images,
                   read_idx_labels)

__all__ = ["MNIST_MINI_SHA256", "load_mnist", "load_mnist_mini"]

#: SHA-256 of the *uncompressed* content of the embedded subset (the first
#: 10,000 training / 2,000 test images and labels), as written by
#: ``tools/make_mnist_mini.py``.  Checked every time the subset is parsed.
MNIST_MINI_SHA256 = {
    "train-images-idx3-ubyte": "2889698e6bc3614913e76901316712919d1998fc2b44512451bfe65bc1e668b1",
    "train-labels-idx1-ubyte": "651e38e2ac0632f5113ec18f1df4977117f953197819034009971a6675a0df78",
    "t10k-images-idx3-ubyte": "3f6bd66dee48df299584c67669bceee490faa25f931496bd7473b42106d7daed",
    "t10k-labels-idx1-ubyte": "7b098e5f6a3065807cebeabf36fb1724a8aff19f2673ac08b4923e0e8c715bce",
}


# --------------------------------------------------------------------------
# from IDX arrays to the book's arrays
# --------------------------------------------------------------------------

def _check_pair(images, img_path, labels, lab_path):
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path} holds {images.shape[0]} images but {lab_path} "
                         f"holds {labels.shape[0]} labels; they must agree")


def _convert(x, t, normalize, flatten, one_hot_label):
    """Book-style conversion; always returns fresh, writable arrays."""
    n, rows, cols = x.shape
    if normalize:
        x = x.astype(np.float32)
        x /= np.float32(255.0)
    else:
        x = x.copy()
    x = x.reshape(n, rows * cols) if flatten else x.reshape(n, 1, rows, cols)
    if one_hot_label:
        onehot = np.zeros((t.shape[0], NUM_CLASSES), dtype=np.float32)
        onehot[np.arange(t.shape[0]), t] = 1.0
        t = onehot
    else:
        t = t.copy()
    return x, t


def _convert_all(raw, normalize, flatten, one_hot_label):
    x_train, t_train, x_test, t_test = raw
    return (_convert(x_train, t_train, normalize, flatten, one_hot_label),
            _convert(x_test, t_test, normalize, flatten, one_hot_label))


def _load_dir(directory):
    """The four raw uint8 arrays from ``directory`` (all files must exist)."""
    paths = [find_file(directory, name) for name in MNIST_FILES]
    x_train = read_idx_images(paths[0])
    t_train = read_idx_labels(paths[1])
    x_test = read_idx_images(paths[2])
    t_test = read_idx_labels(paths[3])
    _check_pair(x_train, paths[0], t_train, paths[1])
    _check_pair(x_test, paths[2], t_test, paths[3])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{paths[0]} holds {x_train.shape[1]}x{x_train.shape[2]} images "
                         f"but {paths[2]} holds {x_test.shape[1]}x{x_test.shape[2]}; "
                         f"they must agree")
    return x_train, t_train, x_test, t_test


# --------------------------------------------------------------------------
# public loaders
# --------------------------------------------------------------------------

def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, path=None,
               download=True, mirror=None, progress=None, timeout=DEFAULT_TIMEOUT):
    """Load the full MNIST data set, as the book's ``dataset.mnist.load_mnist``.

    Parameters
    ----------
    normalize : bool
        ``True``: images as ``float32`` in [0, 1] (``x / 255``); ``False``:
        the raw ``uint8`` pixel values 0..255.
    flatten : bool
        ``True``: images of shape ``(N, 784)``; ``False``: ``(N, 1, 28, 28)``.
    one_hot_label : bool
        ``True``: labels as one-hot ``float32`` of shape ``(N, 10)``;
        ``False``: ``uint8`` class indices of shape ``(N,)``.
    path : str or os.PathLike, optional
        Directory holding ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``, each raw or gzipped (``.gz``; the raw file
        is used if both exist).  Default: :func:`mnist_dir_default`
        (``$FASTBP_DATA``, else ``~/.fastbp/mnist``).
    download : bool
        Download missing files (see :func:`download_mnist`).  ``False``:
        raise :class:`MnistUnavailableError` instead.
    mirror : str or sequence of str, optional
        Mirror base URL(s); default ``$FASTBP_MNIST_MIRROR``, else
        :data:`DEFAULT_MIRRORS`.
    progress : bool, optional
        Show a download progress bar; default: when stderr is a terminal.
    timeout : float
        Network timeout in seconds.

    Returns
    -------
    ((x_train, t_train), (x_test, t_test))
        ``N`` is 60,000 for training and 10,000 for test (from the headers).
        Fresh arrays that the caller owns.

    Raises
    ------
    ValueError
        A file is malformed (wrong magic, truncated, trailing bytes, corrupt
        gzip, image/label counts disagree, label > 9); the message names it.
    MnistUnavailableError
        Files are missing and cannot be downloaded (subclass of OSError).
    """
    directory = Path(path).expanduser() if path is not None else mnist_dir_default()
    missing = missing_files(directory)
    if missing:
        if not download:
            raise MnistUnavailableError(
                f"MNIST files missing from {directory}: {', '.join(missing)} "
                f"(download=False). {how_to_provide(directory)}")
        download_mnist(directory, mirror=mirror, progress=progress, timeout=timeout)
    raw = _load_dir(directory)
    return _convert_all(raw, normalize, flatten, one_hot_label)


_DATA_PACKAGE = __name__.rpartition(".")[0] or "fastbp.datasets"


def _embedded_bytes(name):
    ref = importlib.resources.files(_DATA_PACKAGE).joinpath("data", name + ".gz")
    label = f"{ref} (embedded MNIST subset)"
    try:
        data = ref.read_bytes()
    except OSError as exc:
        raise OSError(f"{label}: cannot read it ({exc}); the package data "
                      f"fastbp/datasets/data/*.gz was not installed") from exc
    data = gunzip(data, label)
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_MINI_SHA256[name]:
        raise ValueError(f"{label}: SHA-256 {digest} does not match the recorded "
                         f"{MNIST_MINI_SHA256[name]}; the package data is corrupt")
    return data, label


@functools.lru_cache(maxsize=1)
def _mini_raw():
    """The embedded subset as four read-only uint8 arrays (parsed once)."""
    arrays = []
    for name, parse in zip(MNIST_FILES, (parse_images, parse_labels) * 2):
        data, label = _embedded_bytes(name)
        arr = parse(data, label)
        arr.flags.writeable = False
        arrays.append((arr, label))
    (x_train, a), (t_train, b), (x_test, c), (t_test, d) = arrays
    _check_pair(x_train, a, t_train, b)
    _check_pair(x_test, c, t_test, d)
    return x_train, t_train, x_test, t_test


def load_mnist_mini(normalize=True, flatten=True, one_hot_label=False):
    """Load the MNIST subset shipped with fastbp (no files, no network).

    The first 10,000 training and the first 2,000 test images and labels of
    MNIST, in the same order.  Arguments and return value as
    :func:`load_mnist`: ``x`` is ``float32`` in [0, 1] if ``normalize`` else
    ``uint8``, of shape ``(N, 784)`` if ``flatten`` else ``(N, 1, 28, 28)``;
    ``t`` is ``uint8`` ``(N,)`` or one-hot ``float32`` ``(N, 10)``, with
    ``N`` = 10,000 (train) and 2,000 (test).

    The files are parsed and checksum-verified once per process; every call
    returns fresh copies, so modifying them does not affect later calls.
    """
    return _convert_all(_mini_raw(), normalize, flatten, one_hot_label)
