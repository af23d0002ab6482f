"""The book's own code (``../shared/book``) as an oracle for the tests (a
helper module, not tests).

The book's repository sits beside fastbp's (``../shared/book`` from the
repository root, as ``conftest.py`` finds ``../shared/data/mnist``).  Tests
that need it are marked ``requires_book`` and skip, saying why, only when it
is absent.

- ``book_modules("common.util", "common.layers")`` imports the book's modules
  by name (and, with ``chapters=("ch07",)``, its chapter scripts' classes);
  ``load_book_module("common/layers.py", name, root)`` loads one file of the
  book or of a copy under a name of its own.  Neither leaves the book's
  modules in ``sys.modules``, so modules of two copies load side by side.
- ``book_copy(dest, fastbp=True)`` copies the book (the original is never
  written), optionally with fastbp dropped in the way a reader does it:
  ``from fastbp.layers import *`` appended to ``common/layers.py`` and
  ``from fastbp.optimizers import *`` to ``common/optimizer.py``.
- ``start_python``/``finish``/``run_python`` run a script in a copy.
"""
import contextlib
import importlib
import importlib.util
import os
import shutil
import subprocess
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

requires_book = pytest.mark.skipif(
    not HAVE_BOOK, reason=f"the book's code is not at {BOOK_DIR} (CI has it at ../shared/book)")
requires_book_and_mnist = pytest.mark.skipif(
    not (HAVE_BOOK and HAVE_MNIST),
    reason=f"needs the book's code at {BOOK_DIR} and the four gzipped MNIST files "
           f"in {MNIST_DIR} (or $FASTBP_MNIST_FULL)")

FASTBP_LAYERS = "\nfrom fastbp.layers import *  # fastbp dropped in\n"
FASTBP_OPTIMIZERS = "\nfrom fastbp.optimizers import *  # fastbp dropped in\n"


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


@contextlib.contextmanager
def _isolated_imports(directories):
    """Import from ``directories`` (first on sys.path) and afterwards remove
    every module they provide from ``sys.modules``, restoring whatever was
    there before under those names, and restore ``sys.path`` (the chapter
    scripts append to it)."""
    provided = _top_level_names(directories)
    owned = lambda key: key.split(".")[0] in provided  # noqa: E731
    saved = {key: mod for key, mod in sys.modules.items() if owned(key)}
    for key in saved:
        del sys.modules[key]
    saved_path = list(sys.path)
    sys.path[:0] = directories
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for key in [key for key in sys.modules if owned(key)]:
            del sys.modules[key]
        sys.modules.update(saved)


def book_modules(*names, chapters=()):
    """Import the book's modules ``names`` (e.g. "common.layers", or
    "simple_convnet" with ``chapters=("ch07",)``) and return them, leaving
    ``sys.modules`` and ``sys.path`` as they were.  None for each when the
    book is absent."""
    if not HAVE_BOOK:
        return (None,) * len(names)
    directories = [BOOK_DIR] + [os.path.join(BOOK_DIR, chapter) for chapter in chapters]
    with _isolated_imports(directories):
        return tuple(importlib.import_module(name) for name in names)


def load_book_module(relative_path, name, root=BOOK_DIR):
    """Module ``relative_path`` of the book at ``root`` (the book, or a copy
    made by ``book_copy``), loaded from its file under the name ``name``; its
    ``common.*`` imports resolve against ``root``."""
    with _isolated_imports([root]):
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, relative_path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def load_book_layers():
    """The book's own ``common/layers.py`` as a module."""
    return load_book_module("common/layers.py", "book_common_layers")


def book_copy(dest, *, fastbp=False, mnist=False, dirs=None):
    """Copy the book's repository (or only its ``dirs``) to ``dest`` and return ``dest``.

    fastbp: append the drop-in imports to the copy's ``common/layers.py`` and
    ``common/optimizer.py`` (fastbp dropped in, as README says).
    mnist: copy the four MNIST files into the copy's ``dataset/`` so the
    book's loader converts them instead of downloading.
    """
    dest = os.fspath(dest)
    ignore = shutil.ignore_patterns("__pycache__")
    if dirs is None:
        shutil.copytree(BOOK_DIR, dest, ignore=ignore, copy_function=shutil.copyfile)
    else:
        os.makedirs(dest, exist_ok=True)
        for d in dirs:
            shutil.copytree(os.path.join(BOOK_DIR, d), os.path.join(dest, d), ignore=ignore,
                            copy_function=shutil.copyfile)
    for directory, _, _ in os.walk(dest):       # the original is read-only: the copy not
        os.chmod(directory, 0o755)
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
    return {kind: book_copy(root / kind, fastbp=kind == "fastbp", mnist=HAVE_MNIST,
                            dirs=("common", "dataset", "ch06"))
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
