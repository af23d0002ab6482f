"""Activation and loss functions of chapters 3-5, in plain NumPy.

All the names of the book's ``common/functions.py`` are here, plus
``softmax_cross_entropy`` and ``labels_to_indices``.

These are the book's formulas with two numerical fixes: ``sigmoid`` never
overflows (it only ever exponentiates non-positive numbers) and ``softmax``
subtracts the row maximum.  ``softmax_cross_entropy`` computes the loss from
log-softmax (log-sum-exp), which is what the ``SoftmaxWithLoss`` layer uses.

Every function keeps the floating dtype of its input: float32 in, float32 out.
"""
import numpy as np

from .. import _checks

__all__ = ["sigmoid", "sigmoid_grad", "relu", "relu_grad", "softmax",
           "cross_entropy_error", "softmax_cross_entropy", "labels_to_indices",
           "identity_function", "step_function", "sum_squared_error", "mean_squared_error",
           "softmax_loss"]


def _as_float_array(x, name="x"):
    """``x`` as an ndarray with a floating dtype (integers become float64);
    TypeError for non-numeric dtypes (object, str, complex)."""
    x = _checks.as_numeric_array(name, x)
    if x.dtype.kind in "biu":
        return x.astype(np.float64)
    return x


def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, without overflow.

    For x >= 0 it is 1 / (1 + exp(-x)); for x < 0 it is exp(x) / (1 + exp(x)).
    Both only exponentiate -|x| <= 0, so nothing overflows; NaN stays NaN,
    +inf gives 1 and -inf gives 0.
    """
    x = _as_float_array(x)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


def sigmoid_grad(x):
    """Derivative of ``sigmoid`` at x: s * (1 - s)."""
    s = sigmoid(x)
    return (s.dtype.type(1) - s) * s      # float32 stays float32 on NumPy 1 too (0-d x)


def relu(x):
    """max(x, 0) elementwise (NaN stays NaN, as in ``np.maximum``)."""
    return np.maximum(_checks.as_numeric_array("x", x), 0)


def relu_grad(x):
    """1 where x > 0, else 0 (the gradient at exactly 0 is 0)."""
    x = _checks.as_numeric_array("x", x)
    return (x > 0).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def softmax(x):
    """Softmax over the last axis, shifted by the row maximum.

    x: (C,) or (N, C) floating array; returns the same shape and dtype.
    """
    x = _as_float_array(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"x: expected logits with at least one class on the last axis, "
                         f"got shape {x.shape}")
    with np.errstate(invalid="ignore"):   # inf - inf in a row of infinities: NaN row
        shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def labels_to_indices(t, n_classes):
    """Class indices (N,) int64 from integer labels (N,) or one-hot (N, C)."""
    t = np.asarray(t)
    if t.ndim == 2 and t.shape[1] == n_classes:
        return t.argmax(axis=1)
    return t.astype(np.int64, copy=False)


def cross_entropy_error(y, t):
    """The book's cross-entropy of probabilities ``y`` against labels ``t``.

    y: (C,) or (N, C) probabilities; t: integer labels (N,) or (N, 1), or
    one-hot (N, C).  Returns the mean over the batch of -log(y[t] + 1e-7), as
    the book defines it (use ``softmax_cross_entropy`` on logits for a loss that
    stays exact for confident predictions).
    """
    y = _as_float_array(y, "y")
    t = _checks.as_numeric_array("t", t)
    if y.ndim == 1:      # one sample: a one-hot (C,) or a single label
        t = t.reshape(1, t.size) if t.size == y.size else t.reshape(-1)
        y = y.reshape(1, y.size)
    t = _checks.column_labels_as_vector(t, y.shape[1])
    if t.size == y.size and t.ndim == 2:
        t = t.argmax(axis=1)
    if t.dtype.kind not in "iu" or t.shape != (y.shape[0],):
        raise ValueError(f"t: expected {y.shape[0]} integer labels or one-hot labels of "
                         f"shape {y.shape}, got dtype {t.dtype} and shape {t.shape}")
    _checks.check_labels_in_range(t, y.shape[1])
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def softmax_cross_entropy(x, t):
    """Probabilities and per-sample loss from logits, via log-sum-exp.

    x: (N, C) logits; t: integer labels (N,) or (N, 1), or one-hot/soft
    targets (N, C).  Returns ``(y, loss)`` with y = softmax(x) (N, C) and loss (N,) =
    logsumexp(x) - x[t] (or sum_j t_j * (logsumexp(x) - x_j) for one-hot).
    Terms whose target weight is 0 are skipped, so a -inf logit on a
    non-target class costs nothing instead of producing NaN.
    Labels are checked: ValueError for shapes or values that don't fit x.
    """
    x, t, _ = _checks.softmax_inputs(x, t)
    x = _as_float_array(x)
    row_max = np.max(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):   # inf - inf in a row of infinities: NaN row
        shifted = x - row_max
    e = np.exp(shifted)
    sum_e = np.sum(e, axis=1, keepdims=True)
    y = e / sum_e
    log_sum = np.log(sum_e)
    t = np.asarray(t)
    if t.ndim == 2:
        neg_log_p = log_sum - shifted
        with np.errstate(invalid="ignore"):   # 0 * inf where t == 0: dropped below
            weighted = np.where(t != 0, t * neg_log_p, 0)
        loss = np.sum(weighted, axis=1)
    else:
        rows = np.arange(x.shape[0])
        loss = log_sum[:, 0] - shifted[rows, t]
    return y, loss.astype(x.dtype, copy=False)


def identity_function(x):
    """The identity, the output activation of regression (chapter 3): returns x itself."""
    return x


def step_function(x):
    """1 where x > 0, else 0, as an integer array (NumPy's default int), as in the book.

    NaN gives 0.
    """
    x = _checks.as_numeric_array("x", x)
    return np.array(x > 0, dtype=int)


def sum_squared_error(y, t):
    """0.5 * sum((y - t)**2) over every element (the book's "sum of squares" loss).

    y: outputs, any shape; t: targets (e.g. one-hot) of the same shape.
    Returns a NumPy scalar of the result dtype (float32 for float32 y and t;
    integers and bools compute in float64).  Not divided by the batch size,
    as in the book.
    """
    y = _as_float_array(y, "y")
    t = _as_float_array(t, "t")
    if t.shape != y.shape:
        raise ValueError(f"t: expected targets of y's shape {y.shape} (e.g. one-hot), got "
                         f"shape {t.shape}")
    total = np.sum((y - t) ** 2)
    return total.dtype.type(0.5) * total  # a float32 sum stays float32 on NumPy 1 too


# The book's chapter-4 text calls the same loss mean_squared_error (its
# common/functions.py calls it sum_squared_error): 0.5 * the sum, no mean.
mean_squared_error = sum_squared_error


def softmax_loss(X, t):
    """Mean cross-entropy of softmax(X) against labels t, as a Python float.

    X: logits (N, C) or (C,); t: integer labels (N,) or one-hot (N, C).
    The book composes ``cross_entropy_error(softmax(X), t)``, i.e. log(y + 1e-7);
    here the loss comes from log-softmax, exact also for confident
    predictions (as ``SoftmaxWithLoss``; README, deliberate difference 3).
    """
    _, per_sample = softmax_cross_entropy(X, t)
    return float(np.mean(per_sample, dtype=np.float64))
