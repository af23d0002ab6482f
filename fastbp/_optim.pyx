"""Fused optimizer updates: one pass over each parameter array.

Each kernel updates ``param`` (and the optimizer's state arrays) in place
from ``grad``, element by element, with the book's formulas in the book's
order of operations.  Flat contiguous arrays of one dtype; the Python side
(fastbp/optimizers.py) validates and falls back to NumPy otherwise.
"""
from cython cimport floating
from libc.math cimport sqrt

cdef double EPS = 1e-7     # the book's denominator guard


cdef int _check_lengths(str kernel, Py_ssize_t n, Py_ssize_t a, Py_ssize_t b=-1,
                        Py_ssize_t c=-1) except -1:
    """A guard under the Python-side checks (the state arrays can be replaced
    between updates): the loops index every array up to param's length."""
    if a != n or (b >= 0 and b != n) or (c >= 0 and c != n):
        raise ValueError(f"{kernel}: expected arrays of {n} elements, got "
                         f"{', '.join(str(k) for k in (a, b, c) if k >= 0)}")
    return 0


def sgd(floating[::1] param, const floating[::1] grad, double lr):
    """param -= lr * grad"""
    cdef Py_ssize_t i
    cdef floating lr_ = <floating>lr
    _check_lengths("sgd", param.shape[0], grad.shape[0])
    with nogil:
        for i in range(param.shape[0]):
            param[i] -= lr_ * grad[i]


def momentum(floating[::1] param, const floating[::1] grad, floating[::1] v,
             double lr, double momentum):
    """v = momentum * v - lr * grad; param += v"""
    cdef Py_ssize_t i
    cdef floating lr_ = <floating>lr, m = <floating>momentum
    _check_lengths("momentum", param.shape[0], grad.shape[0], v.shape[0])
    with nogil:
        for i in range(param.shape[0]):
            v[i] = v[i] * m - lr_ * grad[i]
            param[i] += v[i]


def nesterov(floating[::1] param, const floating[::1] grad, floating[::1] v,
             double lr, double momentum):
    """param += momentum**2 * v - (1 + momentum) * lr * grad (v of the previous
    step); then v = momentum * v - lr * grad"""
    cdef Py_ssize_t i
    cdef floating lr_ = <floating>lr, m = <floating>momentum
    cdef floating m2 = <floating>(momentum * momentum)
    cdef floating step = <floating>((1 + momentum) * lr)
    _check_lengths("nesterov", param.shape[0], grad.shape[0], v.shape[0])
    with nogil:
        for i in range(param.shape[0]):
            param[i] = (param[i] + m2 * v[i]) - step * grad[i]
            v[i] = v[i] * m - lr_ * grad[i]


def adagrad(floating[::1] param, const floating[::1] grad, floating[::1] h, double lr):
    """h += grad**2; param -= lr * grad / (sqrt(h) + 1e-7)"""
    cdef Py_ssize_t i
    cdef floating lr_ = <floating>lr, eps = <floating>EPS
    _check_lengths("adagrad", param.shape[0], grad.shape[0], h.shape[0])
    with nogil:
        for i in range(param.shape[0]):
            h[i] += grad[i] * grad[i]
            param[i] -= lr_ * grad[i] / (sqrt(h[i]) + eps)


def rmsprop(floating[::1] param, const floating[::1] grad, floating[::1] h,
            double lr, double decay_rate):
    """h = decay * h + (1 - decay) * grad**2; param -= lr * grad / (sqrt(h) + 1e-7)"""
    cdef Py_ssize_t i
    cdef floating lr_ = <floating>lr, eps = <floating>EPS
    cdef floating decay = <floating>decay_rate, keep = <floating>(1 - decay_rate)
    _check_lengths("rmsprop", param.shape[0], grad.shape[0], h.shape[0])
    with nogil:
        for i in range(param.shape[0]):
            h[i] = h[i] * decay + keep * grad[i] * grad[i]
            param[i] -= lr_ * grad[i] / (sqrt(h[i]) + eps)


def adam(floating[::1] param, const floating[::1] grad, floating[::1] m,
         floating[::1] v, double lr_t, double beta1, double beta2):
    """m += (1 - beta1) * (grad - m); v += (1 - beta2) * (grad**2 - v);
    param -= lr_t * m / (sqrt(v) + 1e-7)"""
    cdef Py_ssize_t i
    cdef floating lr_ = <floating>lr_t, eps = <floating>EPS
    cdef floating a1 = <floating>(1 - beta1), a2 = <floating>(1 - beta2)
    _check_lengths("adam", param.shape[0], grad.shape[0], m.shape[0], v.shape[0])
    with nogil:
        for i in range(param.shape[0]):
            m[i] += a1 * (grad[i] - m[i])
            v[i] += a2 * (grad[i] * grad[i] - v[i])
            param[i] -= lr_ * m[i] / (sqrt(v[i]) + eps)
