"""Elementwise kernels: ReLU, sigmoid, fused softmax + cross-entropy.

Each kernel takes flat (1-D, contiguous) memoryviews or C-contiguous rows,
with outputs allocated by the caller, and calls the vectorised C loops of
src/fb_simd.h with the GIL released.  Large arrays are split into one chunk
per OpenMP thread with prange; below PARALLEL_MIN_ELEMENTS one thread runs,
since starting a team costs more than it saves.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, int64_t

from ._simd cimport *

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FB_OPENMP 1
    static int fb_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define FB_OPENMP 0
    static int fb_max_threads(void) { return 1; }
    #endif
    """
    bint FB_OPENMP
    int fb_max_threads() nogil

# Smallest array split across threads.  Measured (ReLU + sigmoid forward and
# backward, 2 threads vs 1, float64): 0.85x at 512 elements, 0.95x at 4096,
# 1.25x at 32768, 2.0x at 131072: a second thread pays from ~32k elements.
PARALLEL_MIN_ELEMENTS = 1 << 15
cdef Py_ssize_t _parallel_min = PARALLEL_MIN_ELEMENTS
cdef int _n_threads = 0      # 0: follow OpenMP (OMP_NUM_THREADS, threadpoolctl)


def openmp_enabled():
    """True when this module was compiled with OpenMP."""
    return bool(FB_OPENMP)


def simd_level():
    """The SIMD path the elementwise loops run on this CPU."""
    return fb_simd_level().decode()


def set_num_threads(int n):
    """Threads for the elementwise kernels; 0 restores the OpenMP default."""
    global _n_threads
    _n_threads = n


def get_num_threads():
    """Threads the elementwise kernels use for large arrays (1 in a serial build)."""
    if not FB_OPENMP:
        return 1
    return _n_threads if _n_threads > 0 else fb_max_threads()


def set_parallel_threshold(Py_ssize_t n):
    """Smallest array size split across threads (for benchmarks and tests)."""
    global _parallel_min
    _parallel_min = n


cdef inline int _chunks(Py_ssize_t n) noexcept nogil:
    """How many threads to use for n elements."""
    cdef int threads
    if not FB_OPENMP or n < _parallel_min:
        return 1
    threads = _n_threads if _n_threads > 0 else fb_max_threads()
    return threads if threads > 1 else 1


cdef enum Op:
    RELU_FORWARD
    RELU_BACKWARD
    SIGMOID_FORWARD
    SIGMOID_BACKWARD


cdef inline void _run_elementwise(Op op, const floating *a, const floating *b,
                                  const uint8_t *mask_in, floating *out, uint8_t *mask_out,
                                  Py_ssize_t start, Py_ssize_t length) noexcept nogil:
    """Elementwise loop `op` over elements [start, start + length)."""
    if floating is float:
        if op == RELU_FORWARD:
            fb_relu_forward_f(a + start, out + start, mask_out + start, length)
        elif op == RELU_BACKWARD:
            fb_relu_backward_f(a + start, mask_in + start, out + start, length)
        elif op == SIGMOID_FORWARD:
            fb_sigmoid_forward_f(a + start, out + start, length)
        else:
            fb_sigmoid_backward_f(a + start, b + start, out + start, length)
    else:
        if op == RELU_FORWARD:
            fb_relu_forward_d(a + start, out + start, mask_out + start, length)
        elif op == RELU_BACKWARD:
            fb_relu_backward_d(a + start, mask_in + start, out + start, length)
        elif op == SIGMOID_FORWARD:
            fb_sigmoid_forward_d(a + start, out + start, length)
        else:
            fb_sigmoid_backward_d(a + start, b + start, out + start, length)


cdef void _split_elementwise(Op op, const floating *a, const floating *b,
                             const uint8_t *mask_in, floating *out, uint8_t *mask_out,
                             Py_ssize_t n) noexcept nogil:
    """Run elementwise loop `op` over n elements, one chunk per thread.

    Inputs a, b, mask_in and outputs out, mask_out are flat arrays of n
    elements (NULL where `op` doesn't use them); n > 0.
    """
    cdef int chunk, n_chunks = _chunks(n)
    cdef Py_ssize_t start, length, per
    if n_chunks == 1:        # no parallel region: entering one costs ~0.3 us
        _run_elementwise(op, a, b, mask_in, out, mask_out, 0, n)
        return
    per = (n + n_chunks - 1) // n_chunks
    for chunk in prange(n_chunks, num_threads=n_chunks, schedule='static'):
        # assigned here, not through a pointer, so that Cython makes start and
        # length private to each thread (a helper writing them through
        # pointers left them shared: threads raced for them)
        start = min(chunk * per, n)
        length = min(per, n - start)
        if length > 0:              # a trailing chunk may be empty
            _run_elementwise(op, a, b, mask_in, out, mask_out, start, length)


cdef int _check_lengths(str kernel, Py_ssize_t n, Py_ssize_t a, Py_ssize_t b) except -1:
    """A guard under the Python-side checks: the loops trust these lengths."""
    if a != n or b != n:
        raise ValueError(f"{kernel}: expected arrays of {n} elements, got {a} and {b}")
    return 0


def relu_forward(const floating[::1] x, floating[::1] out, uint8_t[::1] mask):
    """out = where(x <= 0, 0, x); mask = (x <= 0).  All of length n."""
    _check_lengths("relu_forward", x.shape[0], out.shape[0], mask.shape[0])
    if x.shape[0] == 0:
        return
    with nogil:
        _split_elementwise(RELU_FORWARD, &x[0], <const floating *>NULL, NULL,
                           &out[0], &mask[0], x.shape[0])


def relu_backward(const floating[::1] dout, const uint8_t[::1] mask, floating[::1] dx):
    """dx = where(mask, 0, dout).  All of length n."""
    _check_lengths("relu_backward", dout.shape[0], mask.shape[0], dx.shape[0])
    if dout.shape[0] == 0:
        return
    with nogil:
        _split_elementwise(RELU_BACKWARD, &dout[0], <const floating *>NULL, &mask[0],
                           &dx[0], NULL, dout.shape[0])


def sigmoid_forward(const floating[::1] x, floating[::1] out):
    """out = 1 / (1 + exp(-x)), overflow-free.  Both of length n."""
    _check_lengths("sigmoid_forward", x.shape[0], out.shape[0], out.shape[0])
    if x.shape[0] == 0:
        return
    with nogil:
        _split_elementwise(SIGMOID_FORWARD, &x[0], <const floating *>NULL, NULL,
                           &out[0], NULL, x.shape[0])


def sigmoid_backward(const floating[::1] dout, const floating[::1] out, floating[::1] dx):
    """dx = dout * (1 - out) * out.  All of length n."""
    _check_lengths("sigmoid_backward", dout.shape[0], out.shape[0], dx.shape[0])
    if dout.shape[0] == 0:
        return
    with nogil:
        _split_elementwise(SIGMOID_BACKWARD, &dout[0], &out[0], NULL, &dx[0], NULL,
                           dout.shape[0])


def softmax_xent_labels(const floating[:, ::1] x, const int64_t[::1] labels,
                        floating[:, ::1] y, floating[::1] loss):
    """Softmax of each row of x (N, C) into y and its cross-entropy against
    class indices labels (N,) in [0, C) into loss (N,); returns loss.sum()."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1]
    cdef double total
    if n == 0:
        return 0.0
    with nogil:
        if floating is float:
            total = fb_softmax_xent_labels_f(&x[0, 0], &labels[0], &y[0, 0], &loss[0], n, c)
        else:
            total = fb_softmax_xent_labels_d(&x[0, 0], &labels[0], &y[0, 0], &loss[0], n, c)
    return total


def softmax_xent_onehot(const floating[:, ::1] x, const floating[:, ::1] t,
                        floating[:, ::1] y, floating[::1] loss):
    """As softmax_xent_labels with target weights t (N, C), one-hot or soft."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1]
    cdef double total
    if n == 0:
        return 0.0
    with nogil:
        if floating is float:
            total = fb_softmax_xent_onehot_f(&x[0, 0], &t[0, 0], &y[0, 0], &loss[0], n, c)
        else:
            total = fb_softmax_xent_onehot_d(&x[0, 0], &t[0, 0], &y[0, 0], &loss[0], n, c)
    return total


def softmax_xent_backward_labels(const floating[:, ::1] y, const int64_t[::1] labels,
                                 floating[:, ::1] dx, double scale):
    """dx = (y - onehot(labels)) * scale; y, dx (N, C), labels (N,)."""
    cdef Py_ssize_t n = y.shape[0], c = y.shape[1]
    if n == 0:
        return
    with nogil:
        if floating is float:
            fb_softmax_xent_backward_labels_f(&y[0, 0], &labels[0], &dx[0, 0], <float>scale, n, c)
        else:
            fb_softmax_xent_backward_labels_d(&y[0, 0], &labels[0], &dx[0, 0], scale, n, c)


def softmax_xent_backward_onehot(const floating[::1] y, const floating[::1] t,
                                 floating[::1] dx, double scale):
    """dx = (y - t) * scale over flat arrays of length N * C."""
    cdef Py_ssize_t n = y.shape[0]
    if n == 0:
        return
    with nogil:
        if floating is float:
            fb_softmax_xent_backward_onehot_f(&y[0], &t[0], &dx[0], <float>scale, n)
        else:
            fb_softmax_xent_backward_onehot_d(&y[0], &t[0], &dx[0], scale, n)


def first_label_out_of_range(const int64_t[::1] labels, int64_t n_classes):
    """Index of the first label outside [0, n_classes), or -1 if all fit.
    (Validation for the fused training step, cheaper than two reductions.)"""
    cdef Py_ssize_t i
    for i in range(labels.shape[0]):
        if labels[i] < 0 or labels[i] >= n_classes:
            return i
    return -1
