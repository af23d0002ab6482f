"""Where the book's code is, and how the tests run it (a helper module, not tests).

The book's repository sits beside fastbp's (``../shared/book`` from the
repository root, as ``conftest.py`` finds MNIST in ``../shared/data``).  Tests
that need it are marked ``requires_book`` and skip, saying so, when it is
absent.  ``make_book_copy`` copies it into a temporary directory (the
original is never written), optionally with fastbp dropped in the way a
reader does it: ``from fastbp.layers import *`` appended to
``common/layers.py`` and ``from fastbp.optimizers import *`` to
``common/optimizer.py``.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_SHARED = Path(__file__).resolve().parents[2] / "shared"      # as conftest.py finds MNIST
BOOK_DIR = str(_SHARED / "book")
MNIST_DIR = str(_SHARED / "data" / "mnist")
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

requires_book = pytest.mark.skipif(
    not os.path.isdir(os.path.join(BOOK_DIR, "common")),
    reason=f"the book's code is not at {BOOK_DIR} (CI has it at ../shared/book)")
requires_book_and_mnist = pytest.mark.skipif(
    not (os.path.isdir(os.path.join(BOOK_DIR, "common"))
         and all(os.path.isfile(os.path.join(MNIST_DIR, f)) for f in MNIST_FILES)),
    reason=f"the book's code ({BOOK_DIR}) or the MNIST files ({MNIST_DIR}) are absent")

FASTBP_LAYERS = "\nfrom fastbp.layers import *  # fastbp dropped in\n"
FASTBP_OPTIMIZERS = "\nfrom fastbp.optimizers import *  # fastbp dropped in\n"


def load_book_module(relative_path, name, root=BOOK_DIR):
    """Module ``relative_path`` of the book at ``root`` (the book, or a copy
    made by ``make_book_copy``), loaded from its file under the name ``name``.

    Its ``common.*`` imports resolve against ``root`` and are taken out of
    ``sys.modules`` again afterwards (as is its ``sys.path.append``), so
    modules of two copies can be loaded side by side: each keeps the classes
    it imported.
    """
    saved_path, saved = list(sys.path), {k: v for k, v in sys.modules.items()
                                         if k == "common" or k.startswith("common.")}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, root)
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, relative_path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved_path
        for key in [k for k in sys.modules if k == "common" or k.startswith("common.")]:
            del sys.modules[key]
        sys.modules.update(saved)


def load_book_layers():
    """The book's own ``common/layers.py`` as a module."""
    return load_book_module("common/layers.py", "book_common_layers")


def make_book_copy(dest, *, fastbp, mnist=False, dirs=("common", "dataset", "ch06")):
    """Copy the book's ``dirs`` into ``dest`` and return ``dest``.

    fastbp: append the drop-in imports to the copy's layers and optimizers.
    mnist: copy the four MNIST files into the copy's ``dataset/`` (the book's
    loader then converts them instead of downloading).
    """
    os.makedirs(dest, exist_ok=True)
    for d in dirs:
        shutil.copytree(os.path.join(BOOK_DIR, d), os.path.join(dest, d),
                        copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pkl"))
    if fastbp:
        for path, line in (("common/layers.py", FASTBP_LAYERS),
                           ("common/optimizer.py", FASTBP_OPTIMIZERS)):
            with open(os.path.join(dest, path), "a", encoding="utf-8") as f:
                f.write(line)
    if mnist:
        for name in MNIST_FILES:
            shutil.copyfile(os.path.join(MNIST_DIR, name), os.path.join(dest, "dataset", name))
    return dest


@pytest.fixture(scope="session")
def book_copies(tmp_path_factory):
    """Two copies of the book's common/, dataset/ (with MNIST if present) and ch06/:
    ``{"book": the book as published, "fastbp": with fastbp dropped in}``."""
    root = tmp_path_factory.mktemp("book")
    mnist = all(os.path.isfile(os.path.join(MNIST_DIR, f)) for f in MNIST_FILES)
    return {kind: make_book_copy(str(root / kind), fastbp=kind == "fastbp", mnist=mnist)
            for kind in ("book", "fastbp")}


def start_python(cwd, code, *, env=None):
    """Start ``code`` with this interpreter in ``cwd`` (a book copy's chapter
    directory), one BLAS/OpenMP thread (several may run side by side),
    ``MPLBACKEND=Agg``; returns the Popen for ``finish``."""
    full_env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1",
                    OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=1800):
    """stdout of a process from ``start_python``; fails the test with its
    output when it exits with an error."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s\n{out[-3000:]}\n{err[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-6000:]}"
    return out


def run_python(cwd, code, **kwargs):
    """``finish(start_python(cwd, code, ...))``."""
    return finish(start_python(cwd, code, **kwargs))


def script_text(copy, path, replacements=(), seed=None):
    """The text of the script ``path`` of a book copy, with each (old, new) of
    ``replacements`` made (each old must occur) and ``np.random.seed(seed)``
    run first when a seed is given."""
    with open(os.path.join(copy, path), encoding="utf-8") as f:
        text = f.read()
    for old, new in replacements:
        assert old in text, f"{path} no longer contains {old!r}"
        text = text.replace(old, new)
    if seed is not None:
        text = f"import numpy as np\nnp.random.seed({seed})\n" + text
    return text


@pytest.fixture(scope="session")
def book_copies_with_mnist(book_copies):
    """``book_copies`` with the book's MNIST pickle made in both (once, side
    by side), so scripts run in parallel never race to create it."""
    procs = [start_python(os.path.join(copy, "dataset"),
                          "import mnist\nmnist.init_mnist()")
             for copy in book_copies.values()]
    for proc in procs:
        finish(proc)
    return book_copies
