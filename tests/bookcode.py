"""The book's own code (``../shared/book``) as an oracle for the tests.

The book's repository sits beside this one (``../shared/book``, found from
this file, as conftest.py finds ``../shared/data/mnist``).  Tests that need it are
marked ``requires_book`` and skip, saying why, only when it is absent.

``book_modules("common.util", "common.layers")`` imports the book's modules
(and its chapter scripts' classes) without leaving them in ``sys.modules``
(other tests may import a modified copy of ``common``); ``book_copy(dest)``
copies the repository for scripts to run on.
"""
import importlib
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BOOK_DIR = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "shared", "book"))
HAVE_BOOK = os.path.isfile(os.path.join(BOOK_DIR, "common", "layers.py"))
# the full MNIST files, gzipped as the book's dataset/mnist.py reads them:
# $FASTBP_MNIST_FULL, else beside the repository like the book (../shared/data/mnist)
MNIST_DIR = os.environ.get("FASTBP_MNIST_FULL") or os.path.normpath(
    os.path.join(HERE, os.pardir, os.pardir, "shared", "data", "mnist"))
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
HAVE_MNIST = all(os.path.isfile(os.path.join(MNIST_DIR, f)) for f in MNIST_FILES)

requires_book = pytest.mark.skipif(not HAVE_BOOK,
                                   reason=f"the book's code is not at {BOOK_DIR}")
requires_book_and_mnist = pytest.mark.skipif(
    not (HAVE_BOOK and HAVE_MNIST),
    reason=f"needs the book's code at {BOOK_DIR} and the four gzipped MNIST files "
           f"in {MNIST_DIR} (or $FASTBP_MNIST_FULL)")


def _top_level_names(directories):
    """Module names a directory on sys.path provides: its .py files and packages."""
    names = set()
    for directory in directories:
        for entry in os.listdir(directory):
            if entry.endswith(".py"):
                names.add(entry[:-3])
            elif os.path.isfile(os.path.join(directory, entry, "__init__.py")):
                names.add(entry)
    return names


def book_modules(*names, chapters=()):
    """Import the book's modules ``names`` (e.g. "common.layers", or
    "simple_convnet" with ``chapters=("ch07",)``) and return them, leaving
    ``sys.modules`` and ``sys.path`` as they were.  None for each when the
    book is absent."""
    if not HAVE_BOOK:
        return (None,) * len(names)
    directories = [BOOK_DIR] + [os.path.join(BOOK_DIR, chapter) for chapter in chapters]
    provided = _top_level_names(directories)
    owned = lambda key: key.split(".")[0] in provided  # noqa: E731
    saved = {key: mod for key, mod in sys.modules.items() if owned(key)}
    for key in saved:
        del sys.modules[key]
    saved_path = list(sys.path)       # the chapter scripts append os.pardir to it
    sys.path[:0] = directories
    try:
        return tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path[:] = saved_path
        for key in [key for key in sys.modules if owned(key)]:
            del sys.modules[key]
        sys.modules.update(saved)


def book_copy(dest, *, fastbp_layers=False, mnist=False):
    """Copy the book's repository to ``dest`` (a new directory) and return it.

    fastbp_layers: append ``from fastbp.layers import *`` to the copy's
    ``common/layers.py`` (fastbp dropped in, as README says).
    mnist: copy the four MNIST files into the copy's ``dataset/`` so its
    ``load_mnist`` works offline.
    """
    shutil.copytree(BOOK_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"),
                    copy_function=shutil.copyfile)
    for directory, _, _ in os.walk(dest):       # the original is read-only: the copy not
        os.chmod(directory, 0o755)
    if fastbp_layers:
        with open(os.path.join(dest, "common", "layers.py"), "a") as f:
            f.write("\nfrom fastbp.layers import *\n")
    if mnist:
        for name in MNIST_FILES:
            shutil.copy(os.path.join(MNIST_DIR, name), os.path.join(dest, "dataset", name))
    return dest
