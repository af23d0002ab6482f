"""A whole training step of the book's MultiLayerNetExtend in one compiled call.

Per hidden layer: affine, batch normalisation (optional), ReLU or sigmoid,
dropout (optional); then the last affine and softmax cross-entropy.  One
call draws the dropout masks (each layer from its own stream, in layer
order: the draws the layers would make), runs the forward pass, the loss,
the backward pass and the update of W, b, gamma and beta (or writes the
gradients), with the GIL released, in buffers allocated once per batch
size.  Every piece is the loop the layer-by-layer path runs (the BLAS calls
of _dense.pxd, the C loops of src/fb_loops.h), so the numbers are theirs.

Kernels only: fastbp/_extend_step.py checks the batch and the layers' state
and picks the dtype; ``ExtendStep.step`` re-checks what it is handed
(types, shapes, dtypes, contiguity, label range, ratios, momenta: cheap C
tests) before it draws a mask or a pointer reaches a loop.

The elementwise loops run on one thread here, as in _train.pyx.
"""
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from ._bitgen cimport open_stream
from . cimport _blas
from ._dense cimport combine, dense_backward, dense_forward
from ._loops cimport fb_dropout_stream
from ._steps cimport (activation_backward, activation_forward, batch_data, dense_params,
                      meets_outputs, outputs_overlap, param_data, param_slot_bytes,
                      softmax_loss_and_gradient, step_layout)
from . cimport _loops

import numpy as np

from ._train import ParamsOverlap

cnp.import_array()

# Buffers of a layer, slots of ExtendStep.buf_p (BUFFERS per layer).  Without
# batch norm U is Z and DZ is DU; without dropout H is A and DA is DH.
cdef enum:
    Z, XC, XN, U, STD, A, MASK, KEEP, H, DH, DA, DU, DZ, DGAMMA, DBETA, DZ_SUMS, BUFFERS
# Parameters of a layer, slots of ExtendStep.param_p (PARAMS per layer).
cdef enum:
    W_IN, B_IN, W_OUT, B_OUT, GAMMA_IN, BETA_IN, GAMMA_OUT, BETA_OUT, MEAN_IN, VAR_IN, \
        MEAN_OUT, VAR_OUT, PARAMS
# The names of a batch-norm tuple's arrays (slots GAMMA_IN..VAR_OUT), for errors.
cdef tuple _NORM_NAMES = ("gamma", "beta", "gamma", "beta", "running_mean", "running_var",
                          "running_mean", "running_var")


include "_gemm_piece_limit.pxi"


cdef class ExtendStep:
    """Buffers and the compiled step of a MultiLayerNetExtend for one batch
    size and dtype.

    ExtendStep(sizes, batch, dtype, activation, batchnorm, dropout): sizes =
    (input, hidden..., output) widths, activation "relu" or "sigmoid",
    batchnorm / dropout: whether each hidden layer has them; dtype float32 or
    float64.  The buffers are attributes (NumPy arrays, one per hidden
    layer, the last layer's z and dz too): ``z`` affine outputs, ``xc``,
    ``xn``, ``std`` batch norm's (as BatchNormalization's attributes), ``u``
    its output, ``a`` the activations, ``relu_mask`` (flat uint8), ``keep``
    the dropout masks (flat uint8, 1 = kept), ``h`` the layer outputs, and
    the gradients ``dh``, ``da``, ``du``, ``dz``, ``dgamma``, ``dbeta``;
    ``y`` the probabilities, ``per_sample_loss``.
    """
    cdef readonly tuple sizes
    cdef readonly Py_ssize_t batch
    cdef readonly object dtype
    cdef readonly bint relu, batchnorm, dropout
    cdef readonly list z, xc, xn, u, std, a, relu_mask, keep, h, dh, da, du, dz
    cdef readonly list dgamma, dbeta, dz_sums
    cdef readonly object y, per_sample_loss
    cdef int n_layers
    cdef bint is_float
    cdef int *width                     # sizes as C ints
    cdef void **buf_p                   # BUFFERS slots a layer
    cdef void **param_p                 # PARAMS slots a layer, filled by each step
    cdef Py_ssize_t *param_bytes        # the byte size of each param_p slot
    cdef object x_copy                  # x when it overlaps an output (made on first need)
    cdef double *momentum               # a hidden layer's, per step
    cdef fb_dropout_stream *streams     # a hidden layer's, per step
    cdef void *y_p
    cdef void *per_sample_p

    def __cinit__(self):
        self.width = NULL
        self.buf_p = self.param_p = NULL
        self.param_bytes = NULL
        self.momentum = NULL
        self.streams = NULL

    def __init__(self, sizes, Py_ssize_t batch, dtype, activation, batchnorm, dropout):
        cdef int i, slot, n_layers = len(sizes) - 1
        self.sizes, dtype = step_layout(sizes, batch, dtype, activation)
        self.batch = batch
        self.dtype = dtype
        self.relu = activation == "relu"
        self.batchnorm = bool(batchnorm)
        self.dropout = bool(dropout)
        self.is_float = dtype == np.float32
        self.n_layers = n_layers
        hidden = self.sizes[1:n_layers]

        def matrices(wanted=True):
            return [np.empty((batch, m), dtype) for m in hidden] if wanted else []

        def vectors(wanted=True):
            return [np.empty(m, dtype) for m in hidden] if wanted else []

        def masks(wanted=True):
            return [np.empty(batch * m, np.uint8) for m in hidden] if wanted else []

        bn, drop = self.batchnorm, self.dropout
        self.z = [np.empty((batch, m), dtype) for m in self.sizes[1:]]
        self.dz = [np.empty((batch, m), dtype) for m in self.sizes[1:]]
        self.xc, self.xn, self.u, self.std = matrices(bn), matrices(bn), matrices(bn), vectors(bn)
        self.dgamma, self.dbeta = vectors(bn), vectors(bn)
        self.dz_sums = vectors(bn)           # dz.sum(0), summed by batch norm's backward
        self.a, self.dh, self.du = matrices(), matrices(), matrices(bn)
        self.relu_mask = masks(self.relu)
        self.keep, self.h, self.da = masks(drop), matrices(drop), matrices(drop)
        self.y = np.empty((batch, self.sizes[n_layers]), dtype)
        self.per_sample_loss = np.empty(batch, dtype)
        self.y_p = cnp.PyArray_DATA(<cnp.ndarray>self.y)
        self.per_sample_p = cnp.PyArray_DATA(<cnp.ndarray>self.per_sample_loss)

        self._free()                         # __init__ called again: no leak
        self.width = <int *>calloc(n_layers + 1, sizeof(int))
        self.buf_p = <void **>calloc(BUFFERS * n_layers, sizeof(void *))
        self.param_p = <void **>calloc(PARAMS * n_layers, sizeof(void *))
        self.param_bytes = <Py_ssize_t *>calloc(PARAMS * n_layers, sizeof(Py_ssize_t))
        self.momentum = <double *>calloc(n_layers, sizeof(double))
        self.streams = <fb_dropout_stream *>calloc(n_layers, sizeof(fb_dropout_stream))
        if (self.width == NULL or self.buf_p == NULL or self.param_p == NULL
                or self.param_bytes == NULL or self.momentum == NULL or self.streams == NULL):
            self._free()
            raise MemoryError()
        for i in range(n_layers + 1):
            self.width[i] = self.sizes[i]
        param_slot_bytes(self.param_bytes, PARAMS, self.width, n_layers,
                         4 if self.is_float else 8)
        self.x_copy = None
        for i in range(n_layers):
            self.buf_p[BUFFERS * i + Z] = cnp.PyArray_DATA(<cnp.ndarray>self.z[i])
            self.buf_p[BUFFERS * i + DZ] = cnp.PyArray_DATA(<cnp.ndarray>self.dz[i])
        for i in range(n_layers - 1):
            for slot, arrays in ((XC, self.xc), (XN, self.xn), (U, self.u), (STD, self.std),
                                 (DGAMMA, self.dgamma), (DBETA, self.dbeta),
                                 (DZ_SUMS, self.dz_sums), (A, self.a),
                                 (DH, self.dh), (DU, self.du), (MASK, self.relu_mask),
                                 (KEEP, self.keep), (H, self.h), (DA, self.da)):
                if arrays:
                    self.buf_p[BUFFERS * i + slot] = cnp.PyArray_DATA(<cnp.ndarray>arrays[i])
            if not bn:                       # the activation reads z, writes dz directly
                self.buf_p[BUFFERS * i + U] = self.buf_p[BUFFERS * i + Z]
                self.buf_p[BUFFERS * i + DU] = self.buf_p[BUFFERS * i + DZ]
            if not drop:                     # the next layer reads a, writes da = dh
                self.buf_p[BUFFERS * i + H] = self.buf_p[BUFFERS * i + A]
                self.buf_p[BUFFERS * i + DA] = self.buf_p[BUFFERS * i + DH]

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        free(self.width)
        free(self.buf_p)
        free(self.param_p)
        free(self.param_bytes)
        free(self.momentum)
        free(self.streams)
        self.width = NULL
        self.buf_p = self.param_p = NULL
        self.param_bytes = NULL
        self.momentum = NULL
        self.streams = NULL

    cdef int _take_norm(self, int i, object norm) except -1:
        """Check hidden layer i's batch-norm tuple (gamma, beta, gamma_out,
        beta_out, mean, var, mean_out, var_out, momentum)."""
        cdef int slot, width = self.width[i + 1]
        cdef double momentum
        if not isinstance(norm, tuple) or len(norm) != 9:
            raise ValueError(f"norms[{i}]: expected (gamma, beta, gamma_out, beta_out, mean, "
                             f"var, mean_out, var_out, momentum), got {type(norm).__name__}")
        for slot in range(8):
            self.param_p[PARAMS * i + GAMMA_IN + slot] = param_data(
                norm[slot], _NORM_NAMES[slot], i + 1, -1, width, self.is_float,
                slot in (2, 3, 6, 7))
        momentum = norm[8]
        if not (0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum{i + 1}: expected a number in [0, 1], got {momentum!r}")
        self.momentum[i] = momentum
        return 0

    def step(self, x, t, weights, biases, weights_out, biases_out,
             double alpha, double beta, double bias_beta, norms=(), dropouts=()):
        """One forward + backward pass; returns the summed (not mean) loss.

        x (batch, sizes[0]) and the parameters in the net's dtype,
        C-contiguous; t int64 labels (batch,) or targets (batch, sizes[-1])
        in the dtype.  weights/biases: sequences of each layer's W (d, m) and
        b (m,).  Per layer, after the input gradient is computed from the
        current W:
            weights_out[i] = alpha * h.T @ dz + beta * weights[i]
            biases_out[i]  = alpha * dz.sum(0) + bias_beta * biases[i]
        and, with batch norm, for gamma and beta:
            gamma_out = alpha * dgamma + bias_beta * gamma
        The outputs may be the parameters themselves (in place: SGD with
        alpha = -lr, beta = 1 - lr * lambda, bias_beta = 1) or separate
        gradient arrays (alpha = 1, beta = lambda, bias_beta = 0).

        norms (with batch norm): per hidden layer (gamma, beta, gamma_out,
        beta_out, mean, var, mean_out, var_out, momentum): the running
        statistics before the step (mean, var; zeros before the first) and
        arrays for them after (mean_out = momentum * mean + (1 - momentum) *
        batch mean, likewise var_out), all (width,).
        dropouts (with dropout): per hidden layer (bit_generator,
        book_stream, ratio), the stream its mask is drawn from (see
        _dropout.dropout_forward); the masks are drawn first, in layer order.
        """
        cdef Py_ssize_t n = self.batch, c
        cdef int i, L = self.n_layers
        cdef const int64_t *labels = NULL
        cdef const void *target = NULL
        cdef const void *x_p
        cdef double total
        if self.param_p == NULL:
            raise RuntimeError("ExtendStep: not initialised (its __init__ did not complete)")
        c = self.width[L]
        batch_data(x, t, n, self.width[0], c, self.dtype, &x_p, &labels, &target)
        dense_params(self.param_p, PARAMS, self.width, L, self.is_float, weights, biases,
                     weights_out, biases_out)     # W_IN, B_IN, W_OUT, B_OUT: slots 0-3
        if len(norms) != (L - 1 if self.batchnorm else 0):
            raise ValueError(f"norms: expected {L - 1 if self.batchnorm else 0} batch-norm "
                             f"tuples, got {len(norms)}")
        for i in range(len(norms)):
            self._take_norm(i, norms[i])
        if len(dropouts) != (L - 1 if self.dropout else 0):
            raise ValueError(f"dropouts: expected {L - 1 if self.dropout else 0} streams, "
                             f"got {len(dropouts)}")
        for i in range(len(dropouts)):
            bit_generator, book_stream, ratio = dropouts[i]
            open_stream(&self.streams[i], bit_generator, book_stream, ratio)
        # Aliasing, as in MLPStep.step: parameters sharing memory go back to
        # the caller (the reference way, before any mask is drawn); an x that
        # shares memory with an output is copied.
        if outputs_overlap(self.param_p, self.param_bytes, PARAMS * L):
            raise ParamsOverlap("weights, biases, gamma, beta, running statistics: "
                                "parameter arrays share memory")
        if meets_outputs(x_p, n * self.width[0] * (4 if self.is_float else 8),
                         self.param_p, self.param_bytes, PARAMS * L):
            if self.x_copy is None:
                self.x_copy = np.empty((n, self.width[0]), self.dtype)
            np.copyto(self.x_copy, x)
            x_p = cnp.PyArray_DATA(<cnp.ndarray>self.x_copy)
        # everything checked: draw the masks, in layer order, each under its lock
        for i in range(len(dropouts)):
            with dropouts[i][0].lock:
                with nogil:
                    _loops.fb_dropout_keep(&self.streams[i],
                                           <uint8_t *>self.buf_p[BUFFERS * i + KEEP],
                                           n * self.width[i + 1])
        with nogil:
            if self.is_float:
                total = _extend_step(self, <const float *>x_p, labels, <const float *>target,
                                     <float>alpha, <float>beta, <float>bias_beta)
            else:
                total = _extend_step(self, <const double *>x_p, labels,
                                     <const double *>target, alpha, beta, bias_beta)
        return total


cdef double _extend_step(ExtendStep s, const floating *x, const int64_t *labels,
                         const floating *target, floating alpha, floating beta,
                         floating bias_beta) noexcept nogil:
    """The step of ExtendStep.step on checked pointers (masks drawn)."""
    cdef int n = <int>s.batch, L = s.n_layers, i, d, m
    cdef const floating *h_in = x
    cdef void **buf
    cdef void **par
    cdef floating *W
    cdef floating *W_out
    cdef floating *b
    cdef floating *b_out
    cdef double total
    cdef Py_ssize_t size
    for i in range(L):                                   # forward
        d, m = s.width[i], s.width[i + 1]
        buf, par = s.buf_p + BUFFERS * i, s.param_p + PARAMS * i
        dense_forward(h_in, <floating *>par[W_IN], <floating *>par[B_IN],
                      <floating *>buf[Z], n, d, m)
        if i == L - 1:
            break
        size = <Py_ssize_t>n * m
        if s.batchnorm:
            _loops.bn_forward_train(<floating *>buf[Z], <floating *>par[GAMMA_IN],
                                    <floating *>par[BETA_IN], <floating *>par[MEAN_IN],
                                    <floating *>par[VAR_IN], <floating>s.momentum[i],
                                    <floating>(1.0 - s.momentum[i]), <floating *>buf[XC],
                                    <floating *>buf[XN], <floating *>buf[U],
                                    <floating *>buf[STD], <floating *>par[MEAN_OUT],
                                    <floating *>par[VAR_OUT], n, m)
        activation_forward(s.relu, <floating *>buf[U], <floating *>buf[A],
                           <uint8_t *>buf[MASK], size)
        if s.dropout:
            _loops.dropout_apply(<floating *>buf[A], <uint8_t *>buf[KEEP],
                                 <floating *>buf[H], size)
        h_in = <floating *>buf[H]
    buf = s.buf_p + BUFFERS * (L - 1)
    total = softmax_loss_and_gradient(<floating *>buf[Z], labels, target,
                                      <floating *>s.y_p, <floating *>s.per_sample_p,
                                      <floating *>buf[DZ], n, s.width[L])
    for i in range(L - 1, -1, -1):                       # backward
        d, m = s.width[i], s.width[i + 1]
        buf, par = s.buf_p + BUFFERS * i, s.param_p + PARAMS * i
        W, b = <floating *>par[W_IN], <floating *>par[B_IN]
        W_out, b_out = <floating *>par[W_OUT], <floating *>par[B_OUT]
        if W_out != W and beta != 0:      # gradient arrays: dW = alpha x.T dz + beta W
            memcpy(W_out, W, <size_t>d * m * sizeof(floating))
        if b_out != b and bias_beta != 0:
            memcpy(b_out, b, <size_t>m * sizeof(floating))
        h_in = x if i == 0 else <floating *>s.buf_p[BUFFERS * (i - 1) + H]
        dense_backward(<floating *>buf[DZ], h_in, W,
                       NULL if i == 0 else <floating *>s.buf_p[BUFFERS * (i - 1) + DH],
                       W_out, b_out, n, d, m, alpha, beta, bias_beta,
                       <floating *>buf[DZ_SUMS] if s.batchnorm and i < L - 1 else NULL)
        if i > 0:
            _hidden_backward(s, i - 1, n, alpha, bias_beta)
    return total


cdef inline void _hidden_backward(ExtendStep s, int i, int n, floating alpha,
                                  floating bias_beta) noexcept nogil:
    """Hidden layer i from dh to dz: dropout, the activation, batch norm (and
    the gamma/beta outputs)."""
    cdef void **buf = s.buf_p + BUFFERS * i
    cdef void **par = s.param_p + PARAMS * i
    cdef int m = s.width[i + 1]
    cdef Py_ssize_t size = <Py_ssize_t>n * m
    if s.dropout:
        _loops.dropout_apply(<floating *>buf[DH], <uint8_t *>buf[KEEP], <floating *>buf[DA],
                             size)
    activation_backward(s.relu, <floating *>buf[DA], <floating *>buf[A],
                        <uint8_t *>buf[MASK], <floating *>buf[DU], size)
    if s.batchnorm:
        _loops.bn_backward(<floating *>buf[DU], <floating *>buf[XN], <floating *>buf[XC],
                           <floating *>buf[STD], <floating *>par[GAMMA_IN],
                           <floating *>buf[DZ], <floating *>buf[DGAMMA],
                           <floating *>buf[DBETA], <floating *>buf[DZ_SUMS], n, m)
        combine(<floating *>par[GAMMA_OUT], <floating *>buf[DGAMMA],
                 <floating *>par[GAMMA_IN], m, alpha, bias_beta)
        combine(<floating *>par[BETA_OUT], <floating *>buf[DBETA],
                 <floating *>par[BETA_IN], m, alpha, bias_beta)
