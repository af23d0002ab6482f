# Typed access to the C loops of src/fb_loops.h, for every Cython module.
#
# One `cdef inline ... noexcept nogil` wrapper per C entry point, over the
# fused float/double type: the choice between a kernel's fb_<kernel>_f and
# fb_<kernel>_d is written here, once per C function (the pattern of
# scikit-learn's _cython_blas._gemm).  Use:
#
#     from . cimport _loops
#     _loops.relu_forward(&x[0], &out[0], &mask[0], n)
#
# Pointers to flat, contiguous arrays; outputs allocated by the caller; n >= 0.
# The C side documents each loop where its entry point is defined
# (src/fb_dispatch.h).
from cython cimport floating
from libc.stdint cimport int64_t, uint8_t, uint32_t

cdef extern from "fb_loops.h" nogil:
    const char *fb_simd_level()
    const char *fb_compiler()


cdef extern from "fb_loops.h" nogil:
    void fb_relu_forward_f(const float *x, float *out, uint8_t *mask, Py_ssize_t n)
    void fb_relu_forward_d(const double *x, double *out, uint8_t *mask, Py_ssize_t n)

cdef inline void relu_forward(const floating *x, floating *out, uint8_t *mask,
                              Py_ssize_t n) noexcept nogil:
    """out = where(x <= 0, 0, x); mask = (x <= 0)."""
    if floating is float:
        fb_relu_forward_f(x, out, mask, n)
    else:
        fb_relu_forward_d(x, out, mask, n)


cdef extern from "fb_loops.h" nogil:
    void fb_relu_backward_f(const float *dout, const uint8_t *mask, float *dx, Py_ssize_t n)
    void fb_relu_backward_d(const double *dout, const uint8_t *mask, double *dx, Py_ssize_t n)

cdef inline void relu_backward(const floating *dout, const uint8_t *mask, floating *dx,
                               Py_ssize_t n) noexcept nogil:
    """dx = where(mask, 0, dout)."""
    if floating is float:
        fb_relu_backward_f(dout, mask, dx, n)
    else:
        fb_relu_backward_d(dout, mask, dx, n)


cdef extern from "fb_loops.h" nogil:
    void fb_relu_grad_f(const float *x, float *out, Py_ssize_t n)
    void fb_relu_grad_d(const double *x, double *out, Py_ssize_t n)

cdef inline void relu_grad(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    """out = (x > 0) as 1 or 0."""
    if floating is float:
        fb_relu_grad_f(x, out, n)
    else:
        fb_relu_grad_d(x, out, n)


cdef extern from "fb_loops.h" nogil:
    void fb_sigmoid_forward_f(const float *x, float *out, Py_ssize_t n)
    void fb_sigmoid_forward_d(const double *x, double *out, Py_ssize_t n)

cdef inline void sigmoid_forward(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    """out = 1 / (1 + exp(-x)), overflow-free."""
    if floating is float:
        fb_sigmoid_forward_f(x, out, n)
    else:
        fb_sigmoid_forward_d(x, out, n)


cdef extern from "fb_loops.h" nogil:
    void fb_sigmoid_backward_f(const float *dout, const float *out, float *dx, Py_ssize_t n)
    void fb_sigmoid_backward_d(const double *dout, const double *out, double *dx, Py_ssize_t n)

cdef inline void sigmoid_backward(const floating *dout, const floating *out, floating *dx,
                                  Py_ssize_t n) noexcept nogil:
    """dx = dout * (1 - out) * out."""
    if floating is float:
        fb_sigmoid_backward_f(dout, out, dx, n)
    else:
        fb_sigmoid_backward_d(dout, out, dx, n)


cdef extern from "fb_loops.h" nogil:
    void fb_sigmoid_grad_f(const float *x, float *out, Py_ssize_t n)
    void fb_sigmoid_grad_d(const double *x, double *out, Py_ssize_t n)

cdef inline void sigmoid_grad(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    """out = (1 - s) * s with s = sigmoid(x)."""
    if floating is float:
        fb_sigmoid_grad_f(x, out, n)
    else:
        fb_sigmoid_grad_d(x, out, n)


cdef extern from "fb_loops.h" nogil:
    double fb_softmax_xent_labels_f(const float *x, const int64_t *labels, float *y,
                                    float *loss, Py_ssize_t n, Py_ssize_t c)
    double fb_softmax_xent_labels_d(const double *x, const int64_t *labels, double *y,
                                    double *loss, Py_ssize_t n, Py_ssize_t c)

cdef inline double softmax_xent_labels(const floating *x, const int64_t *labels, floating *y,
                                       floating *loss, Py_ssize_t n,
                                       Py_ssize_t c) noexcept nogil:
    """Softmax of the rows of x (n, c) into y, their cross-entropy against
    labels (n,) in [0, c) into loss (n,); returns the summed loss."""
    if floating is float:
        return fb_softmax_xent_labels_f(x, labels, y, loss, n, c)
    else:
        return fb_softmax_xent_labels_d(x, labels, y, loss, n, c)


cdef extern from "fb_loops.h" nogil:
    double fb_softmax_xent_onehot_f(const float *x, const float *t, float *y,
                                    float *loss, Py_ssize_t n, Py_ssize_t c)
    double fb_softmax_xent_onehot_d(const double *x, const double *t, double *y,
                                    double *loss, Py_ssize_t n, Py_ssize_t c)

cdef inline double softmax_xent_onehot(const floating *x, const floating *t, floating *y,
                                       floating *loss, Py_ssize_t n,
                                       Py_ssize_t c) noexcept nogil:
    """As softmax_xent_labels with target weights t (n, c), one-hot or soft."""
    if floating is float:
        return fb_softmax_xent_onehot_f(x, t, y, loss, n, c)
    else:
        return fb_softmax_xent_onehot_d(x, t, y, loss, n, c)


cdef extern from "fb_loops.h" nogil:
    void fb_softmax_xent_backward_labels_f(const float *y, const int64_t *labels, float *dx,
                                           float scale, Py_ssize_t n, Py_ssize_t c)
    void fb_softmax_xent_backward_labels_d(const double *y, const int64_t *labels, double *dx,
                                           double scale, Py_ssize_t n, Py_ssize_t c)

cdef inline void softmax_xent_backward_labels(const floating *y, const int64_t *labels,
                                              floating *dx, floating scale, Py_ssize_t n,
                                              Py_ssize_t c) noexcept nogil:
    """dx (n, c) = (y - onehot(labels)) * scale."""
    if floating is float:
        fb_softmax_xent_backward_labels_f(y, labels, dx, scale, n, c)
    else:
        fb_softmax_xent_backward_labels_d(y, labels, dx, scale, n, c)


cdef extern from "fb_loops.h" nogil:
    void fb_softmax_xent_backward_onehot_f(const float *y, const float *t, float *dx,
                                           float scale, Py_ssize_t n)
    void fb_softmax_xent_backward_onehot_d(const double *y, const double *t, double *dx,
                                           double scale, Py_ssize_t n)

cdef inline void softmax_xent_backward_onehot(const floating *y, const floating *t,
                                              floating *dx, floating scale,
                                              Py_ssize_t n) noexcept nogil:
    """dx = (y - t) * scale over n elements."""
    if floating is float:
        fb_softmax_xent_backward_onehot_f(y, t, dx, scale, n)
    else:
        fb_softmax_xent_backward_onehot_d(y, t, dx, scale, n)


# ---- batch normalisation (src/fb_batchnorm.h) -------------------------------
cdef extern from "fb_loops.h" nogil:
    void fb_bn_forward_train_f(const float *x, const float *gamma, const float *beta,
                               const float *mean_in, const float *var_in, float keep,
                               float take, float *xc, float *xn, float *out, float *std,
                               float *mean_out, float *var_out, Py_ssize_t n, Py_ssize_t d)
    void fb_bn_forward_train_d(const double *x, const double *gamma, const double *beta,
                               const double *mean_in, const double *var_in, double keep,
                               double take, double *xc, double *xn, double *out, double *std,
                               double *mean_out, double *var_out, Py_ssize_t n, Py_ssize_t d)

cdef inline void bn_forward_train(const floating *x, const floating *gamma,
                                  const floating *beta, const floating *mean_in,
                                  const floating *var_in, floating keep, floating take,
                                  floating *xc, floating *xn, floating *out, floating *std,
                                  floating *mean_out, floating *var_out, Py_ssize_t n,
                                  Py_ssize_t d) noexcept nogil:
    """Training-mode batch norm of x (n, d), n, d >= 1: xc = x - mean,
    xn = xc / std, out = gamma * xn + beta (n, d); std = sqrt(var + 1e-6),
    mean_out = keep * mean_in + take * mean, likewise var_out (d,)."""
    if floating is float:
        fb_bn_forward_train_f(x, gamma, beta, mean_in, var_in, keep, take, xc, xn, out, std,
                              mean_out, var_out, n, d)
    else:
        fb_bn_forward_train_d(x, gamma, beta, mean_in, var_in, keep, take, xc, xn, out, std,
                              mean_out, var_out, n, d)


cdef extern from "fb_loops.h" nogil:
    void fb_bn_forward_test_f(const float *x, const float *gamma, const float *beta,
                              const float *mean, const float *var, float *out,
                              Py_ssize_t n, Py_ssize_t d)
    void fb_bn_forward_test_d(const double *x, const double *gamma, const double *beta,
                              const double *mean, const double *var, double *out,
                              Py_ssize_t n, Py_ssize_t d)

cdef inline void bn_forward_test(const floating *x, const floating *gamma,
                                 const floating *beta, const floating *mean,
                                 const floating *var, floating *out, Py_ssize_t n,
                                 Py_ssize_t d) noexcept nogil:
    """Test-mode batch norm: out = gamma * (x - mean) / sqrt(var + 1e-6) + beta."""
    if floating is float:
        fb_bn_forward_test_f(x, gamma, beta, mean, var, out, n, d)
    else:
        fb_bn_forward_test_d(x, gamma, beta, mean, var, out, n, d)


cdef extern from "fb_loops.h" nogil:
    void fb_bn_backward_f(const float *dout, const float *xn, const float *xc,
                          const float *std, const float *gamma, float *dx, float *dgamma,
                          float *dbeta, Py_ssize_t n, Py_ssize_t d)
    void fb_bn_backward_d(const double *dout, const double *xn, const double *xc,
                          const double *std, const double *gamma, double *dx,
                          double *dgamma, double *dbeta, Py_ssize_t n, Py_ssize_t d)

cdef inline void bn_backward(const floating *dout, const floating *xn, const floating *xc,
                             const floating *std, const floating *gamma, floating *dx,
                             floating *dgamma, floating *dbeta, Py_ssize_t n,
                             Py_ssize_t d) noexcept nogil:
    """Batch-norm backward, n, d >= 1: dx (n, d), dgamma = sum(xn * dout),
    dbeta = sum(dout) (d,)."""
    if floating is float:
        fb_bn_backward_f(dout, xn, xc, std, gamma, dx, dgamma, dbeta, n, d)
    else:
        fb_bn_backward_d(dout, xn, xc, std, gamma, dx, dgamma, dbeta, n, d)


# ---- dropout (src/fb_dropout.h) ------------------------------------------------
cdef extern from "fb_loops.h" nogil:
    ctypedef double (*fb_next_double_fn)(void *state) noexcept nogil
    ctypedef uint32_t (*fb_next_uint32_fn)(void *state) noexcept nogil
    ctypedef struct fb_dropout_stream:
        fb_next_double_fn next_double
        fb_next_uint32_fn next_uint32
        void *state
        double ratio
        uint32_t threshold
        int book
        uint32_t *mt_key
        int *mt_pos
    void fb_dropout_keep(const fb_dropout_stream *stream, uint8_t *keep, Py_ssize_t n)
    void fb_dropout_apply_f(const float *x, const uint8_t *keep, float *out, Py_ssize_t n)
    void fb_dropout_apply_d(const double *x, const uint8_t *keep, double *out, Py_ssize_t n)
    void fb_dropout_forward_f(const fb_dropout_stream *stream, const float *x, uint8_t *keep,
                              float *out, Py_ssize_t n)
    void fb_dropout_forward_d(const fb_dropout_stream *stream, const double *x,
                              uint8_t *keep, double *out, Py_ssize_t n)

cdef inline void dropout_apply(const floating *x, const uint8_t *keep, floating *out,
                               Py_ssize_t n) noexcept nogil:
    """out = x * keep (a nonzero byte of keep counts as 1)."""
    if floating is float:
        fb_dropout_apply_f(x, keep, out, n)
    else:
        fb_dropout_apply_d(x, keep, out, n)

cdef inline void dropout_forward(const fb_dropout_stream *stream, const floating *x,
                                 uint8_t *keep, floating *out, Py_ssize_t n) noexcept nogil:
    """keep drawn from the stream (the caller holds its bit generator's lock),
    out = x * keep."""
    if floating is float:
        fb_dropout_forward_f(stream, x, keep, out, n)
    else:
        fb_dropout_forward_d(stream, x, keep, out, n)
