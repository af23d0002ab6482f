"""Numerical differentiation: the book's central difference."""
import numpy as np

__all__ = ["numerical_gradient"]


def numerical_gradient(f, x, h=1e-4):
    """Central-difference gradient of the scalar function ``f`` at ``x``.

    Each entry of ``x`` (a floating ndarray, changed in place and restored)
    is moved by +h and -h; the gradient (same shape and dtype as x) is
    (f(x+h) - f(x-h)) / 2h.  ``f`` is called with ``x`` as its argument, as in
    the book (networks ignore the argument and read their own parameters).

    An integer ``x`` raises TypeError: moving an integer by 1e-4 is a no-op,
    and the book silently returns a wrong (integer) gradient.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a floating numpy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected a floating dtype, got {x.dtype}; "
                        "convert with x.astype(np.float64)")
    grad = np.empty_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        original = x[idx]
        x[idx] = original + h
        f_plus = f(x)
        x[idx] = original - h
        f_minus = f(x)
        grad[idx] = (f_plus - f_minus) / (2 * h)
        x[idx] = original
        it.iternext()
    return grad
