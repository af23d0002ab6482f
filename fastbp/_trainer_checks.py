"""``Trainer``'s data, checked before the first step: every problem is one
error naming the caller's array (``x_test``, ``t_train``...) and its shape,
not a batch's or a prediction block's halfway through training."""
import math

import numpy as np

from . import _checks

__all__ = ["check_training_data"]


def network_input(network):
    """What one sample of ``network`` is: ``("shape", (C, H, W))`` for a
    convnet (``input_dim``), ``("features", D)`` for an MLP (``input_size``,
    or the rows of a 2-D ``params['W1']`` as in the book's own nets), or
    None when the network doesn't say."""
    input_dim = getattr(network, "input_dim", None)
    if input_dim is not None:
        return "shape", tuple(int(d) for d in input_dim)
    input_size = getattr(network, "input_size", None)
    if input_size is not None:
        return "features", int(input_size)
    W1 = getattr(network, "params", {}).get("W1") if isinstance(
        getattr(network, "params", None), dict) else None
    if isinstance(W1, np.ndarray) and W1.ndim == 2:
        return "features", W1.shape[0]
    return None


def network_classes(network):
    """The number of classes ``network`` predicts (``output_size``, or the
    columns of the last 2-D weight), or None when it doesn't say."""
    output_size = getattr(network, "output_size", None)
    if output_size is not None:
        return int(output_size)
    sizes = getattr(network, "_sizes", None)
    return int(sizes[-1]) if sizes else None


def _check_samples(name, x, spec):
    x = _checks.as_numeric_array(name, x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch of samples, got shape {x.shape}")
    if spec is None:
        return x
    kind, expected = spec
    sample = x.shape[1:]
    if kind == "shape" and sample != expected:
        raise ValueError(f"{name}: expected samples of shape {expected} (the network's "
                         f"input_dim), got {sample} ({name} of shape {x.shape})")
    if kind == "features" and (not sample or math.prod(sample) != expected):
        raise ValueError(f"{name}: expected {expected} features per sample (the network's "
                         f"input size), got {math.prod(sample) if sample else 'none'} "
                         f"({name} of shape {x.shape})")
    return x


def _check_labels(name, t, x_name, x, n_classes):
    t = _checks.as_numeric_array(name, t)
    if n_classes is None:
        if t.ndim < 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: expected {x.shape[0]} labels to match {x_name} of "
                             f"shape {x.shape}, got shape {t.shape}")
        return t
    _checks.class_labels(name, t, x.shape[0], n_classes, x_name, x.shape)
    return t


def check_training_data(network, x_train, t_train, x_test, t_test):
    """The four arrays (as ndarrays, not copied) after checking them against
    each other and ``network``: non-empty real arrays; samples of the shape
    or feature count the network takes, x_test's like x_train's; labels as
    ``loss`` takes them (integers (N,) or (N, 1) in [0, classes), or one-hot
    (N, classes)), one per sample.  TypeError/ValueError naming the array."""
    spec = network_input(network)
    n_classes = network_classes(network)
    x_train = _check_samples("x_train", x_train, spec)
    x_test = _check_samples("x_test", x_test, spec)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"x_test: expected samples of shape {x_train.shape[1:]} like "
                         f"x_train's (x_train of shape {x_train.shape}), got "
                         f"{x_test.shape[1:]} (x_test of shape {x_test.shape})")
    t_train = _check_labels("t_train", t_train, "x_train", x_train, n_classes)
    t_test = _check_labels("t_test", t_test, "x_test", x_test, n_classes)
    return x_train, t_train, x_test, t_test
