"""A whole training step of an MLP in one compiled call.

The network is affine layers with ReLU or sigmoid between them and softmax
cross-entropy at the end (the book's TwoLayerNet and MultiLayerNet).  One
call runs the forward pass, the loss, the backward pass and the update of W
and b (or writes the gradients), with the GIL released, in buffers
allocated once per batch size.  Kernels only: fastbp/networks.py checks the
batch and the labels and picks the dtype; ``MLPStep.step`` re-checks what it
is handed (types, shapes, dtypes, contiguity, label range: cheap C tests)
before any pointer reaches a loop.

The elementwise loops run on one thread here: they are a few percent of a
step whose GEMMs are threaded by BLAS.
"""
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from . cimport _blas
from ._dense cimport dense_forward, dense_backward
from ._steps cimport (activation_backward, activation_forward, batch_data, dense_params,
                      meets_outputs, outputs_overlap, param_slot_bytes,
                      softmax_loss_and_gradient, step_layout)

import numpy as np

cnp.import_array()


include "_gemm_piece_limit.pxi"


class ParamsOverlap(ValueError):
    """Raised by ``MLPStep.step`` and ``ExtendStep.step`` when parameter arrays share memory (one
    array for two parameters, or views of one): a step that writes them in
    place would read values it has already overwritten.  The caller computes
    that step the reference way instead."""


cdef class MLPStep:
    """Buffers and the compiled step of an MLP for one batch size and dtype.

    MLPStep(sizes, batch, dtype, activation): sizes = (input, hidden...,
    output) widths, activation "relu" or "sigmoid", dtype float32/float64.
    The buffers are attributes (read-only names, NumPy arrays): ``z[i]``
    (batch, sizes[i+1]) affine outputs, ``h[i]`` activations, ``mask[i]``
    (ReLU, flat uint8), ``dh[i]``, ``dz[i]``, ``y`` (batch, output)
    probabilities, ``per_sample_loss`` (batch,).
    """
    cdef readonly tuple sizes
    cdef readonly Py_ssize_t batch
    cdef readonly object dtype
    cdef readonly bint relu
    cdef readonly list z, h, mask, dh, dz
    cdef readonly object y, per_sample_loss
    cdef object x_copy              # x when it overlaps an output (made on first need)
    cdef int n_layers
    cdef bint is_float
    cdef int *width                 # sizes as C ints
    cdef void **z_p
    cdef void **h_p
    cdef void **dh_p
    cdef void **dz_p
    cdef uint8_t **mask_p
    cdef void **param_p             # per step: W, b, W out, b out of each layer
    cdef Py_ssize_t *param_bytes    # the byte size of each param_p slot
    cdef void *y_p
    cdef void *per_sample_p

    def __cinit__(self):
        self.width = NULL
        self.z_p = self.h_p = self.dh_p = self.dz_p = self.param_p = NULL
        self.mask_p = NULL
        self.param_bytes = NULL

    def __init__(self, sizes, Py_ssize_t batch, dtype, activation):
        cdef int i, n_layers = len(sizes) - 1
        self.sizes, dtype = step_layout(sizes, batch, dtype, activation)
        self.batch = batch
        self.dtype = dtype
        self.relu = activation == "relu"
        self.is_float = dtype == np.float32
        self.n_layers = n_layers
        outputs = self.sizes[1:]             # widths of the affine outputs
        hidden = self.sizes[1:n_layers]      # widths of the activations
        self.z = [np.empty((batch, m), dtype) for m in outputs]
        self.dz = [np.empty((batch, m), dtype) for m in outputs]
        self.h = [np.empty((batch, m), dtype) for m in hidden]
        self.dh = [np.empty((batch, m), dtype) for m in hidden]
        self.mask = [np.empty(batch * m, np.uint8) for m in hidden] if self.relu else []
        self.y = np.empty((batch, self.sizes[n_layers]), dtype)
        self.per_sample_loss = np.empty(batch, dtype)
        self.y_p = cnp.PyArray_DATA(<cnp.ndarray>self.y)
        self.per_sample_p = cnp.PyArray_DATA(<cnp.ndarray>self.per_sample_loss)

        self.x_copy = None
        self._free()                         # __init__ called again: no leak
        self.width = <int *>malloc((n_layers + 1) * sizeof(int))
        self.z_p = <void **>malloc(n_layers * sizeof(void *))
        self.dz_p = <void **>malloc(n_layers * sizeof(void *))
        self.h_p = <void **>malloc(n_layers * sizeof(void *))
        self.dh_p = <void **>malloc(n_layers * sizeof(void *))
        self.mask_p = <uint8_t **>malloc(n_layers * sizeof(uint8_t *))
        self.param_p = <void **>malloc(4 * n_layers * sizeof(void *))
        self.param_bytes = <Py_ssize_t *>malloc(4 * n_layers * sizeof(Py_ssize_t))
        if (self.width == NULL or self.z_p == NULL or self.dz_p == NULL or self.h_p == NULL
                or self.dh_p == NULL or self.mask_p == NULL or self.param_p == NULL
                or self.param_bytes == NULL):
            raise MemoryError()
        for i in range(n_layers + 1):
            self.width[i] = self.sizes[i]
        param_slot_bytes(self.param_bytes, 4, self.width, n_layers, 4 if self.is_float else 8)
        for i in range(n_layers):
            self.z_p[i] = cnp.PyArray_DATA(<cnp.ndarray>self.z[i])
            self.dz_p[i] = cnp.PyArray_DATA(<cnp.ndarray>self.dz[i])
            last = i == n_layers - 1
            self.h_p[i] = NULL if last else cnp.PyArray_DATA(<cnp.ndarray>self.h[i])
            self.dh_p[i] = NULL if last else cnp.PyArray_DATA(<cnp.ndarray>self.dh[i])
            self.mask_p[i] = (NULL if last or not self.relu
                              else <uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>self.mask[i]))

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        free(self.width)
        free(self.z_p)
        free(self.dz_p)
        free(self.h_p)
        free(self.dh_p)
        free(self.mask_p)
        free(self.param_p)
        free(self.param_bytes)
        self.width = NULL
        self.z_p = self.h_p = self.dh_p = self.dz_p = self.param_p = NULL
        self.mask_p = NULL
        self.param_bytes = NULL

    def step(self, x, t, weights, biases, weights_out, biases_out,
             double alpha, double beta, double bias_beta):
        """One forward + backward pass; returns the summed (not mean) loss.

        x (batch, sizes[0]) and the parameters in the net's dtype,
        C-contiguous; t int64 labels (batch,) or targets (batch, sizes[-1])
        in the dtype.  weights/biases: sequences of each layer's W (d, m) and
        b (m,).  Writes, per layer, after computing the input gradient from
        the current W:
            weights_out[i] = alpha * h.T @ dz + beta * weights[i]
            biases_out[i]  = alpha * dz.sum(0) + bias_beta * biases[i]
        weights_out may be weights itself (in place: SGD with alpha = -lr,
        beta = 1 - lr * lambda, bias_beta = 1) or separate gradient arrays
        (alpha = 1, beta = lambda, bias_beta = 0).
        """
        cdef Py_ssize_t n = self.batch
        cdef int i, L = self.n_layers
        cdef Py_ssize_t c
        cdef const int64_t *labels = NULL
        cdef const void *target = NULL
        cdef const void *x_p
        cdef double total
        if self.param_p == NULL:
            raise RuntimeError("MLPStep: not initialised (its __init__ did not complete)")
        c = self.width[L]
        batch_data(x, t, n, self.width[0], c, self.dtype, &x_p, &labels, &target)
        dense_params(self.param_p, 4, self.width, L, self.is_float, weights, biases,
                     weights_out, biases_out)
        # Aliasing: the results are those of reading every input as it was at
        # the call.  Parameters sharing memory go back to the caller (the
        # reference way); an x that shares memory with an output is copied.
        if outputs_overlap(self.param_p, self.param_bytes, 4 * L):
            raise ParamsOverlap("weights, biases: parameter arrays share memory")
        if meets_outputs(x_p, n * self.width[0] * (4 if self.is_float else 8),
                         self.param_p, self.param_bytes, 4 * L):
            if self.x_copy is None:
                self.x_copy = np.empty((n, self.width[0]), self.dtype)
            np.copyto(self.x_copy, x)
            x_p = cnp.PyArray_DATA(<cnp.ndarray>self.x_copy)
        with nogil:
            if self.is_float:
                total = _train_step(self, <const float *>x_p, labels, <const float *>target,
                                    <float>alpha, <float>beta, <float>bias_beta)
            else:
                total = _train_step(self, <const double *>x_p, labels, <const double *>target,
                                    alpha, beta, bias_beta)
        return total


cdef double _train_step(MLPStep s, const floating *x, const int64_t *labels,
                        const floating *target, floating alpha, floating beta,
                        floating bias_beta) noexcept nogil:
    """The step of MLPStep.step on checked pointers (s.param_p filled)."""
    cdef int n = <int>s.batch, L = s.n_layers, i, d, m
    cdef const floating *h_in = x
    cdef floating *W
    cdef floating *W_out
    cdef floating *b
    cdef floating *b_out
    cdef double total
    for i in range(L):
        d, m = s.width[i], s.width[i + 1]
        dense_forward(h_in, <floating *>s.param_p[4 * i], <floating *>s.param_p[4 * i + 1],
                      <floating *>s.z_p[i], n, d, m)
        if i < L - 1:
            activation_forward(s.relu, <floating *>s.z_p[i], <floating *>s.h_p[i],
                                s.mask_p[i], <Py_ssize_t>n * m)
            h_in = <floating *>s.h_p[i]
    total = softmax_loss_and_gradient(
        <floating *>s.z_p[L - 1], labels, target,
        <floating *>s.y_p, <floating *>s.per_sample_p,
        <floating *>s.dz_p[L - 1], n, s.width[L])
    for i in range(L - 1, -1, -1):
        d, m = s.width[i], s.width[i + 1]
        W, b = <floating *>s.param_p[4 * i], <floating *>s.param_p[4 * i + 1]
        W_out, b_out = <floating *>s.param_p[4 * i + 2], <floating *>s.param_p[4 * i + 3]
        if W_out != W and beta != 0:      # gradient arrays: dW = alpha x.T dz + beta W
            memcpy(W_out, W, <size_t>d * m * sizeof(floating))
        if b_out != b and bias_beta != 0:
            memcpy(b_out, b, <size_t>m * sizeof(floating))
        h_in = x if i == 0 else <floating *>s.h_p[i - 1]
        dense_backward(<floating *>s.dz_p[i], h_in, W,
                       NULL if i == 0 else <floating *>s.dh_p[i - 1],
                       W_out, b_out, n, d, m, alpha, beta, bias_beta, NULL)
        if i > 0:
            activation_backward(s.relu, <floating *>s.dh_p[i - 1], <floating *>s.h_p[i - 1],
                                 s.mask_p[i - 1], <floating *>s.dz_p[i - 1],
                                 <Py_ssize_t>n * d)
    return total
