"""The book's chapter 7-8 programs as clients, on a copy of ``../shared/book``:

* ``ch07/gradient_check.py`` with fastbp dropped in prints, for every
  parameter, a difference no larger than the book's own run with the same seed;
* the book's shipped weights (``ch07/params.pkl``, ``ch08/deep_convnet_params.pkl``)
  in fastbp's networks (their compiled predict) predict the 10,000 MNIST test
  images exactly as the book's own networks do, image for image;
* ``ch08/misclassified_mnist.py`` with fastbp dropped in prints the book's
  accuracy and misclassified images;
* a fused DeepConvNet step allocates less than the book's ``gradient()``.

The book's own predictions run in a subprocess started once per module, on
one BLAS thread, while fastbp computes its own on the other core.
"""
import os
import re
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastbp.networks as fast_networks
import fastbp.reference.convnets as ref_convnets
from conftest import PURE
from bookcode import (MNIST_DIR, book_copy, book_modules, requires_book, requires_book_and_mnist,
                      run_python, script_text)
from fastbp.optimizers import SGD

# warnings are errors in the scripts too, except FASTBP_PURE=1's notice (as in pytest's config)
PURE_NOTICE = "ignore:fastbp is running on its pure-NumPy reference:RuntimeWarning"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_gradient_check(ch07, seed):
    """``{param: mean |numerical - backprop|}`` printed by the book's script."""
    code = (f"import numpy as np, runpy; np.random.seed({seed}); "
            "runpy.run_path('gradient_check.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-W", "error", "-W", PURE_NOTICE, "-c", code], cwd=ch07,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **ONE_THREAD})
    assert done.returncode == 0, done.stderr
    printed = dict(line.split() for line in done.stdout.splitlines())
    return {key: float(value) for key, value in printed.items()}


@requires_book
def test_book_gradient_check_with_fastbp_is_no_worse_than_the_books(tmp_path):
    """The book's own differences are dominated by max pooling's kinks (up to
    1e-4 where a perturbation crosses one) and its loss, log(y + 1e-7),
    which its backward doesn't differentiate; fastbp's loss is log-softmax."""
    book = book_copy(tmp_path / "book")
    dropped_in = book_copy(tmp_path / "fastbp", fastbp=True)
    for seed in (0, 1, 2):
        theirs = run_gradient_check(os.path.join(book, "ch07"), seed)
        ours = run_gradient_check(os.path.join(dropped_in, "ch07"), seed)
        assert list(ours) == list(theirs) == ["W1", "b1", "W2", "b2", "W3", "b3"]
        for key in theirs:
            assert ours[key] <= theirs[key], (seed, key, ours[key], theirs[key])
        # the smooth parts (the affine layers' biases) are far more exact than the book's
        assert ours["b3"] < theirs["b3"] / 100


# ---------------------------------------------------------------------------
# The shipped weights
# ---------------------------------------------------------------------------
BOOK_PREDICTIONS = '''\
"""The book's shipped networks on the MNIST test images (as ch08/misclassified_mnist.py)."""
import os, sys
import numpy as np
root = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [root, os.path.join(root, "ch07"), os.path.join(root, "ch08")]
from dataset.mnist import load_mnist
from simple_convnet import SimpleConvNet
from deep_convnet import DeepConvNet

(_, _), (x_test, t_test) = load_mnist(flatten=False)

def save(name, predict):
    classes = [np.argmax(predict(x_test[i:i + 100]), axis=1) for i in range(0, len(x_test), 100)]
    np.save(os.path.join(root, name + ".tmp.npy"), np.concatenate(classes))
    os.replace(os.path.join(root, name + ".tmp.npy"), os.path.join(root, name + ".npy"))

simple = SimpleConvNet()
simple.load_params(os.path.join(root, "ch07", "params.pkl"))
save("simple", simple.predict)
deep = DeepConvNet()
deep.load_params(os.path.join(root, "ch08", "deep_convnet_params.pkl"))
save("deep", lambda x: deep.predict(x, train_flg=False))
'''


class BookPredictions:
    """The book's predictions, computed by a subprocess started at once."""

    def __init__(self, root):
        self.root = root
        script = os.path.join(root, "predict_shipped.py")
        with open(script, "w") as f:
            f.write(BOOK_PREDICTIONS)
        self.process = subprocess.Popen([sys.executable, script], cwd=root,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**os.environ, **ONE_THREAD})

    def get(self, name, timeout=1800):
        path = os.path.join(self.root, name + ".npy")
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.process.poll() is not None and not os.path.exists(path):
                raise AssertionError("the book's predictions failed:\n"
                                     + self.process.stderr.read().decode())
            if time.monotonic() > deadline:
                raise AssertionError(f"the book's predictions took over {timeout} s")
            time.sleep(0.2)
        return np.load(path)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture(scope="module")
def book_predictions(tmp_path_factory):
    predictions = BookPredictions(book_copy(tmp_path_factory.mktemp("shipped") / "book",
                                            mnist=True))
    yield predictions
    predictions.close()


@pytest.fixture(scope="module")
def mnist_test():
    from fastbp.datasets import load_mnist
    (_, _), (x_test, t_test) = load_mnist(path=MNIST_DIR, flatten=False, download=False)
    return x_test, t_test


def predicted_classes(predict, x):
    with threadpool_limits(1):          # the book runs on the other core
        return np.concatenate([np.argmax(predict(x[i:i + 100]), axis=1)
                               for i in range(0, len(x), 100)])


@requires_book_and_mnist
@pytest.mark.book_run
@pytest.mark.parametrize("name,params_file", [("SimpleConvNet", "ch07/params.pkl"),
                                              ("DeepConvNet", "ch08/deep_convnet_params.pkl")])
def test_shipped_weights_predict_as_the_book(name, params_file, book_predictions, mnist_test):
    x_test, t_test = mnist_test
    path = os.path.join(book_predictions.root, params_file)
    net = getattr(fast_networks, name)(seed=0)
    net.load_params(path)
    ours = predicted_classes(net.predict, x_test)                  # all 10,000 images
    reference = getattr(ref_convnets, name)(seed=1)
    reference.load_params(path)
    first = predicted_classes(reference.predict, x_test[:1000])     # the oracle, on 1,000
    theirs = book_predictions.get("simple" if name == "SimpleConvNet" else "deep")
    assert theirs.shape == (10000,)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(first, theirs[:1000])
    with threadpool_limits(1):
        accuracy = net.accuracy(x_test[:1000], t_test[:1000])
    assert accuracy == np.mean(theirs[:1000] == t_test[:1000])


# ---------------------------------------------------------------------------
# Memory: a fused DeepConvNet step against the book's gradient()
# ---------------------------------------------------------------------------
def traced_peak(call):
    """Bytes allocated at the peak of ``call()`` above what was allocated
    before (tracemalloc follows NumPy's array data)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@requires_book
@pytest.mark.skipif(PURE, reason="FASTBP_PURE=1: no fused step, the claim is the compiled one's")
def test_deep_convnet_step_peaks_below_the_books_gradient():
    """Batch 100, float64, the first step (its buffers allocated in it): the
    book keeps every layer's im2col (221 MB) and more; fastbp's step keeps
    activations and gradients only, the convolutions working block by block
    (measured: ~85 MB against ~380 MB)."""
    (book_deep,) = book_modules("deep_convnet", chapters=("ch08",))
    rng = np.random.default_rng(0)
    x, t = rng.random((100, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 100)
    book = book_deep.DeepConvNet()
    ours = fast_networks.DeepConvNet(seed=0)
    with threadpool_limits(1):
        book_peak = traced_peak(lambda: book.gradient(x, t))
        our_peak = traced_peak(lambda: ours.train_step(x, t, SGD(lr=0.01)))
    assert our_peak <= book_peak, (our_peak, book_peak)


@requires_book_and_mnist
def test_misclassified_mnist_with_fastbp_dropped_in(book_predictions, mnist_test, tmp_path):
    """The book's ch08/misclassified_mnist.py, run on a copy of the book with
    fastbp dropped in: the book's DeepConvNet on fastbp's layers prints the
    accuracy and the first misclassified images of the book's own run."""
    copy = book_copy(tmp_path / "fastbp", fastbp=True, mnist=True,
                     dirs=("common", "dataset", "ch08"))
    out = run_python(os.path.join(copy, "ch08"), script_text(copy, "ch08/misclassified_mnist.py"))
    accuracy = float(re.search(r"test accuracy:([\d.]+)", out).group(1))
    _, t_test = mnist_test
    theirs = book_predictions.get("deep")
    assert accuracy == np.mean(theirs == t_test)
    printed = out.split("{view index: (label, inference), ...}")[1]
    pairs = [tuple(map(int, p)) for p in re.findall(r"\((?:np\.\w+\()?(\d+)\)?, "
                                                    r"(?:np\.\w+\()?(\d+)\)?\)", printed)]
    wrong = np.flatnonzero(theirs != t_test)[:20]
    assert pairs == [(int(t_test[i]), int(theirs[i])) for i in wrong]
