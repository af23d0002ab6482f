# Pieces of a compiled training step, shared by _train.pyx (MLPStep: the
# chapter-5 nets) and _train_extend.pyx (ExtendStep: MultiLayerNetExtend):
# the activations, the softmax loss and its gradient, and the checks of what
# a step is handed (the batch, the labels, each parameter array) before any
# pointer reaches a loop.
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t, uint8_t

from . cimport _loops
from ._arraydata cimport ROWS_1D, array_data

import numpy as np


cdef inline void activation_forward(bint relu, const floating *z, floating *h,
                                    uint8_t *mask, Py_ssize_t size) noexcept nogil:
    if relu:
        _loops.relu_forward(z, h, mask, size)
    else:
        _loops.sigmoid_forward(z, h, size)


cdef inline void activation_backward(bint relu, const floating *dh, const floating *h,
                                     const uint8_t *mask, floating *dz,
                                     Py_ssize_t size) noexcept nogil:
    if relu:
        _loops.relu_backward(dh, mask, dz, size)
    else:
        _loops.sigmoid_backward(dh, h, dz, size)


cdef inline double softmax_loss_and_gradient(const floating *logits, const int64_t *labels,
                                             const floating *target, floating *y,
                                             floating *per_sample, floating *dlogits,
                                             Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    """Softmax of logits (n, c) into y, cross-entropy against labels (n,) or
    target (n, c) (the other is NULL), d(mean loss)/d(logits) into dlogits;
    returns the summed loss."""
    cdef double total
    cdef floating scale = <floating>(1.0 / n)
    if labels != NULL:
        total = _loops.softmax_xent_labels(logits, labels, y, per_sample, n, c)
        _loops.softmax_xent_backward_labels(y, labels, dlogits, scale, n, c)
    else:
        total = _loops.softmax_xent_onehot(logits, target, y, per_sample, n, c)
        _loops.softmax_xent_backward_onehot(y, target, dlogits, scale, n * c)
    return total


cdef inline void *param_data(object array, str name, int index, Py_ssize_t rows,
                             Py_ssize_t cols, bint is_float, bint writable) except NULL:
    """The data of a parameter array (``name`` and ``index`` for the error,
    e.g. 'W' 2) after array_data's checks for a float32 (is_float) or float64
    array of shape (rows, cols), or (cols,) when rows < 0."""
    return array_data(array, name, index, cnp.NPY_FLOAT if is_float else cnp.NPY_DOUBLE,
                      ROWS_1D if rows < 0 else rows, cols, writable)


cdef inline int batch_data(object x, object t, Py_ssize_t n, Py_ssize_t d, Py_ssize_t c,
                           object dtype, const void **x_p, const int64_t **labels,
                           const void **target) except -1:
    """Check a step's batch and set the pointers: x (n, d) C-contiguous of
    ``dtype``; t int64 labels (n,) in [0, c) (*labels; *target = NULL) or
    ``dtype`` targets (n, c) (*target; *labels = NULL), C-contiguous."""
    cdef Py_ssize_t bad
    cdef const int64_t *lab
    if not (isinstance(x, np.ndarray) and (<cnp.ndarray>x).dtype == dtype
            and x.shape == (n, d) and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)):
        raise ValueError(f"x: expected a C-contiguous {dtype} array of shape "
                         f"{(n, d)}, got {getattr(x, 'dtype', type(x))} "
                         f"{getattr(x, 'shape', '')}")
    x_p[0] = cnp.PyArray_DATA(<cnp.ndarray>x)
    labels[0] = NULL
    target[0] = NULL
    if not isinstance(t, np.ndarray) or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>t):
        raise ValueError(f"t: expected a C-contiguous NumPy array, got {type(t).__name__}")
    if t.dtype == np.int64 and t.shape == (n,):
        lab = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>t)
        with nogil:
            for bad in range(n):
                if lab[bad] < 0 or lab[bad] >= c:
                    break
            else:
                bad = -1
        if bad >= 0:
            raise ValueError(f"t: label {lab[bad]} at index {bad} is outside [0, {c})")
        labels[0] = lab
    elif t.dtype == dtype and t.shape == (n, c):
        target[0] = cnp.PyArray_DATA(<cnp.ndarray>t)
    else:
        raise ValueError(f"t: expected int64 labels of shape {(n,)} or {dtype} "
                         f"targets of shape {(n, c)}, got {t.dtype} {t.shape}")
    return 0


cdef inline int dense_params(void **slots, int stride, const int *width, int n_layers,
                             bint is_float, object weights, object biases,
                             object weights_out, object biases_out) except -1:
    """Check each affine layer's W (width[i], width[i+1]), b (width[i+1],) and
    their outputs (writable), float32 (is_float) or float64, and store their
    data at slots[stride * i + 0..3] (W, b, W out, b out)."""
    cdef int i
    if not (len(weights) == len(biases) == len(weights_out) == len(biases_out) == n_layers):
        raise ValueError(f"weights, biases: expected {n_layers} of each")
    for i in range(n_layers):
        slots[stride * i] = param_data(weights[i], "W", i + 1, width[i], width[i + 1],
                                       is_float, False)
        slots[stride * i + 1] = param_data(biases[i], "b", i + 1, -1, width[i + 1], is_float,
                                           False)
        slots[stride * i + 2] = param_data(weights_out[i], "W", i + 1, width[i], width[i + 1],
                                           is_float, True)
        slots[stride * i + 3] = param_data(biases_out[i], "b", i + 1, -1, width[i + 1],
                                           is_float, True)
    return 0


cdef inline void param_slot_bytes(Py_ssize_t *nbytes, int stride, const int *width,
                                  int n_layers, Py_ssize_t item) noexcept nogil:
    """The byte size of each parameter slot of a step (stride slots a layer):
    slots 0 and 2 are W (width[i] x width[i+1] items), every other slot a
    vector of width[i+1] (b, and batch norm's gamma, beta and statistics)."""
    cdef int i, k
    for i in range(n_layers):
        for k in range(stride):
            nbytes[stride * i + k] = width[i + 1] * item
        nbytes[stride * i] *= width[i]
        nbytes[stride * i + 2] *= width[i]


cdef inline bint ranges_meet(const char *a, Py_ssize_t a_bytes, const char *b,
                             Py_ssize_t b_bytes) noexcept nogil:
    """Whether the byte ranges [a, a + a_bytes) and [b, b + b_bytes) meet."""
    return a < b + b_bytes and b < a + a_bytes


cdef inline bint outputs_overlap(void **slots, const Py_ssize_t *nbytes,
                                 Py_ssize_t count) noexcept nogil:
    """Whether a step's parameter slots share memory in a way an in-place
    step would misread.  The slots come in fours (in, in, out, out: index %
    4 >= 2 is an output, written over the input at index - 2); NULL slots
    are unused.  True when an output meets any other slot, except the very
    input it updates in place."""
    cdef Py_ssize_t a, b
    for a in range(count):
        if a % 4 < 2 or slots[a] == NULL:
            continue
        for b in range(count):
            if b == a or slots[b] == NULL or (b == a - 2 and slots[b] == slots[a]):
                continue
            if ranges_meet(<const char *>slots[a], nbytes[a], <const char *>slots[b],
                           nbytes[b]):
                return True
    return False


cdef inline bint meets_outputs(const void *x, Py_ssize_t x_bytes, void **slots,
                               const Py_ssize_t *nbytes, Py_ssize_t count) noexcept nogil:
    """Whether the bytes of x meet an output slot (see outputs_overlap), which
    the step writes while it still reads x."""
    cdef Py_ssize_t a
    for a in range(count):
        if a % 4 >= 2 and slots[a] != NULL and ranges_meet(
                <const char *>x, x_bytes, <const char *>slots[a], nbytes[a]):
            return True
    return False


cdef inline tuple step_layout(object sizes, Py_ssize_t batch, object dtype, object activation):
    """A step's constructor arguments checked: ``(widths, dtype)`` with the
    widths as a tuple of ints and dtype float32 or float64 (TypeError,
    ValueError otherwise); activation 'relu' or 'sigmoid'."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    if activation not in ("relu", "sigmoid"):
        raise ValueError(f"activation: expected 'relu' or 'sigmoid', got {activation!r}")
    widths = [int(s) for s in sizes]      # (no generator expression: a .pxd inline)
    if len(widths) < 2 or batch < 1 or min(widths) < 1 or max(widths) >= 2 ** 31:
        raise ValueError(f"sizes, batch: expected >= 2 positive widths and a batch "
                         f"> 0, got {sizes!r} and {batch}")
    return tuple(widths), dtype
