"""Argument checks shared by the reference and the compiled layers.

Every public entry point validates here, in Python, before any computation:
one clear error naming the argument, what was expected and what came.  The
compiled kernels never see an array these functions have not approved.
"""
import math
import numbers
import operator
import warnings

import numpy as np

# Largest dimension BLAS (32-bit integer interface) can be handed.
BLAS_INT_MAX = 2**31 - 1

# NumPy < 1.24 makes a ragged nested list an object array with this warning
# (NumPy >= 1.24 raises ValueError); np.exceptions is NumPy >= 1.25.
_RAGGED_WARNING = getattr(getattr(np, "exceptions", np), "VisibleDeprecationWarning")


def as_numeric_array(name, value):
    """``value`` as an ndarray of a real numeric dtype (bool, int, uint, float).

    Raises TypeError naming ``name`` and the dtype for object, string,
    complex, datetime and other non-real dtypes.  Never copies an ndarray.
    """
    try:
        if type(value) is np.ndarray:     # the common case: no conversion, no warning
            arr = value
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", _RAGGED_WARNING)
                arr = np.asarray(value)
    except (ValueError, TypeError, _RAGGED_WARNING) as exc:
        raise TypeError(f"{name}: expected a real numeric array, got "
                        f"{type(value).__name__} that NumPy cannot convert ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric dtype (bool, integer or "
                        f"floating), got dtype {arr.dtype}")
    return arr


def check_same_shape(name, arr, expected_shape):
    """ValueError unless ``arr.shape == expected_shape``."""
    if arr.shape != tuple(expected_shape):
        raise ValueError(f"{name}: expected shape {tuple(expected_shape)}, got {arr.shape}")


def check_called_forward(layer, attribute):
    """RuntimeError when ``backward`` comes before any ``forward``."""
    if getattr(layer, attribute) is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward: "
                           "call forward first, it stores what backward needs")


def check_blas_size(**dims):
    """ValueError if any dimension exceeds what a 32-bit BLAS index can hold."""
    for name, size in dims.items():
        if size > BLAS_INT_MAX:
            raise ValueError(f"{name}: {size} exceeds the largest size BLAS can "
                             f"index ({BLAS_INT_MAX})")


def check_affine_params(W, b):
    """Return (W, b) as arrays after checking W is (D, M) and b is (M,)."""
    W = as_numeric_array("W", W)
    b = as_numeric_array("b", b)
    if W.ndim != 2:
        raise ValueError(f"W: expected a 2-D weight matrix (D, M), got shape {W.shape}")
    if b.shape != (W.shape[1],):
        raise ValueError(f"b: expected shape ({W.shape[1]},) to match W of shape "
                         f"{W.shape}, got {b.shape}")
    return W, b


def check_affine_backward_weights(W, x2d):
    """ValueError unless W (checked by ``check_affine_params``) still has one
    row per feature of the x that ``forward`` saw: W may have been replaced
    since (the book's ``load_params`` reassigns layer attributes)."""
    if W.shape[0] != x2d.shape[1]:
        raise ValueError(f"W: expected {x2d.shape[1]} rows to match the x of the last "
                         f"forward (shape {x2d.shape}), got W of shape {W.shape}; W was "
                         "replaced since forward")


def check_original_x_shape(shape, n_elements):
    """Affine.backward's reshape of dx: ``original_x_shape`` (the forward's x
    shape, or what the caller assigned since) as a tuple of non-negative
    ints holding ``n_elements`` (N * D of the x forward kept)."""
    try:
        dims = tuple(operator.index(size) for size in shape)
    except TypeError:
        raise TypeError(f"original_x_shape: expected a tuple of ints (the shape of the "
                        f"forward's x), got {shape!r}") from None
    if not dims or min(dims) < 0 or math.prod(dims) != n_elements:
        raise ValueError(f"original_x_shape: expected the shape of an x of {n_elements} "
                         f"elements (the forward's x), got {dims}")
    return dims


def affine_input_2d(x, W):
    """x (N, D) or (N, d1, d2, ...) with d1*d2*... = D, as an (N, D) view."""
    x = as_numeric_array("x", x)
    if x.ndim < 2:
        raise ValueError(f"x: expected a batch of shape (N, {W.shape[0]}) or (N, d1, d2, ...), "
                         f"got shape {x.shape}; a single sample is x.reshape(1, -1)")
    n_features = math.prod(x.shape[1:])      # Python ints: no overflow, no NumPy call
    if n_features != W.shape[0]:
        raise ValueError(f"x: expected {W.shape[0]} features per sample to match "
                         f"W of shape {W.shape}, got {n_features} (x of shape {x.shape})")
    return x.reshape(x.shape[0], n_features)


def softmax_inputs(x, t, first_label_out_of_range=None):
    """Check logits and labels of SoftmaxWithLoss.

    Returns ``(x2d, t_checked, one_hot)``: x as (N, C); t (integer labels (N,)
    or (N, 1), or one-hot (N, C)) as int64 indices (N,)
    in [0, C) when ``one_hot`` is False (C-contiguous when
    ``first_label_out_of_range`` is given), or as an (N, C) array when True.
    ``t_checked`` is always a copy: a layer keeps it for ``backward``, and a
    change the caller makes to ``t`` in between must not reach the kernels
    (they index with the labels unchecked).
    A single sample (x of shape (C,), t a scalar or (C,)) is a batch of 1.
    ``first_label_out_of_range(labels, C)``, if given, is a faster range check
    (the compiled one): index of the first int64 label outside [0, C), or -1.
    """
    x = as_numeric_array("x", x)
    t = as_numeric_array("t", t)
    if x.ndim == 1:
        x = x.reshape(1, -1)
        t = t.reshape(1, -1) if t.ndim == 1 and t.shape[0] == x.shape[1] and x.shape[1] != 1 \
            else t.reshape(1)
    if x.ndim != 2:
        raise ValueError(f"x: expected logits of shape (N, C) or (C,), got shape {x.shape}")
    n, c = x.shape
    if n == 0:
        raise ValueError("x: expected at least one sample, got an empty batch of shape "
                         f"{x.shape} (the mean loss over no samples is undefined)")
    if c == 0:
        raise ValueError(f"x: expected at least one class, got shape {x.shape}")
    labels, one_hot = class_labels("t", t, n, c, "x", x.shape, first_label_out_of_range)
    return x, labels, one_hot


def class_labels(name, t, n, n_classes, x_name, x_shape, first_label_out_of_range=None):
    """The labels ``t`` of n samples over ``n_classes`` classes, checked as
    ``SoftmaxWithLoss`` checks them (``softmax_inputs``; errors name ``name``
    and say that n comes from ``x_name`` of shape ``x_shape``: formatted only
    on error, as this runs on every loss).  Returns ``(labels, one_hot)``:
    a C-contiguous copy, int64 (n,) in [0, n_classes) or (n, n_classes)."""
    c = n_classes
    if type(t) is not np.ndarray or t.dtype.kind not in "biuf":
        t = as_numeric_array(name, t)
    t = column_labels_as_vector(t, c)
    if t.ndim == 2 and t.shape == (n, c):
        return np.array(t, order="C"), True
    if t.ndim != 1:
        raise ValueError(f"{name}: expected integer labels of shape ({n},) or one-hot labels "
                         f"of shape ({n}, {c}), got shape {t.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels of shape ({n},), got dtype "
                        f"{t.dtype}; one-hot labels must have shape ({n}, {c})")
    if t.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels to match {x_name} of shape {x_shape}, "
                         f"got {t.shape[0]}")
    if first_label_out_of_range is not None:
        labels = np.array(t, dtype=np.int64, order="C")   # uint64 >= 2**63 turn negative
        index = first_label_out_of_range(labels, c)
        bad = None if index < 0 else int(t[index])
        if bad is not None:
            raise ValueError(f"{name}: expected labels in [0, {c - 1}] for {c} classes, "
                             f"got {bad}")
    else:
        labels = t.astype(np.int64)
        check_labels_in_range(t, c, name)
    return labels, False


def column_labels_as_vector(t, n_classes):
    """Integer labels of shape (N, 1) as a (N,) view when there are at least
    two classes (the book's ``ch07/gradient_check.py`` passes ``[[1]]``); with
    one class an (N, 1) array is one-hot.  Anything else comes back unchanged
    for the caller's own shape checks (float (N, 1) labels stay refused)."""
    if t.ndim == 2 and t.shape[1] == 1 and n_classes > 1 and t.dtype.kind in "iu":
        return t.reshape(t.shape[0])
    return t


def check_nonempty_batch(x):
    """ValueError for a batch of no samples (no mean loss exists over it)."""
    if np.ndim(x) >= 1 and np.shape(x)[0] == 0:
        raise ValueError(f"x: expected at least one sample, got an empty batch of shape "
                         f"{np.shape(x)}")


def scalar_dout(dout):
    """The upstream gradient of a scalar loss: a real number (or 0-d array)."""
    arr = as_numeric_array("dout", dout)
    if arr.ndim != 0:
        raise ValueError(f"dout: expected a scalar (the gradient of the mean loss), got an "
                         f"array of shape {arr.shape}")
    return dout if isinstance(dout, (int, float, np.number)) else arr[()]


def check_labels_in_range(t, n_classes, name="t"):
    """ValueError unless integer labels ``t`` lie in [0, n_classes)."""
    if t.size:
        low, high = int(t.min()), int(t.max())
        bad = low if low < 0 else high if high >= n_classes else None
        if bad is not None:
            raise ValueError(f"{name}: expected labels in [0, {n_classes - 1}] for "
                             f"{n_classes} classes, got {bad}")


def check_positive_number(name, value):
    """A real, finite, non-negative hyperparameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name}: expected a finite non-negative number, got {value!r}")
    return float(value)


def check_unit_interval(name, value, *, include_one):
    """A real number in [0, 1] (``include_one``) or [0, 1), as a Python float;
    ValueError naming the interval for anything else (NaN, bool, str, ...)."""
    inside = (not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
              and 0 <= value and (value <= 1 if include_one else value < 1))
    if not inside:
        bound = "[0, 1]" if include_one else "[0, 1)"
        raise ValueError(f"{name}: expected a number in {bound}, got {value!r}")
    return float(value)


def check_called_training_forward(layer, attribute):
    """RuntimeError when ``backward`` comes before any training-mode forward
    (``forward(x, train_flg=True)`` stores what ``backward`` needs; a
    test-mode forward stores nothing)."""
    if getattr(layer, attribute) is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before a training-mode "
                           "forward: call forward(x, train_flg=True) first, it stores what "
                           "backward needs")


def batchnorm_input_2d(x):
    """BatchNormalization's input as an (N, D) array (a view when possible).

    x: (N, D), or (N, C, H, W) flattened per sample to D = C*H*W (the book
    normalises every (c, h, w) position of an image separately).
    """
    x = as_numeric_array("x", x)
    if x.ndim not in (2, 4):
        raise ValueError(f"x: expected a 2-D batch (N, D) or a 4-D batch (N, C, H, W), "
                         f"got shape {x.shape}")
    if x.ndim == 2:
        return x
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def check_batchnorm_params(gamma, beta, x_shape=None):
    """``(gamma, beta)`` as arrays of one shape (D,); with ``x_shape``, D must be
    the number of features per sample of an x of that shape."""
    gamma = check_batchnorm_gamma(gamma, x_shape)
    beta = as_numeric_array("beta", beta)
    if beta.shape != gamma.shape:
        raise ValueError(f"beta: expected shape {gamma.shape} to match gamma, got {beta.shape}")
    return gamma, beta


def check_batchnorm_gamma(gamma, x_shape=None):
    """gamma as an array (D,); with ``x_shape``, D must be the number of
    features per sample of an x of that shape.  (Backward reads gamma alone.)"""
    gamma = as_numeric_array("gamma", gamma)
    if gamma.ndim != 1:
        raise ValueError(f"gamma: expected a 1-D array of per-feature scales, shape (D,), "
                         f"got shape {gamma.shape}")
    if x_shape is not None:
        n_features = math.prod(x_shape[1:])
        if gamma.shape[0] != n_features:
            per = (f"C*H*W = {'*'.join(map(str, x_shape[1:]))}: one per (c, h, w) position, "
                   "as the book flattens each sample" if len(x_shape) == 4 else "one per feature")
            raise ValueError(f"gamma: expected shape ({n_features},) for x of shape {x_shape} "
                             f"({per}), got {gamma.shape}")
    return gamma


def check_running_statistic(name, value, n_features):
    """A running mean or variance: None (not created yet) or an array (D,)."""
    if value is None:
        return None
    value = as_numeric_array(name, value)
    if value.shape != (n_features,):
        raise ValueError(f"{name}: expected shape ({n_features},), one entry per feature of "
                         f"x, got {value.shape}")
    return value
