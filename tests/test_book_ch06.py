"""The book's chapter-6 scripts, run with fastbp dropped into a copy of the
book (``from fastbp.layers import *`` appended to ``common/layers.py``,
``from fastbp.optimizers import *`` to ``common/optimizer.py``) on the real
MNIST files, next to the book as published.  Skipped, saying why, when the
book or MNIST isn't beside the repository."""
import os
import re

import pytest

from bookcode import book_copies, book_copies_with_mnist  # noqa: F401 - fixtures
from bookcode import finish, requires_book_and_mnist, script_text, start_python

pytestmark = requires_book_and_mnist

GRADIENT_CHECK = "ch06/batch_norm_gradient_check.py"
LINE = re.compile(r"^(\w+):(\S+)$", re.M)


def differences(output):
    """{parameter: mean |backprop - numerical|} from the script's 'key:diff' lines."""
    found = {key: float(value) for key, value in LINE.findall(output)}
    assert list(found) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2",
                           "W3", "b3"], output
    return found


@pytest.mark.book_run
def test_batch_norm_gradient_check_is_no_worse_than_the_books(book_copies_with_mnist):
    """The script as published (one sample through a 784-100-100-10 net with
    batch norm), seeded, under the book's layers and under fastbp's; and the
    same check with a batch of 10 under fastbp's.

    One sample: batch norm outputs beta, so every upstream gradient is 0 and
    ReLU sits on its kink at beta2 = 0, where the central difference gives
    half the one-sided slope (the book prints ~0.05).  fastbp's loss has no
    log(y + 1e-7) epsilon, so its slope there is larger by ~1e-7 / y
    (relative ~1e-6): allowed, 1e-5 relative.  Elsewhere fastbp is exact
    where the book carries that epsilon's error (b3: 1.8e-7 in the book).
    """
    copies = book_copies_with_mnist
    cwd = {kind: os.path.join(copy, "ch06") for kind, copy in copies.items()}
    runs = {kind: start_python(cwd[kind], script_text(copies[kind], GRADIENT_CHECK, seed=0))
            for kind in ("book", "fastbp")}
    batch_of_10 = script_text(copies["fastbp"], GRADIENT_CHECK, seed=0,
                              replacements=[("x_train[:1]", "x_train[:10]"),
                                            ("t_train[:1]", "t_train[:10]")])
    runs["fastbp, batch 10"] = start_python(cwd["fastbp"], batch_of_10)
    diffs = {kind: differences(finish(proc)) for kind, proc in runs.items()}

    book, ours = diffs["book"], diffs["fastbp"]
    for key, book_diff in book.items():
        assert ours[key] <= book_diff * (1 + 1e-5), (key, ours[key], book_diff)
    assert 0.01 < ours["beta2"] < 0.1                   # the kink: both print ~0.05
    assert ours["b3"] < 1e-8 < book["b3"]               # the epsilon, gone
    assert all(value <= 1e-8 for value in diffs["fastbp, batch 10"].values()), \
        diffs["fastbp, batch 10"]
    assert diffs["fastbp, batch 10"]["W1"] > 0          # a batch of 10 has real gradients


EPOCH_LINE = re.compile(r"epoch:(\d+), train acc:([\d.]+), test acc:([\d.]+)")


@pytest.mark.parametrize("script,replacements,epochs", [
    ("ch06/overfit_dropout.py", [("epochs=301", "epochs=21")], 21),
    ("ch06/overfit_weight_decay.py", [("max_epochs = 201", "max_epochs = 21")], 21),
], ids=["overfit_dropout", "overfit_weight_decay"])
def test_overfit_scripts_run_to_the_end_with_the_books_numbers(script, replacements, epochs,
                                                                book_copies_with_mnist):
    """The scripts as published, epochs cut from 301/201 to 21 (the full runs
    take minutes; the code path is the same), seeded, MPLBACKEND=Agg: with
    fastbp dropped in they run to the end and print the accuracies of the
    book's own run with the same seed (same dropout masks and batches)."""
    copies = book_copies_with_mnist
    procs = {kind: start_python(os.path.join(copy, "ch06"),
                                script_text(copy, script, replacements, seed=0))
             for kind, copy in copies.items()}
    lines = {kind: [tuple(map(float, line)) for line in EPOCH_LINE.findall(finish(proc))]
             for kind, proc in procs.items()}
    assert len(lines["fastbp"]) == epochs, lines["fastbp"]
    assert lines["fastbp"] == lines["book"]
    assert lines["fastbp"][-1][1] > lines["fastbp"][0][1]      # train accuracy went up
