"""Dropout kernels (the book's chapter 6): the keep-mask drawn from a NumPy
bit generator and applied to x in one pass, and the product dout * mask.

Kernels only: the layer (fastbp/_ch6_layers.py) picks the stream and the
dtype.  Arrays are flat (1-D) and contiguous, of one dtype, outputs
allocated by the caller; masks are 0/1 bytes (a NumPy bool array viewed as
uint8).  The draws follow NumPy's own loops exactly (src/fb_dropout.h), one
call of the bit generator per element, holding its lock.
"""
from cython cimport floating
from libc.stdint cimport uint8_t

from . cimport _loops
from ._bitgen cimport draw_keep, open_stream
from ._loops cimport fb_dropout_stream


cdef inline int _check_lengths(Py_ssize_t n, Py_ssize_t keep, Py_ssize_t out) except -1:
    if keep != n or out != n:
        raise ValueError(f"keep, out: expected {n} elements like x, got {keep} and {out}")
    return 0


def dropout_forward(bit_generator, bint book_stream, double ratio, const floating[::1] x,
                    uint8_t[::1] keep, floating[::1] out):
    """Training-mode dropout: keep = the mask drawn from ``bit_generator`` (a
    numpy.random.BitGenerator), out = x * keep.

    book_stream: keep = next_double() > ratio, NumPy's np.random.rand stream
    (pass np.random.get_bit_generator() for the book's masks); else
    keep = (next_uint32() >> 8) > floor(ratio * 2**24), i.e.
    Generator.random(n, dtype=np.float32) > ratio.  ratio in [0, 1).
    One draw per element of x, in order.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef fb_dropout_stream stream
    _check_lengths(n, keep.shape[0], out.shape[0])
    open_stream(&stream, bit_generator, book_stream, ratio)
    if n == 0:
        return
    with bit_generator.lock:
        with nogil:
            _loops.dropout_forward(&stream, &x[0], &keep[0], &out[0], n)


def dropout_apply(const floating[::1] x, const uint8_t[::1] keep, floating[::1] out):
    """out = x * keep (dropout's backward: dx = dout * mask); a nonzero byte
    of keep counts as 1, as a NumPy bool does."""
    cdef Py_ssize_t n = x.shape[0]
    _check_lengths(n, keep.shape[0], out.shape[0])
    if n == 0:
        return
    with nogil:
        _loops.dropout_apply(&x[0], &keep[0], &out[0], n)


def dropout_keep(bit_generator, bint book_stream, double ratio, uint8_t[::1] keep):
    """keep = the mask alone, drawn as by dropout_forward."""
    cdef uint8_t *first = NULL
    if keep.shape[0] > 0:
        first = &keep[0]
    draw_keep(bit_generator, book_stream, ratio, first, keep.shape[0])
