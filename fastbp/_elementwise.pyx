"""Elementwise kernels: ReLU, sigmoid, their gradients, fused softmax +
cross-entropy.

Each kernel takes flat (1-D, contiguous) memoryviews or C-contiguous rows of
one dtype (float32 or float64: the Python side picks the specialisation),
with outputs allocated by the caller, and calls its C loop (src/fb_loops.h,
through the typed wrappers of _loops.pxd) with the GIL released.  The flat
kernels split large arrays into one chunk per OpenMP thread with prange;
below PARALLEL_MIN_ELEMENTS one thread runs, since starting a team costs
more than it saves.
"""
import os

from cython.parallel cimport prange
from cython cimport floating
from libc.stdint cimport uint8_t, int64_t

from . cimport _loops

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
cdef int _n_threads = 0      # 0: the default (_default_threads)
# The default is one thread unless OMP_NUM_THREADS asks for OpenMP's (then
# threadpoolctl can lower it).  A parallel region leaves libgomp's worker
# spinning for milliseconds on the core that a threaded BLAS call next needs:
# the book's ch06/batch_norm_test.py with fastbp dropped in took 38-40 s with
# OpenMP's default of 2 threads on 2 cores, 11 s with one (the book: 15-17 s).
cdef bint _follow_openmp = "OMP_NUM_THREADS" in os.environ


def openmp_enabled():
    """True when this module was compiled with OpenMP."""
    return bool(FB_OPENMP)


def simd_level():
    """The SIMD path the elementwise loops run on this CPU."""
    return _loops.fb_simd_level().decode()


def compiler():
    """The C compiler that built the loops, e.g. 'GCC 12.2.0' or 'Clang 14.0.6'."""
    return _loops.fb_compiler().decode().strip()


def set_num_threads(int n):
    """Threads for the elementwise kernels; 0 restores the default (one, or
    OpenMP's count when OMP_NUM_THREADS was set at import)."""
    global _n_threads
    _n_threads = n


cdef inline int _threads() noexcept nogil:
    """Threads the elementwise kernels use for large arrays."""
    if not FB_OPENMP:
        return 1
    if _n_threads > 0:
        return _n_threads
    return fb_max_threads() if _follow_openmp else 1


def get_num_threads():
    """Threads the elementwise kernels use for large arrays (1 in a serial build)."""
    return _threads()


def set_parallel_threshold(Py_ssize_t n):
    """Smallest array size split across threads (for benchmarks and tests)."""
    global _parallel_min
    _parallel_min = n


cdef inline int _chunks(Py_ssize_t n) noexcept nogil:
    """How many threads to use for n elements."""
    cdef int threads
    if n < _parallel_min:
        return 1
    threads = _threads()
    return threads if threads > 1 else 1


cdef inline Py_ssize_t _chunk_start(int chunk, int chunks, Py_ssize_t n) noexcept nogil:
    """First element of chunk `chunk` of n elements cut into `chunks` near-equal
    chunks (chunk == chunks gives n); below n for every chunk < chunks."""
    return chunk * n // chunks


# The flat kernels call their C loop directly when one thread runs (no
# parallel region: entering one costs ~0.6 us), else through one of these,
# which run the loop (passed as `_loops.<kernel>[floating]`) over one chunk
# per thread; one for each shape of arguments.  (A prange in each kernel's
# def made the generated code of the defs 10-40 ns a call slower, small
# arrays included.)  start and end are assigned in the prange body, so that
# Cython makes them private to each thread (a helper writing them through
# pointers left them shared: threads raced for them).

cdef void _threaded_in_out(void (*loop)(const floating *, floating *, Py_ssize_t) noexcept nogil,
                           const floating *x, floating *out, Py_ssize_t n,
                           int chunks) noexcept nogil:
    cdef int chunk
    cdef Py_ssize_t start, end
    for chunk in prange(chunks, num_threads=chunks, schedule="static"):
        start, end = _chunk_start(chunk, chunks, n), _chunk_start(chunk + 1, chunks, n)
        loop(x + start, out + start, end - start)


cdef void _threaded_in_in_out(
        void (*loop)(const floating *, const floating *, floating *, Py_ssize_t) noexcept nogil,
        const floating *a, const floating *b, floating *out, Py_ssize_t n,
        int chunks) noexcept nogil:
    cdef int chunk
    cdef Py_ssize_t start, end
    for chunk in prange(chunks, num_threads=chunks, schedule="static"):
        start, end = _chunk_start(chunk, chunks, n), _chunk_start(chunk + 1, chunks, n)
        loop(a + start, b + start, out + start, end - start)


cdef void _threaded_in_out_mask(
        void (*loop)(const floating *, floating *, uint8_t *, Py_ssize_t) noexcept nogil,
        const floating *x, floating *out, uint8_t *mask, Py_ssize_t n,
        int chunks) noexcept nogil:
    cdef int chunk
    cdef Py_ssize_t start, end
    for chunk in prange(chunks, num_threads=chunks, schedule="static"):
        start, end = _chunk_start(chunk, chunks, n), _chunk_start(chunk + 1, chunks, n)
        loop(x + start, out + start, mask + start, end - start)


cdef void _threaded_in_mask_out(
        void (*loop)(const floating *, const uint8_t *, floating *, Py_ssize_t) noexcept nogil,
        const floating *x, const uint8_t *mask, floating *out, Py_ssize_t n,
        int chunks) noexcept nogil:
    cdef int chunk
    cdef Py_ssize_t start, end
    for chunk in prange(chunks, num_threads=chunks, schedule="static"):
        start, end = _chunk_start(chunk, chunks, n), _chunk_start(chunk + 1, chunks, n)
        loop(x + start, mask + start, out + start, end - start)


cdef int _check_lengths(str kernel, Py_ssize_t n, Py_ssize_t a, Py_ssize_t b) except -1:
    """A guard under the Python-side checks: the loops trust these lengths."""
    if a != n or b != n:
        raise ValueError(f"{kernel}: expected arrays of {n} elements, got {a} and {b}")
    return 0


def relu_forward(const floating[::1] x, floating[::1] out, uint8_t[::1] mask):
    """out = where(x <= 0, 0, x); mask = (x <= 0).  All of length n."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int chunks = _chunks(n)
    _check_lengths("relu_forward", n, out.shape[0], mask.shape[0])
    if n == 0:
        return
    with nogil:
        if chunks == 1:
            _loops.relu_forward(&x[0], &out[0], &mask[0], n)
        else:
            _threaded_in_out_mask(_loops.relu_forward[floating], &x[0], &out[0], &mask[0], n,
                                  chunks)


def relu_backward(const floating[::1] dout, const uint8_t[::1] mask, floating[::1] dx):
    """dx = where(mask, 0, dout).  All of length n."""
    cdef Py_ssize_t n = dout.shape[0]
    cdef int chunks = _chunks(n)
    _check_lengths("relu_backward", n, mask.shape[0], dx.shape[0])
    if n == 0:
        return
    with nogil:
        if chunks == 1:
            _loops.relu_backward(&dout[0], &mask[0], &dx[0], n)
        else:
            _threaded_in_mask_out(_loops.relu_backward[floating], &dout[0], &mask[0], &dx[0], n,
                                  chunks)


def relu_grad(const floating[::1] x, floating[::1] out):
    """out = 1 where x > 0, else 0.  Both of length n."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int chunks = _chunks(n)
    _check_lengths("relu_grad", n, out.shape[0], out.shape[0])
    if n == 0:
        return
    with nogil:
        if chunks == 1:
            _loops.relu_grad(&x[0], &out[0], n)
        else:
            _threaded_in_out(_loops.relu_grad[floating], &x[0], &out[0], n, chunks)


def sigmoid_forward(const floating[::1] x, floating[::1] out):
    """out = 1 / (1 + exp(-x)), overflow-free.  Both of length n."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int chunks = _chunks(n)
    _check_lengths("sigmoid_forward", n, out.shape[0], out.shape[0])
    if n == 0:
        return
    with nogil:
        if chunks == 1:
            _loops.sigmoid_forward(&x[0], &out[0], n)
        else:
            _threaded_in_out(_loops.sigmoid_forward[floating], &x[0], &out[0], n, chunks)


def sigmoid_backward(const floating[::1] dout, const floating[::1] out, floating[::1] dx):
    """dx = dout * (1 - out) * out.  All of length n."""
    cdef Py_ssize_t n = dout.shape[0]
    cdef int chunks = _chunks(n)
    _check_lengths("sigmoid_backward", n, out.shape[0], dx.shape[0])
    if n == 0:
        return
    with nogil:
        if chunks == 1:
            _loops.sigmoid_backward(&dout[0], &out[0], &dx[0], n)
        else:
            _threaded_in_in_out(_loops.sigmoid_backward[floating], &dout[0], &out[0], &dx[0], n,
                                chunks)


def sigmoid_grad(const floating[::1] x, floating[::1] out):
    """out = (1 - s) * s with s = sigmoid(x), overflow-free.  Both of length n."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int chunks = _chunks(n)
    _check_lengths("sigmoid_grad", n, out.shape[0], out.shape[0])
    if n == 0:
        return
    with nogil:
        if chunks == 1:
            _loops.sigmoid_grad(&x[0], &out[0], n)
        else:
            _threaded_in_out(_loops.sigmoid_grad[floating], &x[0], &out[0], n, chunks)


def softmax_xent_labels(const floating[:, ::1] x, const int64_t[::1] labels,
                        floating[:, ::1] y, floating[::1] loss):
    """Softmax of each row of x (N, C) into y and its cross-entropy against
    class indices labels (N,) in [0, C) into loss (N,); returns loss.sum()."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1]
    cdef double total
    if n == 0:
        return 0.0
    with nogil:
        total = _loops.softmax_xent_labels(&x[0, 0], &labels[0], &y[0, 0], &loss[0], n, c)
    return total


def softmax_xent_onehot(const floating[:, ::1] x, const floating[:, ::1] t,
                        floating[:, ::1] y, floating[::1] loss):
    """As softmax_xent_labels with target weights t (N, C), one-hot or soft."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1]
    cdef double total
    if n == 0:
        return 0.0
    with nogil:
        total = _loops.softmax_xent_onehot(&x[0, 0], &t[0, 0], &y[0, 0], &loss[0], n, c)
    return total


def softmax_xent_backward_labels(const floating[:, ::1] y, const int64_t[::1] labels,
                                 floating[:, ::1] dx, double scale):
    """dx = (y - onehot(labels)) * scale; y, dx (N, C), labels (N,)."""
    cdef Py_ssize_t n = y.shape[0], c = y.shape[1]
    if n == 0:
        return
    with nogil:
        _loops.softmax_xent_backward_labels(&y[0, 0], &labels[0], &dx[0, 0],
                                            <floating>scale, n, c)


def softmax_xent_backward_onehot(const floating[::1] y, const floating[::1] t,
                                 floating[::1] dx, double scale):
    """dx = (y - t) * scale over flat arrays of length N * C."""
    cdef Py_ssize_t n = y.shape[0]
    if n == 0:
        return
    with nogil:
        _loops.softmax_xent_backward_onehot(&y[0], &t[0], &dx[0], <floating>scale, n)


def first_label_out_of_range(const int64_t[::1] labels, int64_t n_classes):
    """Index of the first label outside [0, n_classes), or -1 if all fit.
    (Validation for the fused training step, cheaper than two reductions.)"""
    cdef Py_ssize_t i
    for i in range(labels.shape[0]):
        if labels[i] < 0 or labels[i] >= n_classes:
            return i
    return -1
